"""Choosing a plug-and-play map's data weight ``lam`` and denoiser strength ``sigma``.

For measurements with noise of std ``s``, half-quadratic splitting of
``||A x - d||^2 / (2 s^2) + phi(x)`` gives the proximal map of
:class:`~implicit_inverse.equilibrium.ProximalStep` with ``sigma = s / sqrt(lam)``: one free
number. :func:`calibrate_prior` tries the denoiser strengths ``sigma = factor * s`` of
:data:`SIGMA_FACTORS` (so ``lam = 1 / factor^2``), solves a few measured images with each, and
keeps, among those whose solves all converged, the strongest denoiser whose PSNR is within
:data:`PSNR_SLACK` of the best. Convergence is the hard part of plug-and-play: a stronger
denoiser contracts faster (on 256x256 crops of the held-out photos with ``gaussian:9,1.6``,
strength factor 4 ran 100 iterations without converging, factor 6 converged in 19 and 100,
factor 8 in 13 and 12, within 0.3 dB), so among settings of nearly equal quality the strongest is
the safest. If none converges, the highest PSNR wins.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..metrics import psnr
from .recipe import build_model

SIGMA_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Denoiser strengths tried, as multiples of the measurement noise std."""
PSNR_SLACK = 0.1
"""dB below the best calibration PSNR that a stronger (faster converging) setting may give up."""
MIN_NOISE = 2e-3
"""Noise std assumed for (nearly) noiseless measurements: the prior is never switched off."""
MAX_SIGMA = 0.1
"""Largest denoiser strength tried (the top of the shipped priors' training range)."""
CALIBRATION_ITERATIONS = 40
"""Iterations a calibration solve may take: a setting that needs more counts as unconverged."""


def prior_settings(noise_std, factor):
    """``(lam, sigma)`` of the proximal map for a noise std and a strength factor.

    Parameters
    ----------
    noise_std : float
    factor : float
        ``sigma / noise_std`` (before the limits below).

    Returns
    -------
    lam, sigma : float
        ``sigma = min(factor * max(noise_std, MIN_NOISE), MAX_SIGMA)`` and
        ``lam = (max(noise_std, MIN_NOISE) / sigma)^2``.
    """
    noise = max(float(noise_std), MIN_NOISE)
    sigma = min(factor * noise, MAX_SIGMA)
    return (noise / sigma) ** 2, sigma


def sigma_for_lam(noise_std, lam):
    """The denoiser strength that :func:`prior_settings` pairs with ``lam``.

    Parameters
    ----------
    noise_std, lam : float

    Returns
    -------
    float
        ``max(noise_std, MIN_NOISE) / sqrt(lam)``, at most :data:`MAX_SIGMA`.
    """
    return min(max(float(noise_std), MIN_NOISE) / math.sqrt(lam), MAX_SIGMA)


def calibrate_prior(spec, denoiser, measurements, clean, noise_std, factors=SIGMA_FACTORS):
    """The ``(lam, sigma)`` of :func:`prior_settings` that restores ``measurements`` best.

    Each setting is tried on the map ``spec`` describes (its operator, ``eta``,
    ``precondition``, solver and ``tol``), solved for at most :data:`CALIBRATION_ITERATIONS`
    iterations: the map the model will run.

    Parameters
    ----------
    spec : ModelSpec
        Of a denoiser prior; its ``lam`` and ``sigma`` are what is calibrated (ignored).
    denoiser : torch.nn.Module
        ``D(x, sigma)``, as :func:`~implicit_inverse.training.recipe.build_prior` built it for
        ``spec`` (shared by every map tried; left in its training mode).
    measurements : torch.Tensor of shape (n, C, H', W')
        A few measurements (four 64x64 crops are enough and take seconds).
    clean : torch.Tensor of shape (n, C, H, W)
    noise_std : float
        Noise std of ``measurements``.
    factors : sequence of float

    Returns
    -------
    lam, sigma : float
    scores : dict
        Mean PSNR (dB) of each factor tried.
    """
    scores, converged = {}, {}
    was_training = denoiser.training
    try:
        with torch.no_grad():
            for factor in factors:
                lam, sigma = prior_settings(noise_std, factor)
                # evaluation runs the prior in float32 at every precision
                layer = build_model(spec.replace(lam=lam, sigma=sigma, precision="float32",
                                                 max_iter=CALIBRATION_ITERATIONS),
                                    prior=denoiser).eval()
                restored = layer(measurements)
                scores[factor] = psnr(clean.numpy(), restored.clamp(0, 1).numpy())
                converged[factor] = bool(layer.last_stats.converged.all())
    finally:
        denoiser.train(was_training)
    candidates = [factor for factor in scores if converged[factor]] or list(scores)
    top = max(scores[factor] for factor in candidates)
    best = max(factor for factor in candidates if scores[factor] >= top - PSNR_SLACK)
    lam, sigma = prior_settings(noise_std, best)
    return lam, sigma, {float(k): float(v) for k, v in scores.items()}


def calibration_crops(n=4, size=64, seed=0):
    """Clean crops of the shipped priors' own training photos (never a held-out photo).

    Used by ``from_pretrained``, which has no data of the user's.

    Parameters
    ----------
    n, size : int
    seed : int

    Returns
    -------
    torch.Tensor of shape (n, 1, size, size), float32
    """
    from ..data.photos import CALIBRATION_PHOTOS, load_photo

    rng = np.random.default_rng(seed)
    names = CALIBRATION_PHOTOS
    crops = []
    for index in range(n):
        photo = load_photo(names[index % len(names)])
        top = rng.integers(photo.shape[0] - size + 1)
        left = rng.integers(photo.shape[1] - size + 1)
        crops.append(photo[top:top + size, left:left + size])
    return torch.from_numpy(np.stack(crops)[:, None].copy())
