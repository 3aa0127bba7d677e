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

    Attributes
    ----------
    last_stats : SolverStats or None
        Statistics of the last forward solve.
    """

    def __init__(self, fixed_point_map, solver="anderson", gradient="jfb", max_iter=50,
                 tol=1e-4, warn=True):
        super().__init__()
        if not isinstance(fixed_point_map, FixedPointMap):
            raise TypeError("fixed_point_map must be a FixedPointMap (e.g. GradientStep), got "
                            f"{type(fixed_point_map).__name__}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        self.map = fixed_point_map
        self.solver = get_solver(solver)
        self.gradient = get_gradient(gradient)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.warn = bool(warn)
        self.last_stats = None

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
            x_star, stats = self.solver.solve(lambda x, index: self.map(x, d[index]), start,
                                              self.max_iter, self.tol, warn=self.warn)
        self.last_stats = stats
        needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not needs_graph:
            return x_star
        return self.gradient.attach(self.map, x_star, d, start, stats)
