"""Procedural training images: "dead leaves" (random occluding discs), free and never a test photo.

Dead-leaves images are stacks of opaque discs whose radii follow a power law, so they have the
scale invariance and the sharp occlusion edges of natural images; denoisers trained on them come
close to those trained on photos (Achddou et al., 2021; Baradad et al., 2021). Here each disc is
a grey level, a linear shading or a sinusoidal texture, and part of the images are slightly
blurred (out-of-focus layers), so the prior also sees smooth regions and fine periodic detail.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dead_leaves(size, rng, *, radius_range=(1.0, 64.0), exponent=3.0, coverage=4.0):
    """One dead-leaves image.

    Parameters
    ----------
    size : int
        Side of the square image.
    rng : numpy.random.Generator
    radius_range : (float, float), default (1, 64)
        Smallest and largest disc radius in pixels.
    exponent : float, default 3
        Radii have density proportional to ``r ** -exponent`` (3 gives scale invariance).
    coverage : float, default 4
        Sum of disc areas over the image area; 4 leaves well under 2% of the pixels uncovered.

    Returns
    -------
    ndarray of shape (size, size), float32, values in [0, 1]
    """
    low, high = radius_range
    if not 0 < low <= high:
        raise ValueError(f"radius_range must satisfy 0 < low <= high, got {radius_range!r}")
    image = np.full((size, size), rng.uniform(), dtype=np.float32)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    area, target = 0.0, coverage * size * size
    while area < target:
        # inverse-CDF draw from r ** -exponent on [low, high]
        power = 1.0 - exponent
        u = rng.uniform()
        radius = (low ** power + u * (high ** power - low ** power)) ** (1.0 / power)
        centre = rng.uniform(-radius, size + radius, size=2)
        top, bottom = int(max(0, centre[0] - radius)), int(min(size, centre[0] + radius + 1))
        left, right = int(max(0, centre[1] - radius)), int(min(size, centre[1] + radius + 1))
        area += np.pi * radius * radius
        if top >= bottom or left >= right:
            continue
        r, c = rows[top:bottom, left:right], cols[top:bottom, left:right]
        inside = (r - centre[0]) ** 2 + (c - centre[1]) ** 2 <= radius * radius
        if not inside.any():
            continue
        image[top:bottom, left:right][inside] = _leaf_values(r[inside], c[inside], rng)
    if rng.uniform() < 0.3:
        image = ndimage.gaussian_filter(image, sigma=rng.uniform(0.5, 2.0))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _leaf_values(rows, cols, rng):
    """Grey values of one disc at the given pixel coordinates: flat, shaded or textured."""
    base = rng.uniform()
    style = rng.uniform()
    if style < 0.6:
        return np.full(rows.shape, base, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    along = rows * np.cos(angle) + cols * np.sin(angle)
    if style < 0.85:
        slope = rng.uniform(-0.02, 0.02)
        return (base + slope * (along - along.mean())).astype(np.float32)
    period = rng.uniform(2.5, 12.0)
    amplitude = rng.uniform(0.05, 0.25)
    return (base + amplitude * np.sin(2 * np.pi * along / period)).astype(np.float32)


def dead_leaves_planes(count, size, seed):
    """``count`` dead-leaves images, a pure function of ``seed`` (the same bank every run).

    Parameters
    ----------
    count : int
    size : int
    seed : int

    Returns
    -------
    list of ndarray of shape (size, size), float32
    """
    return [dead_leaves(size, np.random.default_rng([seed, 7919, index]))
            for index in range(count)]
