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

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..operators import Blur, disk_kernel, gaussian_kernel, make_measurements, motion_kernel
from ..equilibrium.contraction import jacobian_penalty, spectral_penalty
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
    jacobian_weight : float, default 0
        Weight of a Jacobian penalty of the fixed-point map at the training solves' fixed
        points, added to the loss so that the learned map keeps contracting.
    penalty : {"spectral", "frobenius"}, default "spectral"
        Which: the hinge on the largest singular value above ``margin``
        (:func:`~implicit_inverse.equilibrium.spectral_penalty`) or the mean squared singular
        value (:func:`~implicit_inverse.equilibrium.jacobian_penalty`).
    margin : float, default 0.9
        The spectral penalty's margin.
    seed : int, default 0

    Attributes
    ----------
    steps_ : int
    history_ : list of dict
        Per step: ``loss`` (the reconstruction MSE), ``penalty`` (the Jacobian penalty, 0 when
        its weight is 0), ``iterations`` (mean), ``converged`` (share), ``seconds``.
    """

    def __init__(self, denoiser, planes, *, crop=64, batch_size=16, noise_range=(0.0, 0.05),
                 factors=SIGMA_FACTORS[2:], lr=1e-4, max_iter=30, tol=1e-3, jacobian_weight=0.0,
                 penalty="spectral", margin=0.9, seed=0):
        low, high = noise_range
        if not 0 <= low <= high <= 0.2:
            raise ValueError(f"noise_range must satisfy 0 <= low <= high <= 0.2, "
                             f"got {noise_range!r}")
        if not jacobian_weight >= 0:
            raise ValueError(f"jacobian_weight must be >= 0, got {jacobian_weight!r}")
        if penalty not in ("spectral", "frobenius"):
            raise ValueError(f"penalty must be 'spectral' or 'frobenius', got {penalty!r}")
        self.denoiser = denoiser
        self.crops = NoisyCrops(planes, None, crop, (0.0, 0.0), 1 << 20, seed)
        self.batch_size, self.noise_range, self.factors = batch_size, noise_range, tuple(factors)
        self.max_iter, self.tol, self.jacobian_weight = max_iter, tol, float(jacobian_weight)
        self.penalty, self.margin = penalty, float(margin)
        self.optimizer = torch.optim.Adam(denoiser.parameters(), lr=lr)
        self.rng = np.random.default_rng([seed, 31337])
        self.next_crop_ = 0
        self.steps_, self.history_ = 0, []

    def _clean_batch(self):
        first, self.next_crop_ = self.next_crop_, self.next_crop_ + self.batch_size
        return torch.stack([self.crops[index][1] for index in range(first, self.next_crop_)])

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
        penalty = self._penalty(layer.map, restored.detach(), measured)
        self.optimizer.zero_grad()
        (loss + self.jacobian_weight * penalty).backward()
        self.optimizer.step()
        stats = layer.last_stats.summary()
        self.steps_ += 1
        entry = {"loss": float(loss.detach()), "penalty": float(penalty.detach()),
                 "iterations": stats["iterations_mean"],
                 "converged": stats["converged_share"],
                 "seconds": time.perf_counter() - start}
        self.history_.append(entry)
        return entry

    def _penalty(self, fixed_point_map, fixed_points, measured):
        if not self.jacobian_weight:
            return torch.zeros(())
        if self.penalty == "frobenius":
            return jacobian_penalty(fixed_point_map, fixed_points, measured)
        return spectral_penalty(fixed_point_map, fixed_points, measured, margin=self.margin)

    def train_for(self, seconds):
        """Steps until ``seconds`` of wall time have passed; returns the steps taken."""
        start, before = time.perf_counter(), self.steps_
        while time.perf_counter() - start < seconds:
            self.step()
        return self.steps_ - before

    def save_checkpoint(self, directory):
        """Write the training state to ``directory`` (created if needed), replacing the last one.

        Three files: ``params.pt`` (the denoiser's ``state_dict``), ``optimizer.pt`` (Adam's)
        and ``trainer.json`` (steps, the position in the crop stream, the blur generator's
        state and the history). Each is written to a temporary name first and then renamed,
        so an interrupted save leaves the previous checkpoint whole.

        Parameters
        ----------
        directory : str or path-like
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"steps": self.steps_, "next_crop": self.next_crop_,
                 "rng": self.rng.bit_generator.state, "history": self.history_}
        for name, value in (("params.pt", self.denoiser.state_dict()),
                            ("optimizer.pt", self.optimizer.state_dict())):
            torch.save(value, directory / f"{name}.tmp")
        (directory / "trainer.json.tmp").write_text(json.dumps(state))
        for name in ("params.pt", "optimizer.pt", "trainer.json"):
            os.replace(directory / f"{name}.tmp", directory / name)

    def load_checkpoint(self, directory):
        """Continue from what :meth:`save_checkpoint` wrote to ``directory``.

        Parameters
        ----------
        directory : str or path-like

        Returns
        -------
        bool
            False when ``directory`` holds no checkpoint (nothing changes).
        """
        directory = Path(directory)
        if not (directory / "trainer.json").is_file():
            return False
        state = json.loads((directory / "trainer.json").read_text())
        self.denoiser.load_state_dict(torch.load(directory / "params.pt", weights_only=True))
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt",
                                                  weights_only=True))
        self.steps_, self.next_crop_ = state["steps"], state["next_crop"]
        self.rng.bit_generator.state = state["rng"]
        self.history_ = state["history"]
        return True
