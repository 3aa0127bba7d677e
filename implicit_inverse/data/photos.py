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
        if photo.ndim == 3:
            planes.append(load_photo(name, grayscale=True))
            planes.extend(np.ascontiguousarray(photo[..., c]) for c in range(3))
        else:
            planes.append(photo)
    return planes
