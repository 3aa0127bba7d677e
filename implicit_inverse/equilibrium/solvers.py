"""Fixed-point solvers that never iterate silently to their cap.

A solver finds ``x = f(x)`` for a batch of independent samples. ``f`` is called as
``f(x_active, index)`` on the samples that have not converged yet (``index`` holds their
positions in the batch), so converged samples are frozen and cost nothing. Solvers run under
``torch.no_grad()``, keep the lowest-residual iterate of each sample, stop samples whose residual
becomes non-finite or grows far above its best value (divergence), and return
:class:`SolverStats`. A :class:`ConvergenceWarning` is emitted whenever a sample ends unconverged.

On a GPU, a solve to a tolerance below :data:`~implicit_inverse._runtime.TF32_SAFE_TOL` evaluates
its map with TF32 off (:func:`~implicit_inverse._runtime.exact_float32`), so that it can reach
``tol`` whatever the caller's TF32 settings; the bookkeeping of an iteration stays on the device
and reads one small tensor back (which samples go on).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
import warnings

import torch

from .._runtime import solve_precision


class ConvergenceWarning(UserWarning):
    """A fixed-point solve ended above its tolerance (cap reached or divergence)."""


@dataclasses.dataclass
class SolverStats:
    """Per-sample statistics of one fixed-point solve (tensors on the CPU).

    Attributes
    ----------
    iterations : torch.Tensor of shape (B,), int64
        Evaluations of the map for each sample.
    residual : torch.Tensor of shape (B,)
        Relative residual ``||f(x) - x|| / ||x||`` of the returned iterate.
    converged : torch.Tensor of shape (B,), bool
        Residual at or below ``tol``.
    diverged : torch.Tensor of shape (B,), bool
        Stopped early because the residual became non-finite or the step ``||f(x) - x||``
        grew above ``divergence_ratio`` times its smallest value.
    history : torch.Tensor of shape (B, K)
        Residual at every iteration, NaN after a sample stopped (K = iterations of the longest).
    tol : float
    max_iter : int
    """

    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    diverged: torch.Tensor
    history: torch.Tensor
    tol: float
    max_iter: int

    @property
    def n_evaluations(self):
        """Total number of per-sample map evaluations (the cost of the solve)."""
        return int(self.iterations.sum())

    def summary(self):
        """Batch summary: mean and max iterations, mean and max residual, share converged."""
        return {
            "iterations_mean": float(self.iterations.float().mean()),
            "iterations_max": int(self.iterations.max()),
            "residual_mean": float(self.residual.mean()),
            "residual_max": float(self.residual.max()),
            "converged_share": float(self.converged.float().mean()),
            "diverged": int(self.diverged.sum()),
        }

    def __repr__(self):
        """One line from :meth:`summary` (the residual histories are left out)."""
        if self.iterations.numel() == 0:
            return f"SolverStats(0 samples, tol={self.tol:g}, max_iter={self.max_iter})"
        summary = self.summary()
        return (f"SolverStats({self.iterations.numel()} samples, iterations mean "
                f"{summary['iterations_mean']:.1f} max {summary['iterations_max']} of "
                f"{self.max_iter}, {100 * summary['converged_share']:.0f}% converged "
                f"(tol={self.tol:g}), max residual {summary['residual_max']:.3g})")

    @classmethod
    def concatenate(cls, parts):
        """Join the stats of consecutive chunks of one batch (histories padded with NaN)."""
        width = max(part.history.shape[1] for part in parts)
        histories = [torch.nn.functional.pad(part.history, (0, width - part.history.shape[1]),
                                             value=math.nan) for part in parts]
        return cls(
            iterations=torch.cat([part.iterations for part in parts]),
            residual=torch.cat([part.residual for part in parts]),
            converged=torch.cat([part.converged for part in parts]),
            diverged=torch.cat([part.diverged for part in parts]),
            history=torch.cat(histories),
            tol=parts[0].tol,
            max_iter=parts[0].max_iter,
        )


class FixedPointSolver(abc.ABC):
    """Shared loop of the solvers; subclasses only choose the next iterate.

    Parameters
    ----------
    divergence_ratio : float, default 100.0
        A sample is declared diverged when its step ``||f(x) - x||`` exceeds this multiple of
        its smallest one.
    """

    def __init__(self, divergence_ratio=100.0):
        _check_real(divergence_ratio, "divergence_ratio", low=1.0)
        self.divergence_ratio = float(divergence_ratio)

    @abc.abstractmethod
    def _start(self, x0):
        """Reset the solver's memory for a batch shaped like ``x0``."""

    @abc.abstractmethod
    def _next(self, x, fx, index, iteration, residual):
        """Next iterates of the still-active samples ``index`` from ``x``, ``f(x)`` and their
        relative residuals ``||f(x) - x|| / ||x||`` (shape (B',), computed by the loop)."""

    def _release(self):
        """Drop the memory of the last solve (nothing by default)."""

    def solve(self, f, x0, max_iter=50, tol=1e-4, warn=True):
        """Find fixed points ``x = f(x)`` for every sample of ``x0``.

        Parameters
        ----------
        f : callable ``(x_active, index) -> f(x_active)``
            ``x_active`` of shape (B', ...) holds the samples at positions ``index`` (int64
            tensor of shape (B',)) of the batch. Returns a new tensor shaped like ``x_active``
            (not a buffer it writes again later: it may become the next ``x_active``).
        x0 : torch.Tensor of shape (B, ...)
            Starting points.
        max_iter : int, default 50
            Cap on the evaluations of ``f`` per sample.
        tol : float, default 1e-4
            Relative residual ``||f(x) - x|| / ||x||`` at which a sample has converged.
        warn : bool, default True
            Emit a :class:`ConvergenceWarning` when a sample ends unconverged.

        Returns
        -------
        x_star : torch.Tensor of shape (B, ...)
            Lowest-residual iterate of each sample (the starting point if the residual never
            went down: always finite when ``x0`` is).
        stats : SolverStats

        Notes
        -----
        ``f`` runs under :func:`~implicit_inverse._runtime.solve_precision`: on CUDA, with
        ``tol`` below :data:`~implicit_inverse._runtime.TF32_SAFE_TOL` (1e-2), TF32 is off for
        convolutions and matrix products during the solve (TF32 holds the residual near 1e-3)
        and the caller's settings are restored afterwards; looser solves, such as training
        solves with ``train_tol >= 1e-2``, keep the caller's (faster) settings. Elsewhere the
        context costs nothing. Each iteration synchronises with the device once, to learn
        which samples go on (``f`` is only ever called on those).
        """
        _check_real(tol, "tol", low=0.0)
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        with torch.no_grad(), solve_precision(float(tol), x0.device):
            return self._solve(f, x0, int(max_iter), float(tol), warn)

    def _solve(self, f, x0, max_iter, tol, warn):
        batch = x0.shape[0]
        device = x0.device
        best_x = x0.clone()
        best_residual = torch.full((batch,), math.inf, device=device)
        best_step = torch.full((batch,), math.inf, dtype=x0.dtype, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        converged = torch.zeros(batch, dtype=torch.bool, device=device)
        diverged = torch.zeros_like(converged)
        history = []
        # the active samples: their positions in the batch and their current iterates
        index = torch.arange(batch, device=device)
        x = x0.clone()
        self._start(x0)
        for iteration in range(max_iter if batch else 0):
            fx = f(x, index)
            step, residual = _residuals(fx, x)
            iterations[index] += 1
            row = torch.full((batch,), math.nan, device=device)
            row[index] = residual.float()
            history.append(row)

            # per-sample updates with masks: no data-dependent shapes, no host synchronisation
            improved = residual < best_residual[index]
            best_residual[index] = torch.where(improved, residual.float(), best_residual[index])
            best_x[index] = torch.where(improved.reshape(-1, *([1] * (x.ndim - 1))), x,
                                        best_x[index])
            smallest_step = torch.minimum(best_step[index], step)
            best_step[index] = smallest_step
            is_converged = residual <= tol
            is_diverged = ~torch.isfinite(residual) | (
                step > self.divergence_ratio * smallest_step)
            is_diverged &= ~is_converged
            converged[index] = is_converged
            diverged[index] = is_diverged
            if iteration == max_iter - 1:
                break
            # the iteration's one synchronisation: the positions of the samples that go on
            going = torch.nonzero(~(is_converged | is_diverged)).squeeze(1)
            if going.numel() == 0:
                break
            if going.numel() < index.numel():
                index, x, fx, residual = index[going], x[going], fx[going], residual[going]
            x = self._next(x, fx, index, iteration, residual)
        self._release()
        final = torch.where(torch.isfinite(best_residual), best_residual,
                            torch.full_like(best_residual, math.inf))
        stats = SolverStats(
            iterations=iterations.cpu(), residual=final.cpu(), converged=converged.cpu(),
            diverged=diverged.cpu(),
            history=torch.stack(history, dim=1).cpu() if history
            else torch.empty(batch, 0),
            tol=tol, max_iter=max_iter)
        if warn:
            warn_if_unconverged(stats, stacklevel=4)
        return best_x, stats


def warn_if_unconverged(stats, stacklevel=2):
    """Emit a :class:`ConvergenceWarning` describing unconverged samples, if any."""
    n_bad = int((~stats.converged).sum())
    if n_bad == 0:
        return
    n_diverged = int(stats.diverged.sum())
    worst = float(stats.residual.max())
    warnings.warn(
        f"fixed-point solve: {n_bad} of {len(stats.converged)} samples did not reach tol="
        f"{stats.tol:g} within max_iter={stats.max_iter} ({n_diverged} diverged; worst relative "
        f"residual {worst:.3g}); their lowest-residual iterate is returned. Reduce eta or raise "
        "max_iter.", ConvergenceWarning, stacklevel=stacklevel)


class ForwardIteration(FixedPointSolver):
    """Plain fixed-point iteration ``x_{k+1} = f(x_k)``."""

    def _start(self, x0):
        pass

    def _next(self, x, fx, index, iteration, residual):
        return fx


class Anderson(FixedPointSolver):
    """Anderson acceleration (type II) with a bounded memory.

    Parameters
    ----------
    memory : int, default 5
        Number of past iterates ``m`` combined; the solver holds ``2 m`` tensors per sample.
    mixing : float, default 1.0
        Weight ``beta`` in (0, 1] of the mapped iterates in the combination.
    regularization : float, default 1e-8
        Tikhonov weight of the small least-squares system, relative to its scale.
    divergence_ratio : float, default 100.0
        See :class:`FixedPointSolver`.
    stall_patience : int or None, default 10
        Safeguard: a sample whose relative residual has not reached a new low for this many
        iterations leaves the accelerated combination for the averaged step
        ``x <- (x + f(x)) / 2`` (Krasnosel'skii-Mann) for the rest of its solve. Anderson's
        extrapolation can stall on a map at the edge of contraction where the averaged
        iteration still converges (measured in ``docs/priors.rst``: it changed no solve that
        converged and finished the one that stalled). None: never.

    Notes
    -----
    When the least-squares system is singular or yields non-finite weights for a sample, that
    sample takes a plain step ``f(x)`` instead.
    """

    # what a solver unpickled from a file older than the safeguard runs with: no safeguard
    stall_patience = None
    _averaged_last = None

    def __init__(self, memory=5, mixing=1.0, regularization=1e-8, divergence_ratio=100.0,
                 stall_patience=10):
        super().__init__(divergence_ratio)
        if isinstance(memory, bool) or not isinstance(memory, numbers.Integral) or memory < 1:
            raise ValueError(f"memory must be an integer >= 1, got {memory!r}")
        _check_real(mixing, "mixing", low=0.0, open_low=True, high=1.0)
        _check_real(regularization, "regularization", low=0.0)
        if stall_patience is not None and (
                isinstance(stall_patience, bool)
                or not isinstance(stall_patience, numbers.Integral) or stall_patience < 1):
            raise ValueError(f"stall_patience must be an integer >= 1 or None, got "
                             f"{stall_patience!r}")
        self.memory = int(memory)
        self.mixing = float(mixing)
        self.regularization = float(regularization)
        self.stall_patience = None if stall_patience is None else int(stall_patience)

    def _start(self, x0):
        shape = (x0.shape[0], self.memory, x0[0].numel())
        self._xs = torch.zeros(shape, dtype=x0.dtype, device=x0.device)
        self._fs = torch.zeros_like(self._xs)
        batch = (x0.shape[0],)
        self._lowest = torch.full(batch, math.inf, device=x0.device)
        self._since_lowest = torch.zeros(batch, dtype=torch.long, device=x0.device)
        self._averaging = torch.zeros(batch, dtype=torch.bool, device=x0.device)

    def _release(self):
        self._averaged_last = self._averaging.cpu()
        self._xs = self._fs = None
        self._lowest = self._since_lowest = self._averaging = None

    @property
    def averaged_samples(self):
        """Whether each sample of the last solve ended on averaged steps (the safeguard), a
        bool tensor of shape (B,); None before a solve."""
        return self._averaged_last

    def _next(self, x, fx, index, iteration, residual):
        accelerated = self._accelerated(x, fx, index, iteration)
        if self.stall_patience is None:
            return accelerated
        lower = residual.float() < self._lowest[index]
        self._lowest[index] = torch.where(lower, residual.float(), self._lowest[index])
        self._since_lowest[index] = torch.where(lower, 0, self._since_lowest[index] + 1)
        self._averaging[index] |= self._since_lowest[index] >= self.stall_patience
        averaging = self._averaging[index].reshape(-1, *([1] * (fx.ndim - 1)))
        return torch.where(averaging, (x + fx) / 2, accelerated)

    def _accelerated(self, x, fx, index, iteration):
        """Anderson's combination of the stored iterates (a plain step while one is stored)."""
        slot = iteration % self.memory
        self._xs[index, slot] = x.flatten(1)
        self._fs[index, slot] = fx.flatten(1)
        stored = min(iteration + 1, self.memory)
        if stored < 2:
            return fx
        xs, fs = self._xs[index, :stored], self._fs[index, :stored]
        gs = fs - xs                                           # (b, m, n)
        gram = gs @ gs.transpose(1, 2)                         # (b, m, m)
        scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(torch.finfo(gram.dtype).tiny)
        gram = gram + (self.regularization * scale)[:, None, None] * torch.eye(
            stored, dtype=gram.dtype, device=gram.device)
        ones = torch.ones(len(index), stored, 1, dtype=gram.dtype, device=gram.device)
        # minimise ||sum_i a_i g_i|| subject to sum_i a_i = 1
        solution, info = torch.linalg.solve_ex(gram, ones)
        weights = solution.squeeze(2)
        weights = weights / weights.sum(1, keepdim=True)
        ok = (info == 0) & torch.isfinite(weights).all(1)
        weights = torch.where(ok[:, None], weights, torch.zeros_like(weights))
        mixed = self.mixing * (weights[:, None] @ fs) + (1 - self.mixing) * (weights[:, None] @ xs)
        mixed = mixed.reshape(fx.shape)
        return torch.where(ok.reshape(-1, *([1] * (fx.ndim - 1))), mixed, fx)


SOLVERS = {"forward": ForwardIteration, "anderson": Anderson}


def get_solver(solver):
    """Return a solver instance from a name in ``SOLVERS`` or a :class:`FixedPointSolver`."""
    if isinstance(solver, FixedPointSolver):
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return SOLVERS[solver]()
    raise ValueError(
        f"solver must be one of {sorted(SOLVERS)} or a FixedPointSolver instance, got {solver!r}")


def _residuals(fx, x):
    """Absolute ``||f(x) - x||`` and relative ``||f(x) - x|| / ||x||`` per sample."""
    difference = (fx - x).flatten(1).norm(dim=1)
    size = x.flatten(1).norm(dim=1)
    return difference, difference / (size + torch.finfo(x.dtype).tiny)


def _check_real(value, name, low, high=None, open_low=False):
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if open_low else '>='} {low}"
        bound += f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
