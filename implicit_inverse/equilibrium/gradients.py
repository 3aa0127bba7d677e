"""Gradient strategies: how the loss at the fixed point reaches the parameters.

Every strategy has one method, ``attach(fixed_point_map, x_star, d, x0, forward_stats)``, that
returns a tensor with the value of the fixed point and exactly the autograd graph it needs:

- :class:`JFB` (Jacobian-free backpropagation): one differentiable application of ``T`` at the
  detached fixed point; ``dT/dx`` is treated as zero. Memory and cost do not depend on the
  number of forward iterations.
- :class:`Exact`: the implicit-function-theorem gradient. The backward pass solves
  ``g = J^T g + dL/dx*`` (``J = dT/dx`` at ``x*``) with a fixed-point solver and
  vector-Jacobian products, then backpropagates ``g`` through one application of ``T``.
- :class:`Unrolled`: backpropagation through the iterations of plain fixed-point iteration from
  the starting point (memory grows with the number of iterations).
"""

from __future__ import annotations

import abc
import numbers

import torch

from .contraction import jacobian_penalty
from .solvers import get_solver


class GradientStrategy(abc.ABC):
    """Interface of the gradient strategies.

    Attributes
    ----------
    last_stats : SolverStats or None
        Statistics of the last backward solve (``Exact`` only).
    """

    name = "strategy"

    def __init__(self):
        self.last_stats = None

    @abc.abstractmethod
    def attach(self, fixed_point_map, x_star, d, x0, forward_stats):
        """Return ``x*`` (N, C, H, W) carrying the strategy's autograd graph.

        Parameters
        ----------
        fixed_point_map : FixedPointMap
        x_star : torch.Tensor of shape (N, C, H, W)
            The fixed point found without a graph.
        d : torch.Tensor
            Measurements.
        x0 : torch.Tensor of shape (N, C, H, W)
            Starting point of the forward solve.
        forward_stats : SolverStats
            Statistics of the forward solve.
        """

    def share_penalty_step(self, share):
        """Ask the next :meth:`attach` to keep what :meth:`jacobian_penalty` can reuse.

        Parameters
        ----------
        share : bool

        Returns
        -------
        bool
            Whether the strategy will share (only :class:`JFB` can).
        """
        return False

    def jacobian_penalty(self, fixed_point_map, x_star, d, output=None, generator=None):
        """The Jacobian penalty of the last solve (what a training step adds to its loss).

        Parameters
        ----------
        fixed_point_map : FixedPointMap
        x_star : torch.Tensor of shape (N, C, H, W)
            The fixed points of the last solve (detached).
        d : torch.Tensor
            Their measurements.
        output : torch.Tensor of shape (N, C, H, W) or None
            What :meth:`attach` returned: a strategy that kept its differentiable step reuses
            that evaluation (one forward pass and one graph less).
        generator : torch.Generator or None
            Stream of the Hutchinson probe.

        Returns
        -------
        torch.Tensor
            0-d, differentiable (:func:`~implicit_inverse.equilibrium.jacobian_penalty`).
        """
        return jacobian_penalty(fixed_point_map, x_star, d, generator=generator)

    def __repr__(self):
        return f"{type(self).__name__}()"


