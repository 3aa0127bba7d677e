"""Shared fixtures: tiny, read-only face data so estimator tests stay fast, one torch thread,
and the operators the classical baselines are checked on."""

import numpy as np
from hypothesis import settings
import pytest
import torch

from implicit_inverse.datasets import load_faces
from implicit_inverse.operators import (Blur, Downsample, Identity, Mask, gaussian_kernel,
                                        make_measurements)

ASYMMETRIC_KERNEL = np.array([[0.0, 0.2, 0.1], [0.1, 0.4, 0.0], [0.0, 0.1, 0.1]])
OPERATOR_NAMES = ["circular blur", "zero-boundary blur (CG)", "asymmetric kernel", "downsample",
                  "mask", "identity"]


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a whole test module (``pytestmark =
    pytest.mark.usefixtures("single_thread")``): on tiny tensors and shared cores more threads
    only add contention. The caller's setting is restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def operators():
    """The operators the classical baselines are checked on, by name (``OPERATOR_NAMES``): a
    circular blur, the same blur with a zero boundary (conjugate gradients), an asymmetric
    kernel, downsampling, a mask and the identity."""
    return {
        "circular blur": Blur(gaussian_kernel(3, 0.8)),
        "zero-boundary blur (CG)": Blur(gaussian_kernel(3, 0.8), boundary="zero"),
        "asymmetric kernel": Blur(ASYMMETRIC_KERNEL),
        "downsample": Downsample(2),
        "mask": Mask(fraction=0.5, random_state=0),
        "identity": Identity(),
    }


@pytest.fixture(params=OPERATOR_NAMES)
def any_operator(request, operators):
    """Each of ``operators`` in turn (the test ids are their names)."""
    return operators[request.param]


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
