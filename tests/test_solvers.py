"""Tests for ``implicit_inverse.equilibrium.solvers``: forward iteration and Anderson.

Every solver is checked on small affine maps ``f(x) = a * x + b`` (per-sample contraction ``a``,
fixed point ``b / (1 - a)`` known in closed form) in float64: convergence, statistics, the
residual history, per-sample freezing, the divergence and NaN reports, Anderson's fallback to a
plain step, and argument validation.
"""

import math
import warnings

import pytest
import torch

from implicit_inverse.equilibrium import (
    Anderson,
    ConvergenceWarning,
    FixedPointSolver,
    ForwardIteration,
    SolverStats,
    get_solver,
)

DTYPE = torch.float64
SOLVERS = [ForwardIteration, Anderson]


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors


def affine_problem(rates, size=6, seed=0):
    """``f(x) = a_i x + b_i`` for each sample ``i``; returns f, b and the exact fixed points."""
    generator = torch.Generator().manual_seed(seed)
    rates = torch.tensor(rates, dtype=DTYPE).reshape(-1, 1, 1, 1)
    offset = torch.randn(len(rates), 1, size, size, generator=generator, dtype=DTYPE) + 2.0
    calls = []

    def f(x, index):
        calls.append(index.clone())
        return rates[index] * x + offset[index]

    return f, offset, offset / (1 - rates), calls


def slow_linear_problem(size=4, seed=0):
    """``f(x) = M x + b`` with a symmetric ``M`` whose spectrum spans [-0.5, 0.99] (slow for
    plain iteration, a few dozen steps for Anderson)."""
    generator = torch.Generator().manual_seed(seed)
    n = size * size
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=DTYPE))
    matrix = q @ torch.diag(torch.linspace(-0.5, 0.99, n, dtype=DTYPE)) @ q.T
    offset = torch.randn(2, n, generator=generator, dtype=DTYPE) + 1.0

    def f(x, index):
        flat = x.flatten(1) @ matrix.T + offset[index]
        return flat.reshape(x.shape)

    exact = torch.linalg.solve(torch.eye(n, dtype=DTYPE) - matrix, offset.T).T
    return f, exact.reshape(2, 1, size, size)


# -- convergence -----------------------------------------------------------------------------


@pytest.mark.parametrize("solver_class", SOLVERS)
def test_converges_to_fixed_point_with_statistics(solver_class):
    f, _, exact, _ = affine_problem([0.5, 0.8, 0.2])
    x0 = torch.zeros_like(exact) + 1.0
    x, stats = solver_class().solve(f, x0, max_iter=200, tol=1e-10)
    torch.testing.assert_close(x, exact, rtol=1e-8, atol=0)
    assert isinstance(stats, SolverStats)
    assert bool(stats.converged.all()) and not bool(stats.diverged.any())
    assert stats.iterations.shape == (3,) and stats.iterations.dtype == torch.long
    assert int(stats.iterations.max()) <= 200 and int(stats.iterations.min()) >= 1
    assert float(stats.residual.max()) <= 1e-10
    assert stats.tol == 1e-10 and stats.max_iter == 200
    assert stats.n_evaluations == int(stats.iterations.sum())


