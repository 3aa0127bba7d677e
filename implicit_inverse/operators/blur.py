"""Convolution (blur) operators computed with ``torch.fft``; Gaussian, disk and motion kernels."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .base import LinearOperator

BOUNDARIES = ("circular", "zero")


def gaussian_kernel(size, sigma):
    """A normalised 2-D Gaussian kernel.

    Parameters
    ----------
    size : int
        Side length of the square kernel, >= 1 (odd sizes are centred exactly).
    sigma : float
        Standard deviation in pixels, > 0.

    Returns
    -------
    numpy.ndarray of shape (size, size), float64, summing to 1
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not np.isfinite(sigma) \
            or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    profile = np.exp(-0.5 * (axis / float(sigma)) ** 2)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def _check_length(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < low or (low == 0 and value == 0):
        bound = "> 0" if low == 0 else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


_OVERSAMPLE = 16  # sub-pixels per pixel side for the coverage of disks and lines


def disk_kernel(radius):
    """A normalised disk (uniform defocus blur, "pillbox") of the given radius.

    Each pixel's weight is the share of its area inside the disk (estimated on a 16 x 16 grid of
    sub-pixels), so the kernel changes smoothly with ``radius``.

    Parameters
    ----------
    radius : float
        Radius in pixels, > 0 (below 0.5 the kernel is nearly a single pixel).

    Returns
    -------
    numpy.ndarray of shape (s, s), float64, summing to 1
        ``s`` is the smallest odd side holding the disk: ``2 ceil(radius - 0.5) + 1``.

    Examples
    --------
    >>> disk_kernel(1.5).shape
    (3, 3)
    """
    radius = _check_length(radius, "radius", 0)
    half = max(int(np.ceil(radius + 0.5)) - 1, 0)
    offsets = (np.arange(_OVERSAMPLE) + 0.5) / _OVERSAMPLE - 0.5
    axis = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).ravel()
    inside = (axis[:, None] ** 2 + axis[None, :] ** 2) <= radius ** 2
    side = 2 * half + 1
    coverage = inside.reshape(side, _OVERSAMPLE, side, _OVERSAMPLE).mean(axis=(1, 3))
    if coverage.sum() == 0:  # a radius so small that no sub-pixel centre is inside
        coverage[half, half] = 1.0
    return coverage / coverage.sum()


def motion_kernel(length, angle):
    """A normalised straight motion blur: a line segment of ``length`` pixels through the centre.

    Each pixel's weight is the length of the segment inside it (the segment is sampled 16 times
    per pixel of length), so a horizontal motion of 5 pixels is exactly ``[1, 1, 1, 1, 1] / 5``.

    Parameters
    ----------
    length : float
        Length of the motion in pixels, >= 1.
    angle : float
        Direction in degrees, counter-clockwise from the horizontal as the image is shown
        (rows going down): 0 is a horizontal blur, 90 a vertical one.

    Returns
    -------
    numpy.ndarray of shape (kh, kw), float64, summing to 1
        Odd sides, the smallest that hold the segment (``(1, 5)`` for ``motion_kernel(5, 0)``);
        symmetric under a half turn (a motion blur has no direction sign).

    Examples
    --------
    >>> motion_kernel(5, 0).shape
    (1, 5)
    """
    length = _check_length(length, "length", 1)
    if isinstance(angle, bool) or not isinstance(angle, numbers.Real) or not np.isfinite(angle):
        raise ValueError(f"angle must be a finite number of degrees, got {angle!r}")
    half = int(np.ceil(length / 2))
    side = 2 * half + 1
    theta = np.deg2rad(float(angle))
    n_samples = int(np.ceil(length)) * _OVERSAMPLE
    steps = (np.arange(n_samples) + 0.5) / n_samples * length - length / 2  # interval midpoints
    rows = np.rint(half - steps * np.sin(theta)).astype(int)
    cols = np.rint(half + steps * np.cos(theta)).astype(int)
    kernel = np.zeros((side, side))
    np.add.at(kernel, (rows, cols), 1.0)
    kernel = 0.5 * (kernel + kernel[::-1, ::-1])  # exact half-turn symmetry despite rounding
    return _trim(kernel) / kernel.sum()


def _trim(kernel):
    """Drop all-zero outer rows and columns in symmetric pairs (odd sides stay centred)."""
    rows = np.flatnonzero(kernel.any(axis=1))
    cols = np.flatnonzero(kernel.any(axis=0))
    dr = min(rows[0], kernel.shape[0] - 1 - rows[-1])
    dc = min(cols[0], kernel.shape[1] - 1 - cols[-1])
    return kernel[dr:kernel.shape[0] - dr, dc:kernel.shape[1] - dc]


