"""Fixed-point maps ``T(x; d)`` whose fixed points are the reconstructions.

:class:`GradientStep` is DE-GRAD (a learned regularizer's gradient); :class:`ProximalStep` is
plug-and-play proximal gradient (DE-Prox): a denoiser applied after a data step.
"""

from __future__ import annotations

import abc
import math
import numbers

import torch
from torch import nn

from ..operators import LinearOperator
from .data_step import data_direction

INITIALIZERS = ("adjoint", "tikhonov")


class FixedPointMap(nn.Module, abc.ABC):
    """Base class of a map ``T(x; d)``: ``forward(x, d)`` and ``initial_point(d)``."""

    @abc.abstractmethod
    def forward(self, x, d):
        """One application ``T(x; d)``, shaped like ``x``."""

    @abc.abstractmethod
    def initial_point(self, d):
        """Starting point ``x0`` of the fixed-point solve for measurements ``d``."""


class GradientStep(FixedPointMap):
    r"""The DE-GRAD step, optionally preconditioned.

    .. math:: T(x; d) = x - \eta \, P \, \big(A^\top (A x - d) + R_\theta(x)\big)

    with ``P = I`` (plain gradient step) or ``P = (A^T A + lam I)^{-1}`` (``precondition=True``;
    a closed form through the FFT for circular blur, masks and downsampling).

    The fixed points do not depend on ``eta`` or ``P``: they solve
    ``A^T (A x - d) + R(x) = 0``. ``eta`` and ``P`` set how fast (and whether) the iteration
    contracts towards them.

    Parameters
    ----------
    operator : LinearOperator
        The forward model ``A``.
    regularizer : torch.nn.Module
        ``R_theta``: image (N, C, H, W) -> image of the same shape.
    eta : float, default 1.0
        Step size, > 0. Without preconditioning ``eta < 2 / ||A||^2`` is needed for contraction;
        with it, ``eta < 2`` when ``R`` is close to ``lam * x``.
    precondition : bool, default False
        Use ``P = (A^T A + lam I)^{-1}``; requires ``lam``.
    lam : float, optional
        Tikhonov weight of the preconditioner and of the ``"tikhonov"`` initializer, > 0.
    initializer : {"adjoint", "tikhonov"} or callable, default "adjoint"
        Starting point: ``A^T d``, the Tikhonov solution ``(A^T A + lam I)^{-1} A^T d``, or a
        callable ``d -> x0`` returning a tensor shaped like ``A^T d``.
    learn_step : bool, default False
        Make the step a trainable parameter ``eta_eff = 2 * eta * sigmoid(rho)`` (initialised at
        ``eta``, kept in ``(0, 2 eta)``).
    """

    def __init__(self, operator, regularizer, eta=1.0, precondition=False, lam=None,
                 initializer="adjoint", learn_step=False):
        super().__init__()
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
        if not isinstance(regularizer, nn.Module):
            raise TypeError(
                f"regularizer must be a torch.nn.Module, got {type(regularizer).__name__}")
        _check_positive_finite(eta, "eta")
        if lam is not None:
            _check_positive_finite(lam, "lam")
        if precondition and lam is None:
            raise ValueError("precondition=True needs lam (the preconditioner's Tikhonov weight)")
        if not callable(initializer) and initializer not in INITIALIZERS:
            raise ValueError(
                f"initializer must be one of {INITIALIZERS} or a callable, got {initializer!r}")
        if initializer == "tikhonov" and lam is None:
            raise ValueError("initializer='tikhonov' needs lam")
        self.operator = operator
        self.regularizer = regularizer
        self.eta = float(eta)
        self.precondition = bool(precondition)
        self.lam = None if lam is None else float(lam)
        self.initializer = initializer
        self.learn_step = bool(learn_step)
        self.step_logit = nn.Parameter(torch.zeros(()), requires_grad=self.learn_step)

    @property
    def step(self):
        """The effective step size (a 0-d tensor)."""
        if not self.learn_step:
            return torch.tensor(self.eta, dtype=torch.float64)
        return 2.0 * self.eta * torch.sigmoid(self.step_logit)

    @property
    def prior(self):
        """The prior of the map: the regularizer ``R``."""
        return self.regularizer

    def gradient(self, x, d):
        """``A^T (A x - d) + R(x)``, shaped like ``x`` (N, C, H, W)."""
        return self.operator.adjoint(self.operator(x) - d) + self.regularizer(x)

    def forward(self, x, d):
        """One step ``T(x; d)``.

        Parameters
        ----------
        x : torch.Tensor of shape (N, C, H, W)
            Current iterate.
        d : torch.Tensor of shape (N, C, H', W')
            Measurements (``H', W'`` from ``operator.output_shape``).

        Returns
        -------
        torch.Tensor of shape (N, C, H, W)
        """
        direction = data_direction(self.operator, x, d, self.lam, self.precondition,
                                   prior_gradient=self.regularizer(x))
        return x - self.step.to(x.dtype) * direction

    def initial_point(self, d):
        """Starting point ``x0`` for measurements ``d`` (N, C, H', W') -> (N, C, H, W)."""
        if callable(self.initializer):
            return self.initializer(d)
        if self.initializer == "tikhonov":
            return self.operator.tikhonov(d, self.lam)
        return self.operator.adjoint(d)


