"""The implicit layer: fixed-point maps, solvers, gradient strategies (no skorch, no sklearn)."""

from .contraction import (contraction_bound, estimate_lipschitz, jacobian_penalty,
                          safe_step_size, spectral_penalty)
from .gradients import JFB, Exact, GradientStrategy, Unrolled, get_gradient
from .layer import ImplicitLayer
from .maps import FixedPointMap, GradientStep, ProximalStep
from .solvers import (Anderson, ConvergenceWarning, FixedPointSolver, ForwardIteration,
                      SolverStats, get_solver)

__all__ = ["GradientStep", "ProximalStep", "FixedPointMap", "ImplicitLayer", "Anderson",
           "ForwardIteration", "FixedPointSolver", "SolverStats", "ConvergenceWarning",
           "get_solver", "JFB", "Exact", "Unrolled", "GradientStrategy", "get_gradient",
           "estimate_lipschitz", "contraction_bound", "jacobian_penalty", "safe_step_size",
           "spectral_penalty"]
