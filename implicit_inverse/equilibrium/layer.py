"""The implicit layer: an ``nn.Module`` whose output is the fixed point of a map."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .gradients import get_gradient
from .maps import FixedPointMap
from .solvers import get_solver


class ImplicitLayer(nn.Module):
    """``x* = T(x*; d)`` found by a solver, differentiated by a gradient strategy.

    Parameters
    ----------
    fixed_point_map : FixedPointMap
        The map ``T`` (e.g. :class:`~implicit_inverse.equilibrium.GradientStep`).
    solver : {"anderson", "forward"} or FixedPointSolver, default "anderson"
    gradient : {"jfb", "exact", "unrolled"} or GradientStrategy, default "jfb"
    max_iter : int, default 50
        Cap on map evaluations per sample in the forward solve.
    tol : float, default 1e-4
        Relative residual ``||T(x) - x|| / ||x||`` at which a sample has converged.
    warn : bool, default True
        Emit ``ConvergenceWarning`` for unconverged samples.
    train_max_iter, train_tol : int, float or None, default None
        Cap and tolerance of the solves made in training mode (``layer.train()``); None uses
        ``max_iter`` / ``tol``. A training solve needs only the accuracy of the gradient it
        feeds, so a looser tolerance halves the cost of an epoch without changing the fixed
        points returned in evaluation mode.

    Notes
    -----
    Precision on GPUs: the solver evaluates the map with TF32 off (exact float32 convolutions
    and matrix products) whenever its tolerance is below
    :data:`~implicit_inverse._runtime.TF32_SAFE_TOL` (1e-2), because TF32 kernels hold the
    relative residual near 1e-3: ``tol=1e-4`` could never be reached, and neither could the
    estimators' default ``train_tol=1e-3``. A training solve with ``train_tol >= 1e-2`` keeps
    the caller's settings (TF32 for cuDNN convolutions by default), the faster kernels, since
    its tolerance lies well above that floor. The differentiable step of the gradient strategy
    and the backward pass run with the caller's settings (a gradient needs no more than TF32's
    accuracy), except the adjoint solve of :class:`~implicit_inverse.equilibrium.Exact`, a
    solve like the others. The caller's settings are restored after every solve; on the CPU
    nothing changes.

    Attributes
    ----------
    last_stats : SolverStats or None
        Statistics of the last forward solve.
    """

    def __init__(self, fixed_point_map, solver="anderson", gradient="jfb", max_iter=50,
                 tol=1e-4, warn=True, train_max_iter=None, train_tol=None):
        super().__init__()
        if not isinstance(fixed_point_map, FixedPointMap):
            raise TypeError("fixed_point_map must be a FixedPointMap (e.g. GradientStep), got "
                            f"{type(fixed_point_map).__name__}")
        _check_max_iter(max_iter, "max_iter")
        _check_tol(tol, "tol")
        if train_max_iter is not None:
            _check_max_iter(train_max_iter, "train_max_iter")
        if train_tol is not None:
            _check_tol(train_tol, "train_tol")
        self.map = fixed_point_map
        self.solver = get_solver(solver)
        self.gradient = get_gradient(gradient)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.warn = bool(warn)
        self.train_max_iter = None if train_max_iter is None else int(train_max_iter)
        self.train_tol = None if train_tol is None else float(train_tol)
        self.last_stats = None

    def solve_options(self):
        """``(max_iter, tol)`` of the next solve: the training ones in training mode."""
        if not self.training:
            return self.max_iter, self.tol
        return (self.max_iter if self.train_max_iter is None else self.train_max_iter,
                self.tol if self.train_tol is None else self.train_tol)

    def forward(self, d, x0=None):
        """Solve for the fixed point of each sample of ``d``.

        Parameters
        ----------
        d : torch.Tensor of shape (N, C, H', W')
            Measurements.
        x0 : torch.Tensor of shape (N, C, H, W), optional
            Starting points (a warm start); defaults to ``map.initial_point(d)``.

        Returns
        -------
        torch.Tensor of shape (N, C, H, W)
            The fixed points, with the gradient strategy's graph when grad mode is on and the
            map has trainable parameters.
        """
        with torch.no_grad():
            start = self.map.initial_point(d) if x0 is None else x0
            max_iter, tol = self.solve_options()
            x_star, stats = self.solver.solve(lambda x, index: self.map(x, d[index]), start,
                                              max_iter, tol, warn=self.warn)
        self.last_stats = stats
        needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not needs_graph:
            return x_star
        return self.gradient.attach(self.map, x_star, d, start, stats)


def _check_max_iter(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_tol(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