class ProximalStep(FixedPointMap):
    r"""Plug-and-play proximal gradient ("DE-Prox"): a denoiser after a data step.

    .. math:: T(x; d) = D_\sigma\big(x - \eta \, P \, A^\top (A x - d)\big)

    With ``precondition=True`` (``P = (A^T A + lam I)^{-1}``) and ``eta = 1`` the data step is
    ``P (lam x + A^T d)``, the exact minimiser of ``||A z - d||^2 / 2 + lam ||z - x||^2 / 2``
    (half-quadratic splitting); ``lam`` and the denoiser's strength ``sigma`` together set the
    balance between data and prior. Its fixed points depend on ``eta``, ``lam`` and ``sigma``.

    Parameters
    ----------
    operator : LinearOperator
        The forward model ``A``.
    denoiser : torch.nn.Module
        ``D(x, sigma)``: images (N, C, H, W) and a noise level (float or (N,) tensor) -> images
        of the same shape, such as :class:`~implicit_inverse.networks.NoiseLevelDenoiser`.
    lam : float
        Tikhonov weight of the preconditioner and of the starting point, > 0.
    sigma : float
        Noise level handed to the denoiser, > 0.
    eta : float, default 1.0
        Step size of the data step, > 0.
    precondition : bool, default True
        Use ``P = (A^T A + lam I)^{-1}``; otherwise ``P = I`` (then ``eta < 2 / ||A||^2``).
    learn_sigma : bool, default True
        Train ``sigma`` (kept positive through its logarithm) with the denoiser.
    """

    def __init__(self, operator, denoiser, lam, sigma, eta=1.0, precondition=True,
                 learn_sigma=True):
        super().__init__()
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"denoiser must be a torch.nn.Module, got {type(denoiser).__name__}")
        for value, name in ((lam, "lam"), (sigma, "sigma"), (eta, "eta")):
            _check_positive_finite(value, name)
        self.operator = operator
        self.denoiser = denoiser
        self.lam = float(lam)
        self.eta = float(eta)
        self.precondition = bool(precondition)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)), requires_grad=learn_sigma)

    @property
    def prior(self):
        """The prior of the map: the denoiser ``D``."""
        return self.denoiser

    @property
    def sigma(self):
        """The denoiser's noise level (a 0-d tensor)."""
        return self.log_sigma.exp()

    def data_step(self, x, d):
        """``x - eta P A^T (A x - d)``, shaped like ``x`` (N, C, H, W)."""
        return x - self.eta * data_direction(self.operator, x, d, self.lam, self.precondition)

    def forward(self, x, d):
        """One step ``T(x; d)``: (N, C, H, W) and (N, C, H', W') -> (N, C, H, W)."""
        return self.denoiser(self.data_step(x, d), self.sigma.to(x.dtype)).to(x.dtype)

    def initial_point(self, d):
        """The Tikhonov solution ``(A^T A + lam I)^{-1} A^T d``, shaped (N, C, H, W)."""
        return self.operator.tikhonov(d, self.lam)


def _check_positive_finite(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
