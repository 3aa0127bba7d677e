"""scikit-image's bundled photographs, split once into training and held-out photos."""

from __future__ import annotations

import functools

import numpy as np
from skimage import color, data, util

HELD_OUT_PHOTOS = ("camera", "coffee")
"""Photos kept for evaluation: no shipped prior and no default training set ever sees them."""

TRAINING_PHOTOS = (
    "astronaut", "chelsea", "rocket", "text", "brick", "grass", "gravel", "moon", "page",
    "clock", "coins", "immunohistochemistry", "hubble_deep_field", "retina",
)  # fmt: skip
"""The fourteen ``skimage.data`` photos the shipped priors are trained on (all offline)."""

CALIBRATION_PHOTOS = ("astronaut", "chelsea", "rocket", "brick", "clock", "page")
"""Training photos whose crops calibrate a pretrained prior in ``from_pretrained`` (textured
and smooth, colour and grayscale; a subset of :data:`TRAINING_PHOTOS`)."""


@functools.lru_cache(maxsize=None)
def load_photo(name, grayscale=True):
    """One ``skimage.data`` photo as float32 in [0, 1].

    Parameters
    ----------
    name : str
        A name from :data:`TRAINING_PHOTOS` or :data:`HELD_OUT_PHOTOS`.
    grayscale : bool, default True
        Convert colour photos to luminance.

    Returns
    -------
    photo : ndarray of shape (H, W) or (H, W, 3), float32
        Read-only (cached).
    """
    if name not in TRAINING_PHOTOS + HELD_OUT_PHOTOS:
        raise ValueError(f"name must be one of {TRAINING_PHOTOS + HELD_OUT_PHOTOS}, got {name!r}")
    photo = util.img_as_float32(getattr(data, name)())
    if photo.ndim == 3:
        photo = photo[..., :3]
        if grayscale:
            photo = color.rgb2gray(photo).astype(np.float32)
    photo = np.ascontiguousarray(np.clip(photo, 0.0, 1.0), dtype=np.float32)
    photo.setflags(write=False)
    return photo


LUMINANCE = (0.2125, 0.7154, 0.0721)
"""ITU-R 709 weights of the luminance plane (those of ``skimage.color.rgb2gray``)."""


def grayscale_planes(channels):
    """A photo's grayscale planes: its luminance and each channel if it is colour, else itself.

    Parameters
    ----------
    channels : ndarray of shape (C, H, W) with C = 1 or 3, values in [0, 1]

    Returns
    -------
    list of ndarray of shape (H, W), float32
    """
    planes = [np.tensordot(LUMINANCE, channels, axes=1)] if len(channels) == 3 else []
    planes.extend(channels)
    return [np.ascontiguousarray(plane, dtype=np.float32) for plane in planes]


def training_planes():
    """Grayscale training planes: each training photo's luminance and, for colour photos, each
    of its three channels (more texture for a grayscale prior; never a held-out photo).

    Returns
    -------
    list of ndarray of shape (H, W), float32
    """
    planes = []
    for name in TRAINING_PHOTOS:
        photo = load_photo(name, grayscale=False)
        planes.extend(grayscale_planes(np.moveaxis(np.atleast_3d(photo), -1, 0)))
    return planes


def training_crops(n, size, seed):
    """``n`` random ``size`` x ``size`` crops of :func:`training_planes` (never a held-out
    photo), a uniform plane and position per crop from ``np.random.default_rng(seed)``.

    Returns
    -------
    ndarray of shape (n, size, size), float32
    """
    planes = [plane for plane in training_planes() if min(plane.shape) >= size]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        plane = planes[rng.integers(len(planes))]
        top = rng.integers(plane.shape[0] - size + 1)
        left = rng.integers(plane.shape[1] - size + 1)
        crops.append(plane[top:top + size, left:left + size])
    return np.stack(crops)
