"""The numbers ``fit`` resolves before it trains: the noise level, ``lam`` (tuned, or calibrated
with ``sigma`` for a pretrained prior), the safe step sizes, and the checks made with them."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from .._runtime import SeedStream
from ..baselines.tuning import tune_lam
from ..equilibrium import ConvergenceWarning, safe_step_size
from ..training.calibration import calibrate_prior, sigma_for_lam
from ..training.recipe import build_prior

CALIBRATION_PAIRS = 8
"""Training pairs restored to calibrate a pretrained prior's ``lam`` and ``sigma``."""


class FittedNumbers(NamedTuple):
    """What :func:`fit_numbers` resolves."""

    lam: float
    sigma: float | None
    """The denoiser strength (None for a gradient prior)."""
    prior: torch.nn.Module | None
    """The denoiser prior built to calibrate (None for a gradient prior)."""
    scores: dict | None
    """Calibration PSNR (dB) per strength factor tried (None unless calibrated)."""


def noise_level(estimator, measurements, clean, operator):
    """``noise_std_``: the RMS of ``measurements - A clean`` for ``noise_std="auto"``, else
    ``noise_std``."""
    if estimator.noise_std == "auto":
        return float((measurements - operator(clean)).pow(2).mean().sqrt())
    return float(estimator.noise_std)


def fit_numbers(estimator, recipe, measurements, clean, operator):
    """``lam`` (and for a denoiser prior ``sigma``) of the map ``recipe`` describes.

    Parameters
    ----------
    estimator : ImplicitRegressor
        With ``noise_std_`` set.
    recipe : ModelSpec
        ``lam`` not yet resolved.
    measurements, clean : Tensor of shape (n, C, H', W') and (n, C, H, W)
    operator : LinearOperator

    Returns
    -------
    FittedNumbers
        ``lam="auto"`` tunes Tikhonov's weight (gradient prior) or calibrates the denoiser on
        the first :data:`CALIBRATION_PAIRS` pairs; a given ``lam`` gives the denoiser its
        ``sigma`` through :func:`~implicit_inverse.training.calibration.sigma_for_lam`.
    """
    tuning = _tuning_measurements(estimator, measurements, clean, operator)
    if not recipe.denoiser_prior:
        lam = tune_lam(operator, tuning, clean) if estimator.lam == "auto" \
            else float(estimator.lam)
        return FittedNumbers(lam, None, None, None)
    prior = build_prior(recipe)
    if estimator.lam != "auto":
        lam = float(estimator.lam)
        return FittedNumbers(lam, sigma_for_lam(estimator.noise_std_, lam), prior, None)
    lam, sigma, scores = calibrate_prior(recipe, prior, tuning[:CALIBRATION_PAIRS],
                                         clean[:CALIBRATION_PAIRS], estimator.noise_std_)
    return FittedNumbers(lam, sigma, prior, scores)


def _tuning_measurements(estimator, measurements, clean, operator):
    """Measurements of noise std ``noise_std_`` on which ``lam`` is tuned: the given ones for
    ``noise_std="auto"``, else ``A y`` plus seeded noise of that std."""
    if estimator.noise_std == "auto":
        return measurements
    generator = torch.Generator().manual_seed(SeedStream.tuning(estimator.random_state))
    noiseless = operator(clean)
    return noiseless + estimator.noise_std_ * torch.randn(noiseless.shape, generator=generator,
                                                          dtype=noiseless.dtype)


def safe_step(estimator, operator, shape):
    """The step sizes for which the linear part of the map contracts: (0, bound).

    One power iteration per ``fit`` (the warning and the divergence hint share it).

    Parameters
    ----------
    estimator : ImplicitRegressor
        With ``lam_`` set.
    operator : LinearOperator
    shape : tuple (n, C, H, W)
        Of the clean images.

    Returns
    -------
    float
    """
    return safe_step_size(operator, (1, *shape[1:]), alpha=estimator.lam_,
                          precondition_lam=estimator.lam_ if estimator.precondition else None)


def warn_if_not_contractive(estimator, bound):
    """A ``ConvergenceWarning`` when ``eta`` is not in the safe range (0, ``bound``)."""
    if estimator.eta >= bound:
        warnings.warn(
            f"eta={estimator.eta} is outside the safe range (0, {bound:.3g}) for this operator "
            f"(||A|| estimated by power iteration, alpha=lam={estimator.lam_:.3g}, "
            f"precondition={estimator.precondition}): the fixed-point map cannot contract and "
            "the solves will diverge or hit max_iter", ConvergenceWarning, stacklevel=5)


def check_regularizer(regularizer, sample):
    """Refuse a regularizer that fails on ``sample`` (1, C, H, W) or changes its shape."""
    try:
        with torch.no_grad():
            output = regularizer(sample)
    except Exception as error:  # noqa: BLE001 - report any failure of the user's module
        raise ValueError(f"regularizer failed on an image of shape {tuple(sample.shape)}: "
                         f"{type(error).__name__}: {error}") from None
    if not isinstance(output, torch.Tensor) or output.shape != sample.shape:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"regularizer must return images shaped like its input "
                         f"{tuple(sample.shape)}, got {shape}")