def test_anderson_needs_fewer_iterations_than_forward():
    f, exact = slow_linear_problem()
    x0 = torch.ones_like(exact)
    x_forward, forward = ForwardIteration().solve(f, x0, max_iter=5000, tol=1e-11)
    x_anderson, anderson = Anderson(memory=5).solve(f, x0, max_iter=5000, tol=1e-11)
    assert bool(forward.converged.all()) and bool(anderson.converged.all())
    torch.testing.assert_close(x_anderson, exact, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(x_forward, x_anderson, rtol=1e-8, atol=1e-9)
    assert int(anderson.iterations.max()) < int(forward.iterations.max()) // 2


def test_solver_never_changes_its_input():
    f, _, exact, _ = affine_problem([0.5, 0.5])
    x0 = torch.ones_like(exact)
    before = x0.clone()
    Anderson().solve(f, x0, max_iter=50, tol=1e-8)
    assert torch.equal(x0, before)


# -- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("solver_class", SOLVERS)
def test_history_shape_and_nan_padding(solver_class):
    f, _, exact, _ = affine_problem([0.1, 0.9])        # the first sample stops much earlier
    _, stats = solver_class().solve(f, torch.ones_like(exact), max_iter=300, tol=1e-8)
    iterations = stats.iterations
    assert stats.history.shape == (2, int(iterations.max()))
    assert int(iterations[0]) < int(iterations[1])
    for row, count in zip(stats.history, iterations, strict=True):
        assert torch.isfinite(row[:count]).all()
        assert torch.isnan(row[count:]).all()
    # the last recorded residual of a converged sample is its reported residual
    assert float(stats.history[0, int(iterations[0]) - 1]) == pytest.approx(
        float(stats.residual[0]), rel=1e-6)


def test_per_sample_freezing_shrinks_the_active_set():
    f, _, exact, calls = affine_problem([0.05, 0.5, 0.9, 0.3])
    _, stats = ForwardIteration().solve(f, torch.ones_like(exact), max_iter=500, tol=1e-9)
    sizes = [len(index) for index in calls]
    assert sizes[0] == 4
    assert sizes == sorted(sizes, reverse=True)          # never re-activated
    assert sizes[-1] == 1 and len(set(sizes)) == 4       # each sample frozen at its own time
    assert len(calls) == int(stats.iterations.max())
    # every sample was evaluated exactly as often as its statistics say
    counts = torch.zeros(4, dtype=torch.long)
    for index in calls:
        counts[index] += 1
    assert torch.equal(counts, stats.iterations)


def test_anderson_per_sample_freezing_gives_same_fixed_points():
    f, _, exact, calls = affine_problem([0.05, 0.5, 0.9, 0.3], seed=1)
    x, stats = Anderson(memory=3).solve(f, torch.ones_like(exact), max_iter=200, tol=1e-11)
    assert bool(stats.converged.all())
    assert min(len(index) for index in calls) < 4
    torch.testing.assert_close(x, exact, rtol=1e-9, atol=0)


def test_summary_values():
    f, _, exact, _ = affine_problem([0.5, 0.9])
    _, stats = ForwardIteration().solve(f, torch.ones_like(exact), max_iter=300, tol=1e-6)
    summary = stats.summary()
    assert set(summary) == {"iterations_mean", "iterations_max", "residual_mean", "residual_max",
                            "converged_share", "diverged"}
    assert summary["iterations_max"] == int(stats.iterations.max())
    assert summary["iterations_mean"] == pytest.approx(float(stats.iterations.float().mean()))
    assert summary["residual_max"] == pytest.approx(float(stats.residual.max()))
    assert summary["residual_max"] <= 1e-6
    assert summary["converged_share"] == 1.0 and summary["diverged"] == 0
    assert all(isinstance(value, (int, float)) for value in summary.values())


def test_concatenate_pads_histories_with_nan():
    f_fast, _, exact_fast, _ = affine_problem([0.1, 0.2])
    f_slow, _, exact_slow, _ = affine_problem([0.8, 0.9, 0.7], seed=3)
    _, fast = ForwardIteration().solve(f_fast, torch.ones_like(exact_fast), 300, 1e-8)
    _, slow = ForwardIteration().solve(f_slow, torch.ones_like(exact_slow), 300, 1e-8)
    joined = SolverStats.concatenate([fast, slow])
    width = max(fast.history.shape[1], slow.history.shape[1])
    assert joined.history.shape == (5, width)
    assert fast.history.shape[1] < width
    assert torch.isnan(joined.history[:2, fast.history.shape[1]:]).all()
    torch.testing.assert_close(joined.history[2:], slow.history, equal_nan=True)
    assert torch.equal(joined.iterations, torch.cat([fast.iterations, slow.iterations]))
    assert torch.equal(joined.converged, torch.cat([fast.converged, slow.converged]))
    assert joined.tol == fast.tol and joined.max_iter == fast.max_iter
    assert joined.n_evaluations == fast.n_evaluations + slow.n_evaluations


# -- failures are reported, never silent -----------------------------------------------------


@pytest.mark.parametrize("solver_class", SOLVERS)
def test_cap_reached_warns_and_reports(solver_class):
    f, _, exact, _ = affine_problem([0.99, 0.99])
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        x, stats = solver_class(**({"memory": 1} if solver_class is Anderson else {}))\
            .solve(f, torch.ones_like(exact), max_iter=3, tol=1e-12)
    assert not bool(stats.converged.any())
    assert torch.equal(stats.iterations, torch.tensor([3, 3]))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("solver_class", SOLVERS)
def test_expanding_map_is_reported_as_diverged(solver_class):
    # sample 0: x <- x + 1 + |x| has no fixed point and its steps grow geometrically;
    # sample 1: a contraction
    f_contracting, _, exact, _ = affine_problem([0.5, 0.5])
    seen = {}

    def f(x, index):
        out = f_contracting(x, index)
        out[index == 0] = (x + 1 + x.abs())[index == 0]
        for row, i in zip(x, index.tolist(), strict=True):
            seen.setdefault(i, []).append(row.clone())
        return out

    with pytest.warns(ConvergenceWarning, match="1 of 2 samples"):
        x, stats = solver_class().solve(f, torch.ones_like(exact), max_iter=60, tol=1e-8)
    assert stats.converged.tolist() == [False, True]
    if solver_class is ForwardIteration:
        assert stats.diverged.tolist() == [True, False]
        assert int(stats.iterations[0]) < 60              # stopped early, not run to the cap
    else:                                                  # diverged or stopped at the cap
        assert bool(stats.diverged[0]) or int(stats.iterations[0]) == 60
    assert torch.isfinite(x).all() and math.isfinite(float(stats.residual[0]))
    # the returned iterate is one the solver evaluated, the one with the reported residual
    matches = [row for row in seen[0] if torch.equal(row, x[0])]
    assert len(matches) == 1
    residual = (f(x[:1], torch.tensor([0])) - x[:1]).norm() / x[:1].norm()
    assert float(residual) == pytest.approx(float(stats.residual[0]), rel=1e-6)


@pytest.mark.parametrize("solver_class", SOLVERS)
def test_nan_is_reported_not_propagated_silently(solver_class):
    f, _, exact, _ = affine_problem([0.5, 0.5])

    def poisoned(x, index):
        out = f(x, index)
        out[index == 0] = math.nan
        return out

    with pytest.warns(ConvergenceWarning):
        x, stats = solver_class().solve(poisoned, torch.ones_like(exact), 100, 1e-8)
    assert stats.diverged.tolist() == [True, False]
    assert stats.converged.tolist() == [False, True]
    assert math.isinf(float(stats.residual[0]))
    assert torch.isfinite(x).all()                          # the finite start is returned
    torch.testing.assert_close(x[1], exact[1], rtol=1e-7, atol=0)


def test_warn_false_is_quiet_but_still_reports():
    f, _, exact, _ = affine_problem([0.99])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, stats = ForwardIteration().solve(f, torch.ones_like(exact), 2, 1e-12, warn=False)
    assert stats.converged.tolist() == [False]


# -- Anderson's safety -----------------------------------------------------------------------


def test_anderson_memory_one_is_plain_iteration():
    f, _, exact, _ = affine_problem([0.7, 0.4])
    x0 = torch.ones_like(exact)
    x_a, stats_a = Anderson(memory=1).solve(f, x0, max_iter=300, tol=1e-10)
    x_f, stats_f = ForwardIteration().solve(f, x0, max_iter=300, tol=1e-10)
    assert torch.equal(stats_a.iterations, stats_f.iterations)
    torch.testing.assert_close(x_a, x_f, rtol=0, atol=0)


def test_anderson_constant_map_stays_finite():
    target = torch.full((2, 1, 4, 4), 3.0, dtype=DTYPE)
    x, stats = Anderson(memory=4).solve(lambda x, index: target[index].clone(),
                                        torch.zeros_like(target) + 1.0, 20, 1e-12)
    assert bool(stats.converged.all())
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, target)


