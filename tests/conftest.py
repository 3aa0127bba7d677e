"""Shared fixtures: tiny, read-only face data so estimator tests stay fast."""

import numpy as np
from hypothesis import settings
import pytest

from implicit_inverse.datasets import load_faces
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements


@pytest.fixture(scope="session")
def faces():
    """32 grayscale faces of 16 x 16 in [0, 1], float32, shaped (32, 16, 16), read-only."""
    images = load_faces(size=16, n=32)
    images.setflags(write=False)  # tests must not modify shared data (nor may the estimators)
    return images


@pytest.fixture(scope="session")
def blur():
    """A small circular Gaussian blur (5 x 5, sigma 1)."""
    return Blur(gaussian_kernel(5, 1.0))


@pytest.fixture(scope="session")
def blurred(faces, blur):
    """(measurements, clean): the faces blurred by ``blur`` plus noise of std 0.01."""
    measurements = make_measurements(faces, blur, noise_std=0.01, random_state=0)
    measurements = np.asarray(measurements, dtype=np.float32)
    measurements.setflags(write=False)
    return measurements, faces


# Property tests draw the same examples on every run: CI must not depend on luck.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")
