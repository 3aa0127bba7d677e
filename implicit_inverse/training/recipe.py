"""One model recipe: :class:`ModelSpec` says what the implicit model is, :func:`build_model`
builds it.

``fit`` and ``from_pretrained`` resolve the estimator's numbers (``lam_``, ``prior_sigma_``)
into a spec (``spec_``) and build the layer from it; calibration builds the maps it compares
from the same spec, so it calibrates exactly the map that will run.

Examples
--------
>>> from implicit_inverse.operators import Blur, gaussian_kernel
>>> spec = ModelSpec(Blur(gaussian_kernel(5, 1.0)), regularizer="dncnn:2x4", channels=1,
...                  lam=0.01)
>>> layer = build_model(spec)
>>> type(layer.map).__name__, layer.max_iter
('GradientStep', 100)
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..equilibrium import (FixedPointSolver, GradientStep, GradientStrategy, ImplicitLayer,
                           ProximalStep)
from ..networks.denoiser import DenoiserGradient
from ..networks.precision import with_precision
from ..networks.specs import DENOISER_KINDS, build_regularizer, parse_regularizer
from ..operators import LinearOperator


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What an implicit model is: its operator, prior, map and solves.

    Parameters
    ----------
    operator : LinearOperator
        The forward model ``A``.
    regularizer : str or torch.nn.Module
        A spec of :func:`~implicit_inverse.networks.specs.parse_regularizer`: a DnCNN or a
        module is the gradient prior ``R(x)`` of DE-GRAD (:class:`GradientStep`), a
        ``"pretrained[:NAME]"`` prior the denoiser ``D(x, sigma)`` of the proximal map
        (:class:`ProximalStep`), a ``"red[:NAME]"`` prior that denoiser as the RED gradient
        ``R(x) = lam (x - D(x, sigma))`` of DE-GRAD
        (:class:`~implicit_inverse.networks.denoiser.DenoiserGradient`).
    channels : int
        Image channels C.
    lam : float or None
        Tikhonov weight of the preconditioner, the starting point and a DnCNN's ``alpha``; None
        until the estimator has fitted it (:func:`build_model` needs it).
    sigma : float or None, default None
        Strength of a denoiser prior (None until calibrated; unused by a learned gradient
        prior).
    eta : float, default 1.0
        Step size of the map.
    precondition : bool, default True
        Precondition the data step with ``(A^T A + lam I)^{-1}``.
    learn_step : bool, default True
        Train the step size (DE-GRAD, RED included) or ``sigma`` (proximal map).
    solver : str or FixedPointSolver, default "anderson"
    gradient : str or GradientStrategy, default "jfb"
    max_iter, tol : int, float, default 100, 1e-4
        Cap and tolerance of the prediction solves.
    train_max_iter, train_tol : int, float, default 30, 1e-3
        Cap and tolerance of the training solves.
    precision : {"float32", "bfloat16", "float16"}, default "float32"
        Arithmetic of the prior during training.
    seed : int, default 0
        Seed of the prior's initialisation (a DnCNN's weights).
    """

    operator: LinearOperator
    regularizer: str | nn.Module
    channels: int
    lam: float | None
    sigma: float | None = None
    eta: float = 1.0
    precondition: bool = True
    learn_step: bool = True
    solver: str | FixedPointSolver = "anderson"
    gradient: str | GradientStrategy = "jfb"
    max_iter: int = 100
    tol: float = 1e-4
    train_max_iter: int = 30
    train_tol: float = 1e-3
    precision: str = "float32"
    seed: int = 0

    @property
    def denoiser_prior(self):
        """Whether the prior is a shipped denoiser ``D(x, sigma)`` (in the proximal map or as a
        RED gradient), whose ``sigma`` is calibrated, not a learned ``R(x)``."""
        return parse_regularizer(self.regularizer)[0] in DENOISER_KINDS

    def replace(self, **changes):
        """A copy with ``changes`` (field names to values)."""
        return dataclasses.replace(self, **changes)


def build_prior(spec):
    """The prior module ``spec`` names, freshly built (seeded by ``spec.seed``).

    Parameters
    ----------
    spec : ModelSpec

    Returns
    -------
    torch.nn.Module
        ``R(x)`` (a copy of a module spec) or the denoiser ``D(x, sigma)``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return build_regularizer(spec.regularizer, spec.channels, spec.lam)


def build_model(spec, device="cpu", prior=None):
    """The implicit layer ``spec`` describes.

    Parameters
    ----------
    spec : ModelSpec
        With ``lam`` (and, for a denoiser prior, ``sigma``) resolved.
    device : str, default "cpu"
        Where the prior will run (``precision="float16"`` needs CUDA).
    prior : torch.nn.Module or None, default None
        The prior module to use, as :func:`build_prior` built it (a calibration reuses one
        module for every map it tries); None builds it.

    Returns
    -------
    ImplicitLayer
        Around a :class:`GradientStep` (preconditioned as ``spec`` says, Tikhonov start; its
        ``R`` the RED gradient of the denoiser for ``"red"``) or a :class:`ProximalStep`, on
        the CPU.
    """
    if spec.lam is None or (spec.denoiser_prior and spec.sigma is None):
        raise ValueError("build_model needs a spec with lam (and sigma for a denoiser prior) "
                         "resolved")
    kind = parse_regularizer(spec.regularizer)[0]
    prior = build_prior(spec) if prior is None else prior
    if kind == "pretrained":
        step = ProximalStep(spec.operator, with_precision(prior, spec.precision, device),
                            lam=spec.lam, sigma=spec.sigma, eta=spec.eta,
                            precondition=spec.precondition, learn_sigma=spec.learn_step)
    else:
        if kind == "red":
            prior = DenoiserGradient(prior, spec.sigma, spec.lam)
        step = GradientStep(spec.operator, with_precision(prior, spec.precision, device),
                            eta=spec.eta, precondition=spec.precondition, lam=spec.lam,
                            initializer="tikhonov", learn_step=spec.learn_step)
    return ImplicitLayer(step, solver=copy.deepcopy(spec.solver),
                         gradient=copy.deepcopy(spec.gradient), max_iter=spec.max_iter,
                         tol=spec.tol, warn=False, train_max_iter=spec.train_max_iter,
                         train_tol=spec.train_tol)
