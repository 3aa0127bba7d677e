"""Image quality metrics and scikit-learn scorers.

Thin, validated wrappers around scikit-image's
:func:`~skimage.metrics.peak_signal_noise_ratio` and
:func:`~skimage.metrics.structural_similarity` that accept batches of images as
numpy arrays or torch tensors and return the mean over images, plus scorers for
:class:`~sklearn.model_selection.GridSearchCV`.

Accepted layouts (``x_true`` and ``x_pred`` must have the same shape):

- ``(H, W)``: one grayscale image;
- ``(n, H, W)``: ``n`` grayscale images;
- ``(n, C, H, W)``: ``n`` images with ``C`` channels (channels first, as in torch).
"""

import math
import numbers

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import make_scorer

__all__ = ["psnr", "psnr_scorer", "ssim", "ssim_scorer"]

_MAX_WIN_SIZE = 7
_MIN_WIN_SIZE = 3


def _as_numpy(x, name):
    """Return ``x`` as a float64 numpy array (torch tensors are detached, moved to CPU).

    Parameters
    ----------
    x : ndarray or Tensor of any shape
        The input.
    name : str
        The argument name used in error messages.

    Returns
    -------
    ndarray of the same shape as ``x``, dtype float64
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().double().numpy()  # double(): numpy has no bfloat16
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numpy array or a torch tensor of numbers, got {type(x).__name__}."
        ) from exc
    return arr


def _check_data_range(data_range):
    """Validate ``data_range`` and return it as a float."""
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real):
        raise TypeError(
            f"data_range must be a positive real number, got {type(data_range).__name__}."
        )
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}.")
    return float(data_range)


def _as_image_batch(x_true, x_pred):
    """Validate a pair of images and return them as batches.

    Parameters
    ----------
    x_true, x_pred : ndarray or Tensor of shape (H, W), (n, H, W) or (n, C, H, W)
        Images of identical shapes.

    Returns
    -------
    x_true, x_pred : ndarray of shape (n, H, W) or (n, C, H, W), dtype float64
        A single ``(H, W)`` image becomes a batch of one.
    """
    a = _as_numpy(x_true, "x_true")
    b = _as_numpy(x_pred, "x_pred")
    if a.shape != b.shape:
        raise ValueError(
            f"x_true and x_pred must have the same shape, got x_true of shape {a.shape} "
            f"and x_pred of shape {b.shape}."
        )
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            "x_true and x_pred must be shaped (H, W), (n, H, W) or (n, C, H, W), "
            f"got {a.ndim} dimension(s) with shape {a.shape}."
        )
    if a.size == 0:
        raise ValueError(f"x_true and x_pred must not be empty, got shape {a.shape}.")
    if a.ndim == 2:
        a, b = a[None], b[None]
    return a, b


def _win_size(height, width):
    """Largest odd SSIM window size, at most 7, that fits an image of ``height x width``."""
    side = min(height, width, _MAX_WIN_SIZE)
    win = side if side % 2 == 1 else side - 1
    if win < _MIN_WIN_SIZE:
        raise ValueError(
            f"ssim needs images of at least {_MIN_WIN_SIZE}x{_MIN_WIN_SIZE} pixels, "
            f"got {height}x{width}."
        )
    return win


def psnr(x_true, x_pred, data_range=1.0):
    """Mean peak signal-to-noise ratio (dB) over a batch of images.

    Each image's PSNR is computed with
    :func:`skimage.metrics.peak_signal_noise_ratio` (over all its channels and
    pixels), then the values are averaged over images.

    Parameters
    ----------
    x_true : ndarray or Tensor of shape (H, W), (n, H, W) or (n, C, H, W)
        Reference (clean) images.
    x_pred : ndarray or Tensor of the same shape as ``x_true``
        Estimated images.
    data_range : float, default=1.0
        Dynamic range of the images (1.0 for images in [0, 1], 255 for 8-bit).

    Returns
    -------
    float
        Mean PSNR in decibels. Following scikit-image, an image pair that is
        identical has an infinite PSNR, so the mean is ``inf`` as soon as one
        prediction is exact.

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-, 3- or 4-D, or ``data_range`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((2, 8, 8))
    >>> round(psnr(x, x + 0.1), 6)
    20.0
    """
    data_range = _check_data_range(data_range)
    a, b = _as_image_batch(x_true, x_pred)
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(t, p, data_range=data_range) for t, p in zip(a, b)]
    return float(np.mean(values))


def ssim(x_true, x_pred, data_range=1.0):
    """Mean structural similarity index over a batch of images.

    Each image's SSIM is computed with :func:`skimage.metrics.structural_similarity`
    (default uniform window; for ``(n, C, H, W)`` input the channel axis is ``C``
    and the channel SSIMs are averaged), then the values are averaged over images.
    The window is 7x7, or for images smaller than 7 pixels the largest odd size that
    fits (at least 3).

    Parameters
    ----------
    x_true : ndarray or Tensor of shape (H, W), (n, H, W) or (n, C, H, W)
        Reference (clean) images.
    x_pred : ndarray or Tensor of the same shape as ``x_true``
        Estimated images.
    data_range : float, default=1.0
        Dynamic range of the images (1.0 for images in [0, 1], 255 for 8-bit).

    Returns
    -------
    float
        Mean SSIM, at most 1 (1 for identical images).

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-, 3- or 4-D, an image is smaller than
        3x3 pixels, or ``data_range`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((2, 16, 16))
    >>> ssim(x, x)
    1.0
    """
    data_range = _check_data_range(data_range)
    a, b = _as_image_batch(x_true, x_pred)
    win = _win_size(a.shape[-2], a.shape[-1])
    channel_axis = 0 if a.ndim == 4 else None
    values = [
        structural_similarity(t, p, data_range=data_range, win_size=win, channel_axis=channel_axis)
        for t, p in zip(a, b)
    ]
    return float(np.mean(values))


def _rows_as_images(y_true, y_pred, *, square):
    """Turn scorer targets into image batches.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, L), (n, H, W) or (n, C, H, W)
        Targets and predictions as given to a scorer.
    square : bool
        If True, rows of a 2-D target are reshaped to ``(sqrt(L), sqrt(L))``
        images; otherwise to ``(1, L)`` images.

    Returns
    -------
    y_true, y_pred : ndarray of shape (n, h, w) or (n, C, H, W)
    """
    a = _as_numpy(y_true, "y_true")
    b = _as_numpy(y_pred, "y_pred")
    if a.shape != b.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got y_true of shape {a.shape} "
            f"and y_pred of shape {b.shape}."
        )
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            "y_true and y_pred must be shaped (n, L) (flattened images), (n, H, W) or "
            f"(n, C, H, W), got shape {a.shape}."
        )
    if a.ndim > 2:
        return a, b
    n, length = a.shape
    if not square:
        return a.reshape(n, 1, length), b.reshape(n, 1, length)
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(
            f"ssim_scorer cannot infer the image shape of flattened rows of length {length} "
            "(not a perfect square); pass targets shaped (n, H, W) or (n, C, H, W), or build "
            "your own scorer with sklearn.metrics.make_scorer."
        )
    return a.reshape(n, side, side), b.reshape(n, side, side)


def _psnr_score(y_true, y_pred):
    """Mean PSNR for scorers; a 2-D target holds one flattened image per row."""
    a, b = _rows_as_images(y_true, y_pred, square=False)
    return psnr(a, b, data_range=1.0)


def _ssim_score(y_true, y_pred):
    """Mean SSIM for scorers; a 2-D target holds one flattened square image per row."""
    a, b = _rows_as_images(y_true, y_pred, square=True)
    return ssim(a, b, data_range=1.0)


psnr_scorer = make_scorer(_psnr_score, greater_is_better=True)
psnr_scorer.__doc__ = """Scorer: mean PSNR (dB) of ``estimator.predict(X)`` against ``y``.

For ``GridSearchCV(est, param_grid, scoring=psnr_scorer)``. Targets shaped
``(n, H, W)`` or ``(n, C, H, W)`` are images; a 2-D target ``(n, L)`` holds one
flattened image per row (PSNR does not depend on the pixel layout). Assumes
``data_range=1.0``; for another range use
``make_scorer(psnr, data_range=255)`` with 3-D or 4-D targets.
"""

ssim_scorer = make_scorer(_ssim_score, greater_is_better=True)
ssim_scorer.__doc__ = """Scorer: mean SSIM of ``estimator.predict(X)`` against ``y``.

Targets shaped ``(n, H, W)`` or ``(n, C, H, W)`` are images. A 2-D target
``(n, L)`` holds one flattened image per row; rows are reshaped to square
``sqrt(L) x sqrt(L)`` images, and a ``ValueError`` is raised when ``L`` is not a
perfect square (the image shape cannot be inferred, and SSIM depends on it).
Assumes ``data_range=1.0``.
"""