def test_anderson_falls_back_to_plain_step_when_system_is_singular():
    # f(x) = x + 1 from x0 = 0 in exact (integer) arithmetic: every residual is the same vector,
    # so without regularization the Gram matrix is exactly singular; each step must fall back
    # to x <- f(x), giving exactly what forward iteration gives (the regularized system would
    # average the stored f(x) instead)
    def f(x, index):
        return x + 1.0

    x0 = torch.zeros(2, 1, 3, 3, dtype=DTYPE)
    x_a, stats_a = Anderson(memory=3, regularization=0.0).solve(f, x0, 6, 0.0, warn=False)
    x_f, _ = ForwardIteration().solve(f, x0, 6, 0.0, warn=False)
    assert stats_a.iterations.tolist() == [6, 6]
    assert torch.isfinite(x_a).all()
    assert torch.equal(x_a, x_f)
    x_r, _ = Anderson(memory=3).solve(f, x0, 6, 0.0, warn=False)
    assert torch.isfinite(x_r).all() and not torch.equal(x_r, x_f)


def test_anderson_rank_deficient_history_stays_finite():
    # f(x) = x + c: every residual is the same vector, so the Gram matrix has rank one
    c = torch.ones(1, 1, 3, 3, dtype=DTYPE)
    x, stats = Anderson(memory=4).solve(lambda x, index: x + c, torch.zeros_like(c), 10, 1e-12,
                                        warn=False)
    assert torch.isfinite(x).all() and torch.isfinite(stats.residual).all()
    assert not bool(stats.converged.any())