class JFB(GradientStrategy):
    """Jacobian-free backpropagation: one differentiable step at the detached fixed point.

    Parameters
    ----------
    track_input : bool, default False
        Evaluate the step at ``x*`` as a new leaf that requires grad, kept as
        :attr:`last_input`:
        the returned tensor's graph then also reaches the input, so that ``dT/dx`` at ``x*``
        (the Jacobian penalty, :func:`~implicit_inverse.equilibrium.jacobian_penalty` with
        ``output=``) comes from this same evaluation instead of a second one. The parameters'
        gradient is unchanged; a ``backward`` that is not restricted to the parameters
        (``inputs=``) also fills ``last_input.grad``.

    Attributes
    ----------
    last_input : torch.Tensor of shape (N, C, H, W) or None
        With ``track_input``: the leaf at which the last step was evaluated; else None.
    """

    name = "jfb"

    def __init__(self, track_input=False):
        super().__init__()
        self.track_input = bool(track_input)
        self.last_input = None

    def __repr__(self):
        return "JFB(track_input=True)" if self.track_input else "JFB()"

    def share_penalty_step(self, share):
        """Track the step's input (``track_input``) when ``share``; returns ``share``."""
        self.track_input = bool(share)
        return self.track_input

    def jacobian_penalty(self, fixed_point_map, x_star, d, output=None, generator=None):
        """The penalty from the kept step (``output=``) when there is one, else at ``x_star``.

        See :meth:`GradientStrategy.jacobian_penalty`; the kept input is released (its graph
        lives on in the returned penalty).
        """
        point, self.last_input = self.last_input, None
        if point is not None and output is not None and output.requires_grad:
            return jacobian_penalty(fixed_point_map, point, d, generator=generator,
                                    output=output)
        return jacobian_penalty(fixed_point_map, x_star, d, generator=generator)

    def attach(self, fixed_point_map, x_star, d, x0, forward_stats):
        z = x_star.detach()
        if self.track_input:
            z = z.requires_grad_(True)
        self.last_input = z if self.track_input else None
        return fixed_point_map(z, d)


class Exact(GradientStrategy):
    """Implicit-function-theorem gradient through an adjoint fixed-point solve.

    Parameters
    ----------
    solver : str or FixedPointSolver, default "anderson"
        Solver of the adjoint equation ``g = J^T g + dL/dx*``.
    max_iter : int, default 50
        Cap on vector-Jacobian products per sample.
    tol : float, default 1e-4
        Relative residual of the adjoint solve.
    warn : bool, default True
        Emit a ``ConvergenceWarning`` when the adjoint solve does not converge.
    """

    name = "exact"

    def __init__(self, solver="anderson", max_iter=50, tol=1e-4, warn=True):
        super().__init__()
        self.solver = get_solver(solver)
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.warn = bool(warn)

    def __repr__(self):
        return f"Exact(max_iter={self.max_iter}, tol={self.tol})"

    def attach(self, fixed_point_map, x_star, d, x0, forward_stats):
        x_star = x_star.detach()
        output = fixed_point_map(x_star, d)
        if not output.requires_grad:
            return output
        z = x_star.clone().requires_grad_()
        with torch.enable_grad():
            mapped = fixed_point_map(z, d.detach())

        def adjoint_solve(upstream):
            def step(g_active, index):
                full = torch.zeros_like(upstream)
                full[index] = g_active
                vjp = torch.autograd.grad(mapped, z, full, retain_graph=True)[0]
                return vjp[index] + upstream[index]

            g, self.last_stats = self.solver.solve(step, upstream, self.max_iter, self.tol,
                                                   warn=self.warn)
            return g

        output.register_hook(adjoint_solve)
        return output


class Unrolled(GradientStrategy):
    """Backpropagation through plain iterations ``x_{k+1} = T(x_k)`` from the starting point.

    Parameters
    ----------
    steps : int or None, default None
        Number of differentiable iterations; None uses as many as the forward solve took on
        its slowest sample. The value returned is the last iterate, not the solver's ``x*``.
    """

    name = "unrolled"

    def __init__(self, steps=None):
        super().__init__()
        if steps is not None and (isinstance(steps, bool)
                                  or not isinstance(steps, numbers.Integral) or steps < 1):
            raise ValueError(f"steps must be an integer >= 1 or None, got {steps!r}")
        self.steps = steps

    def __repr__(self):
        return f"Unrolled(steps={self.steps})"

    def attach(self, fixed_point_map, x_star, d, x0, forward_stats):
        steps = self.steps or max(int(forward_stats.iterations.max()), 1)
        x = x0.detach()
        for _ in range(steps):
            x = fixed_point_map(x, d)
        return x


STRATEGIES = {"jfb": JFB, "exact": Exact, "unrolled": Unrolled}


def get_gradient(gradient):
    """Return a strategy from a name in ``STRATEGIES`` or a :class:`GradientStrategy`."""
    if isinstance(gradient, GradientStrategy):
        return gradient
    if isinstance(gradient, str) and gradient in STRATEGIES:
        return STRATEGIES[gradient]()
    raise ValueError(f"gradient must be one of {sorted(STRATEGIES)} or a GradientStrategy "
                     f"instance, got {gradient!r}")
