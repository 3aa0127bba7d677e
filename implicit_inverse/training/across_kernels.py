"""Training the equilibrium model itself across blur kernels, with JFB.

A denoising prior knows nothing of the fixed point it will sit in. Here the whole plug-and-play
fixed point ``x = D_sigma((A^T A + lam I)^{-1} (lam x + A^T d))``
(:class:`~implicit_inverse.equilibrium.ProximalStep`) is trained end to end: every batch draws a
new blur (a Gaussian, a disk or a straight motion, up to 15 px), a noise level in
``noise_range`` and a denoiser strength factor, measures clean crops through that blur, solves
the fixed point without a graph (Anderson) and back-propagates through one more application of
the map (Jacobian-free backpropagation). The result is a denoiser of the same architecture,
shipped as a prior file like any other, that ``from_pretrained`` calibrates and uses zero-shot
for any kernel.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from torch import nn

from ..operators import Blur, disk_kernel, gaussian_kernel, make_measurements, motion_kernel
from .calibration import SIGMA_FACTORS, prior_settings
from .denoiser import NoisyCrops
from .recipe import ModelSpec, build_model

MAX_KERNEL = 15
"""Largest kernel side drawn (pixels)."""


def random_blur(rng):
    """A random circular blur: Gaussian, disk or motion, at most :data:`MAX_KERNEL` pixels.

    Parameters
    ----------
    rng : numpy.random.Generator

    Returns
    -------
    Blur
    """
    family = rng.integers(3)
    if family == 0:
        size = int(rng.choice(np.arange(5, MAX_KERNEL + 1, 2)))
        kernel = gaussian_kernel(size, rng.uniform(0.5, size / 5))
    elif family == 1:
        kernel = disk_kernel(rng.uniform(1.0, 4.0))
    else:
        kernel = motion_kernel(rng.uniform(3.0, MAX_KERNEL), rng.uniform(0.0, 180.0))
    return Blur(kernel)


class AcrossKernelsTrainer:
    """JFB training of a denoiser inside its plug-and-play fixed point, one random blur per batch.

    Parameters
    ----------
    denoiser : NoiseLevelPrior
        Trained in place (start from a trained denoising prior).
    planes : sequence of ndarray of shape (H, W)
        Clean training images (never held-out photos).
    crop, batch_size : int, default 64, 16
    noise_range : (float, float), default (0, 0.05)
        Measurement noise stds drawn uniformly per batch.
    factors : sequence of float
        Denoiser strengths ``sigma / noise_std`` drawn per batch (those the calibration of
        ``from_pretrained`` chooses among; ``lam`` follows from half-quadratic splitting).
    lr : float, default 1e-4
        Adam's learning rate.
    max_iter, tol : int, float, default 30, 1e-3
        The training solves (JFB needs only an approximate fixed point).
    seed : int, default 0

    Attributes
    ----------
    steps_ : int
    history_ : list of dict
        Per step: ``loss``, ``iterations`` (mean), ``converged`` (share), ``seconds``.
    """

    def __init__(self, denoiser, planes, *, crop=64, batch_size=16, noise_range=(0.0, 0.05),
                 factors=SIGMA_FACTORS[2:], lr=1e-4, max_iter=30, tol=1e-3, seed=0):
        low, high = noise_range
        if not 0 <= low <= high <= 0.2:
            raise ValueError(f"noise_range must satisfy 0 <= low <= high <= 0.2, "
                             f"got {noise_range!r}")
        self.denoiser = denoiser
        self.crops = NoisyCrops(planes, None, crop, (0.0, 0.0), 1 << 20, seed)
        self.batch_size, self.noise_range, self.factors = batch_size, noise_range, tuple(factors)
        self.max_iter, self.tol = max_iter, tol
        self.optimizer = torch.optim.Adam(denoiser.parameters(), lr=lr)
        self.rng = np.random.default_rng([seed, 31337])
        self.indices = itertools.count()
        self.steps_, self.history_ = 0, []

    def _clean_batch(self):
        return torch.stack([self.crops[next(self.indices)][1]
                            for _ in range(self.batch_size)])

    def step(self):
        """One optimizer step on a fresh batch and a fresh blur; returns the history entry."""
        start = time.perf_counter()
        operator = random_blur(self.rng)
        noise = float(self.rng.uniform(*self.noise_range))
        lam, sigma = prior_settings(noise, float(self.rng.choice(self.factors)))
        clean = self._clean_batch()
        measured = make_measurements(clean, operator, noise, random_state=self.rng)
        spec = ModelSpec(operator, regularizer="pretrained", channels=1, lam=lam, sigma=sigma,
                         learn_step=False, train_max_iter=self.max_iter, train_tol=self.tol)
        layer = build_model(spec, prior=self.denoiser)
        self.denoiser.train()
        restored = layer(measured)
        loss = nn.functional.mse_loss(restored, clean)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        stats = layer.last_stats.summary()
        self.steps_ += 1
        entry = {"loss": float(loss.detach()), "iterations": stats["iterations_mean"],
                 "converged": stats["converged_share"],
                 "seconds": time.perf_counter() - start}
        self.history_.append(entry)
        return entry

    def train_for(self, seconds):
        """Steps until ``seconds`` of wall time have passed; returns the steps taken."""
        start, before = time.perf_counter(), self.steps_
        while time.perf_counter() - start < seconds:
            self.step()
        return self.steps_ - before