# -- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("solver_class", SOLVERS)
@pytest.mark.parametrize("kwargs, name", [
    ({"max_iter": 0}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
    ({"max_iter": True}, "max_iter"), ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol"),
])
def test_solve_rejects_bad_arguments(solver_class, kwargs, name):
    f, _, exact, _ = affine_problem([0.5])
    arguments = {"max_iter": 10, "tol": 1e-6, **kwargs}
    with pytest.raises(ValueError, match=name):
        solver_class().solve(f, torch.ones_like(exact), **arguments)


@pytest.mark.parametrize("kwargs, name", [
    ({"memory": 0}, "memory"), ({"memory": 1.5}, "memory"), ({"mixing": 0.0}, "mixing"),
    ({"mixing": 1.5}, "mixing"), ({"mixing": math.nan}, "mixing"),
    ({"regularization": -1.0}, "regularization"), ({"divergence_ratio": 0.5}, "divergence_ratio"),
    ({"stall_patience": 0}, "stall_patience"), ({"stall_patience": 2.5}, "stall_patience"),
    ({"stall_patience": True}, "stall_patience"),
])
def test_anderson_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Anderson(**kwargs)


def test_the_stall_safeguard_leaves_a_healthy_solve_alone():
    f, _, exact, _ = affine_problem([0.5, 0.9])
    plain, plain_stats = Anderson(stall_patience=None).solve(f, torch.ones_like(exact),
                                                             max_iter=100, tol=1e-10)
    guarded = Anderson(stall_patience=5)
    x, stats = guarded.solve(f, torch.ones_like(exact), max_iter=100, tol=1e-10)
    torch.testing.assert_close(x, plain)
    assert torch.equal(stats.iterations, plain_stats.iterations)
    assert not guarded.averaged_samples.any()


def test_a_stalled_sample_continues_with_averaged_steps():
    """A map whose step grows 1% per call: near x0 its residual sets no new low, so once
    ``stall_patience`` steps have passed each iterate is ``(x + f(x)) / 2``; without the
    safeguard Anderson keeps extrapolating."""
    direction = torch.zeros(1, 1, 4, 4, dtype=DTYPE)
    direction[..., 0, 0] = 1e-3
    inputs, outputs = [], []

    def growing_step(x, index):
        fx = x + 1.01 ** len(inputs) * direction
        inputs.append(x.clone())
        outputs.append(fx.clone())
        return fx

    x0 = torch.full((1, 1, 4, 4), 1e3, dtype=DTYPE)
    for patience, averaged in ((4, True), (None, False)):
        inputs.clear(), outputs.clear()
        solver = Anderson(stall_patience=patience)
        _, stats = solver.solve(growing_step, x0, max_iter=12, tol=1e-14, warn=False)
        assert int(stats.iterations[0]) == 12
        assert bool(solver.averaged_samples.all()) is averaged
        steps_averaged = [torch.allclose(inputs[k + 1], (inputs[k] + outputs[k]) / 2,
                                         rtol=0, atol=1e-12) for k in range(5, 11)]
        assert all(steps_averaged) is averaged and any(steps_averaged) is averaged


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        Anderson(memmory=3)


def test_get_solver():
    assert isinstance(get_solver("forward"), ForwardIteration)
    assert isinstance(get_solver("anderson"), Anderson)
    solver = Anderson(memory=2)
    assert get_solver(solver) is solver
    assert issubclass(Anderson, FixedPointSolver)
    for bad in ("newton", None, 3):
        with pytest.raises(ValueError, match="solver"):
            get_solver(bad)