def _as_kernel(kernel):
    if isinstance(kernel, torch.Tensor):
        kernel = kernel.detach().cpu().numpy()
    try:
        array = np.asarray(kernel)
    except Exception as error:  # noqa: BLE001 - anything unconvertible is a type error
        raise TypeError(f"kernel must be a 2-D array of real numbers: {error}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                     or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"kernel must be a 2-D array of real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"kernel must be 2-D shaped (kh, kw), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"kernel must be non-empty, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("kernel must contain only finite values (found NaN or inf)")
    return torch.as_tensor(array.astype(np.float64))


class Blur(LinearOperator):
    r"""Convolution with a 2-D kernel, computed in the Fourier domain.

    .. math:: (A x)[i, j] = \sum_{p, q} k[p, q] \, x[i - p + c_h, j - q + c_w]

    with the kernel centre :math:`(c_h, c_w) = (k_h // 2, k_w // 2)`: a true convolution (the
    kernel is flipped relative to ``torch.nn.functional.conv2d``). The output has the input's size.

    Parameters
    ----------
    kernel : array-like of shape (kh, kw)
        Any finite real kernel (odd or even size, not necessarily symmetric), numpy or torch.
    boundary : {"circular", "zero"}, default "circular"
        ``"circular"``: periodic images (the kernel must fit in the image). ``"zero"``: the image
        is zero outside its support; computed by FFT on a padded grid so the result is the exact
        linear convolution, with an exact adjoint.

    Notes
    -----
    Transfer functions are cached per image size, dtype and device.
    """

    def __init__(self, kernel, boundary="circular"):
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        self.kernel = _as_kernel(kernel)
        self.boundary = boundary
        self._cache = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __repr__(self):
        return f"Blur(kernel shape {tuple(self.kernel.shape)}, boundary={self.boundary!r})"

    def _check_input_shape(self, shape):
        kh, kw = self.kernel.shape
        if self.boundary == "circular" and (kh > shape[2] or kw > shape[3]):
            raise ValueError(
                f"kernel of shape {(kh, kw)} is larger than the image {shape[2:]}: circular "
                "blur is undefined there; use boundary='zero' or a smaller kernel"
            )

    def _grid(self, height, width):
        """FFT grid size: the image itself (circular) or large enough to avoid wrap-around."""
        if self.boundary == "circular":
            return height, width
        kh, kw = self.kernel.shape
        return height + kh - 1, width + kw - 1

    def transfer_function(self, height, width, dtype=torch.float32, device="cpu"):
        """The kernel's real 2-D FFT on the grid used for images of size (height, width).

        Parameters
        ----------
        height, width : int
            Image size.
        dtype : torch real dtype of the images.
        device : torch device.

        Returns
        -------
        torch.Tensor of shape (gh, gw // 2 + 1), complex
            ``(gh, gw)`` is the image size for the circular boundary, the padded size otherwise.
            For the circular boundary the kernel centre is rolled to the origin.
        """
        key = (height, width, dtype, str(device))
        if key not in self._cache:
            grid_h, grid_w = self._grid(height, width)
            kh, kw = self.kernel.shape
            padded = torch.zeros(grid_h, grid_w, dtype=torch.float64)
            padded[:kh, :kw] = self.kernel
            if self.boundary == "circular":
                padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
            self._cache[key] = torch.fft.rfft2(padded).to(dtype=_complex_of(dtype),
                                                          device=device)
        return self._cache[key]

    def fourier_multiplier(self, shape, dtype=torch.float32, device="cpu"):
        """The transfer function for circular blur of images shaped ``shape``; ``None`` for the
        zero boundary (padded grid) and for half-precision dtypes (FFTs need float32/64)."""
        if self.boundary != "circular" or dtype not in (torch.float32, torch.float64):
            return None
        self._check_input_shape(tuple(shape))
        return self.transfer_function(shape[-2], shape[-1], dtype, device)

    def _filter(self, x, conjugate):
        height, width = x.shape[-2:]
        transfer = self.transfer_function(height, width, x.dtype, x.device)
        if conjugate:
            transfer = transfer.conj()
        grid = self._grid(height, width)
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(x) * transfer, s=grid)
        kh, kw = self.kernel.shape
        ch, cw = kh // 2, kw // 2
        if not conjugate:
            full = torch.fft.irfft2(torch.fft.rfft2(x, s=grid) * transfer, s=grid)
            return full[..., ch:ch + height, cw:cw + width]
        # adjoint of (crop at centre) o (linear convolution): place y at the centre, correlate
        grid_h, grid_w = grid
        placed = torch.zeros(*x.shape[:-2], grid_h, grid_w, dtype=x.dtype, device=x.device)
        placed[..., ch:ch + height, cw:cw + width] = x
        full = torch.fft.irfft2(torch.fft.rfft2(placed) * transfer, s=grid)
        return full[..., :height, :width]

    def _forward(self, x):
        return _in_fft_precision(self._filter, x, conjugate=False)

    def _adjoint(self, y):
        return _in_fft_precision(self._filter, y, conjugate=True)

    def _solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        return _in_fft_precision(self._solve_normal_fft, b, lam=lam, max_iter=max_iter, tol=tol)

    def _solve_normal_fft(self, b, lam, max_iter=200, tol=1e-8):
        if self.boundary != "circular":
            return super()._solve_normal(b, lam, max_iter=max_iter, tol=tol)
        height, width = b.shape[-2:]
        power = self.transfer_function(height, width, b.dtype, b.device).abs() ** 2
        denominator = power + lam
        if bool((denominator <= 0).any()):
            raise ValueError("lam must be > 0: the blur's transfer function has zeros")
        return torch.fft.irfft2(torch.fft.rfft2(b) / denominator, s=(height, width))


def _complex_of(dtype):
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _in_fft_precision(function, x, **kwargs):
    """Run ``function`` in float32 for half-precision inputs (FFTs need float32 or float64)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return function(x.float(), **kwargs).to(x.dtype)
    return function(x, **kwargs)
