"""Validation of user arrays at the edge of the library (estimators and command line).

Inner code trusts what leaves this module: real float32 tensors shaped (n, C, H, W) with finite
values.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse
import torch


class ImageLayout:
    """How user images were laid out, so outputs can be returned the same way.

    Parameters
    ----------
    kind : {"numpy", "torch"}
    ndim : int
        2 (flattened images), 3 (n, H, W) or 4 (n, C, H, W).
    dtype : numpy or torch dtype of the input.
    """

    def __init__(self, kind, ndim, dtype):
        self.kind = kind
        self.ndim = ndim
        self.dtype = dtype

    def restore(self, images):
        """Turn a float32 tensor (n, C, H, W) back into the user's layout, kind and dtype.

        Raises ``ValueError`` rather than return infinities when finite images do not fit in the
        user's dtype (float16 holds magnitudes up to 65504 only).
        """
        images = images.detach().cpu()
        if self.ndim == 2:
            images = images.flatten(1)
        elif self.ndim == 3:
            images = images[:, 0]
        if self.kind == "torch":
            restored = images.to(self.dtype)
            finite = bool(torch.isfinite(restored).all())
        else:
            with np.errstate(over="ignore"):
                restored = images.numpy().astype(self.dtype, copy=False)
            finite = bool(np.isfinite(restored).all())
        if not finite and bool(torch.isfinite(images).all()):
            raise ValueError(
                f"the reconstructions (magnitude up to {float(images.abs().max()):.3g}) overflow "
                f"{self.dtype}, the dtype of X: pass X as float32 (images scaled to [0, 1])")
        return restored


def as_image_tensor(values, name, image_shape=None, min_samples=1):
    """Validate user images and convert them to a float32 tensor shaped (n, C, H, W).

    Parameters
    ----------
    values : array-like or torch.Tensor of shape (n, F), (n, H, W) or (n, C, H, W)
        Real floating images; 2-D input holds one flattened image per row.
    name : str
        Argument name for error messages ("X" or "y").
    image_shape : tuple (C, H, W), optional
        Shape of one image, required to unflatten 2-D input (see :func:`infer_image_shape`).
    min_samples : int, default 1

    Returns
    -------
    images : torch.Tensor of shape (n, C, H, W), float32
    layout : ImageLayout

    Raises
    ------
    TypeError
        Non-numeric (text, bytes, dates, objects that are not numbers), boolean or integer
        values, sparse matrices.
    ValueError
        Wrong rank, empty arrays, too few samples, complex values, NaN or infinity, values
        beyond the float32 range. Shapes are checked before the dtype.
    """
    kind = "torch" if isinstance(values, torch.Tensor) else "numpy"
    # complex values first, then shapes, then the dtype
    array = _to_numpy(values, name)
    original_ndim = array.ndim
    if array.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} must be real; got complex dtype "
                         f"{array.dtype}")
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must be images shaped (n, H, W) or (n, C, H, W), or flattened (n, F); got "
            f"{array.ndim}-D array with shape {array.shape} (an image-to-image model needs one "
            "image per sample, not a scalar target)")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: found array with 0 sample(s) (shape={array.shape}) "
                         f"while a minimum of {min_samples} is required")
    if array.size == 0:
        raise ValueError(f"{name} is empty: found array with 0 feature(s) (shape={array.shape}) "
                         "while a minimum of 1 is required; at least one pixel per image is "
                         "needed")
    if array.shape[0] < min_samples:
        raise ValueError(
            f"{name} has n_samples = {array.shape[0]}; at least {min_samples} images are needed "
            "to fit")
    if array.ndim == 2:
        if image_shape is None:
            if array.shape[1] == 1:
                raise ValueError(
                    f"{name} has 1 feature(s) per row (shape={array.shape}): one value per "
                    "sample is not a flattened image; pass images shaped (n, H, W) or "
                    "(n, C, H, W), or give image_shape")
            image_shape = infer_image_shape(array.shape[1])
        if math.prod(image_shape) != array.shape[1]:
            raise ValueError(
                f"{name} has {array.shape[1]} features per row, which cannot be images of shape "
                f"{tuple(image_shape)}")
    array = _check_real_floating(array, name, kind)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity; images must be finite")
    _check_float32_range(array, name)
    if array.ndim == 2:
        array = array.reshape(array.shape[0], *image_shape)
    elif array.ndim == 3:
        array = array[:, None]
    layout = ImageLayout(kind, original_ndim,
                         values.dtype if kind == "torch" else array.dtype)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:  # read-only input (e.g. a memmap): torch needs its own copy
        array = array.copy()
    return torch.from_numpy(array), layout


def infer_image_shape(n_features):
    """Image shape (1, H, W) of a flattened image: square when possible, else one row (1, 1, F)."""
    side = math.isqrt(n_features)
    if side * side == n_features:
        return (1, side, side)
    return (1, 1, n_features)


def warn_if_out_of_range(images, name, low=-0.5, high=1.5):
    """Warn when image values lie far outside the nominal range [0, 1]."""
    smallest, largest = float(images.min()), float(images.max())
    if smallest < low or largest > high:
        warnings.warn(
            f"{name} has values in [{smallest:.3g}, {largest:.3g}], far outside [0, 1]; the "
            "default regularizer and step sizes assume images scaled to [0, 1] (uint8 images: "
            "divide by 255)", UserWarning, stacklevel=3)


def _to_numpy(values, name):
    """``values`` as a numpy array of its own dtype (floating tensors as float64)."""
    if scipy.sparse.issparse(values):
        raise TypeError(f"{name} is a sparse matrix; sparse input is not supported: pass dense "
                        "images (X.toarray())")
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_floating_point():
            return values.to(torch.float64).numpy()
        return values.resolve_conj().numpy()
    try:
        return np.asarray(values)
    except Exception as error:  # noqa: BLE001 - ragged lists and the like
        raise TypeError(f"{name} must be an array of real numbers: {error}") from None


def _check_float32_range(array, name):
    """Refuse finite values that become infinite in float32, the precision of the computation."""
    if array.dtype.itemsize <= 4 or array.size == 0:
        return
    largest = float(np.abs(array).max())
    if largest > float(np.finfo(np.float32).max):
        raise ValueError(
            f"{name} has values of magnitude up to {largest:.3g}, beyond the float32 range "
            f"(about 3.4e38) in which the model computes; images must be scaled to [0, 1]")


def _check_real_floating(array, name, kind):
    """Refuse boolean, integer, text and date arrays; convert object arrays to float64."""
    if array.dtype.kind in "USVMm":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {array.dtype} "
                        "(text, bytes, records and dates are not images)")
    if array.dtype.kind == "b":
        raise TypeError(f"{name} must be real floating images; got dtype bool")
    if array.dtype.kind in "iu":
        convert = "x.float() / 255" if kind == "torch" else "x.astype(np.float32) / 255"
        raise TypeError(
            f"{name} must be floating point images in [0, 1]; got integer dtype {array.dtype} "
            f"(integer images are refused, not rescaled: convert uint8 with {convert})")
    if array.dtype.kind == "O":
        # object arrays hold Python numbers or anything else (None would become NaN)
        for value in array.flat:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be an array of real numbers; got objects of type "
                                f"{type(value).__name__}")
    if array.dtype.kind != "f":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of real numbers; got dtype {array.dtype}") \
                from None
    return array
