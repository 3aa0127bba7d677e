"""Tests for the DE-GRAD map, the implicit layer and the contraction tools.

On a linear regularizer ``R(x) = lam * x`` the fixed point of ``GradientStep`` is the Tikhonov
solution ``(A^T A + lam I)^{-1} A^T d``; it is computed here independently with a dense numpy
solve (the operator's matrix is built by applying it to basis vectors). The contraction bound is
checked as a property on random operators, step sizes and Lipschitz-controlled non-linear
regularizers. Everything runs in float64 on 8x8 to 12x12 images.
"""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from implicit_inverse.equilibrium import (
    ConvergenceWarning,
    FixedPointMap,
    GradientStep,
    ImplicitLayer,
    contraction_bound,
    estimate_lipschitz,
    jacobian_penalty,
    safe_step_size,
    spectral_penalty,
)
from implicit_inverse.equilibrium.solvers import ForwardIteration
from implicit_inverse.networks import DnCNN
from implicit_inverse.operators import Blur, Downsample, Identity, Mask, gaussian_kernel

DTYPE = torch.float64
SHAPE = (2, 1, 8, 8)
PROPERTY = settings(max_examples=15, deadline=None)


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors


class Scaled(nn.Module):
    """``R(x) = lam * x`` with a float64 parameter ``lam``."""

    def __init__(self, lam):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lam), dtype=DTYPE))

    def forward(self, x):
        return self.lam * x


class TanhConv(nn.Module):
    """``N(x) = c * tanh(w * x)`` (circular 3x3 convolution) with ``||w||_1 = 1``: by Young's
    inequality the convolution has operator norm <= 1, tanh is 1-Lipschitz, so Lip(N) <= c."""

    def __init__(self, kernel, c):
        super().__init__()
        kernel = torch.as_tensor(kernel, dtype=DTYPE)
        self.weight = nn.Parameter(kernel / kernel.abs().sum())
        self.c = float(c)

    def forward(self, x):
        padded = F.pad(x, (1, 1, 1, 1), mode="circular")
        return self.c * torch.tanh(F.conv2d(padded, self.weight[None, None]))


class AlphaPlus(nn.Module):
    """``R(x) = alpha * x + network(x)``."""

    def __init__(self, alpha, network):
        super().__init__()
        self.alpha = float(alpha)
        self.network = network

    def forward(self, x):
        return self.alpha * x + self.network(x)


OPERATORS = {
    "blur": lambda: Blur(gaussian_kernel(5, 1.0)),
    "mask": lambda: Mask(fraction=0.6, random_state=3),
    "downsample": lambda: Downsample(2),
}


def dense_matrix(operator, shape=(1, 1, 8, 8)):
    """The matrix of ``operator`` on images of ``shape`` (columns = images of basis vectors)."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=DTYPE).reshape(n, *shape[1:])
    return operator(basis).reshape(n, -1).T.numpy()


def dense_tikhonov(operator, d, lam):
    """``(A^T A + lam I)^{-1} A^T d`` per sample, by a dense numpy solve."""
    matrix = dense_matrix(operator, (1,) + SHAPE[1:])
    normal = matrix.T @ matrix + lam * np.eye(matrix.shape[1])
    rhs = matrix.T @ d.reshape(d.shape[0], -1).numpy().T
    return torch.from_numpy(np.linalg.solve(normal, rhs).T.reshape(SHAPE))


def measurements(operator, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(SHAPE, generator=generator, dtype=DTYPE)
    noise = 0.01 * torch.randn(operator.output_shape(SHAPE), generator=generator, dtype=DTYPE)
    return operator(clean) + noise


# -- the linear case: fixed point = Tikhonov --------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_fixed_point_is_tikhonov_solution_forward_and_anderson(name):
    operator = OPERATORS[name]()
    d = measurements(operator)
    lam = 0.1
    expected = dense_tikhonov(operator, d, lam)
    results = {}
    for solver in ("forward", "anderson"):
        layer = ImplicitLayer(GradientStep(operator, Scaled(lam), eta=1.0), solver=solver,
                              max_iter=2000, tol=1e-12)
        with torch.no_grad():
            x = layer(d)
        stats = layer.last_stats
        assert bool(stats.converged.all()), (solver, stats.summary())
        assert float(stats.residual.max()) <= 1e-12
        assert int(stats.iterations.max()) <= 2000
        torch.testing.assert_close(x, expected, rtol=1e-9, atol=1e-10)
        results[solver] = stats
    assert int(results["anderson"].iterations.max()) < int(results["forward"].iterations.max())


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_preconditioned_map_has_the_same_fixed_point(name):
    operator = OPERATORS[name]()
    d = measurements(operator, seed=1)
    expected = dense_tikhonov(operator, d, 0.1)
    # a preconditioner weight different from R's: still contractive, same fixed point
    fixed_point_map = GradientStep(operator, Scaled(0.1), eta=1.0, precondition=True, lam=0.2)
    layer = ImplicitLayer(fixed_point_map, solver="forward", max_iter=500, tol=1e-12)
    with torch.no_grad():
        x = layer(d)
    assert bool(layer.last_stats.converged.all())
    torch.testing.assert_close(x, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_tikhonov_initializer_starts_at_the_fixed_point(name):
    operator = OPERATORS[name]()
    d = measurements(operator, seed=2)
    lam = 0.3
    expected = dense_tikhonov(operator, d, lam)
    fixed_point_map = GradientStep(operator, Scaled(lam), eta=1.0, precondition=True, lam=lam,
                                   initializer="tikhonov")
    torch.testing.assert_close(fixed_point_map.initial_point(d), expected, rtol=1e-10, atol=1e-12)
    layer = ImplicitLayer(fixed_point_map, solver="forward", max_iter=50, tol=1e-12)
    with torch.no_grad():
        x = layer(d)
    assert layer.last_stats.iterations.tolist() == [1, 1]
    assert bool(layer.last_stats.converged.all())
    torch.testing.assert_close(x, expected, rtol=1e-10, atol=1e-12)
    # from A^T d instead, the exact preconditioned step (R = lam x, eta = 1) lands in one step
    fixed_point_map.initializer = "adjoint"
    with torch.no_grad():
        layer(d)
    assert int(layer.last_stats.iterations.max()) == 2


def test_callable_initializer_and_warm_start():
    operator = OPERATORS["blur"]()
    d = measurements(operator, seed=4)
    expected = dense_tikhonov(operator, d, 0.1)
    calls = []

    def initializer(measured):
        calls.append(measured.shape)
        return torch.full_like(measured, 0.5)

    fixed_point_map = GradientStep(operator, Scaled(0.1), initializer=initializer)
    layer = ImplicitLayer(fixed_point_map, max_iter=500, tol=1e-12)
    with torch.no_grad():
        x = layer(d)
    assert calls == [d.shape]
    assert bool(layer.last_stats.converged.all())
    torch.testing.assert_close(x, expected, rtol=1e-9, atol=1e-10)
    # a start at the solution converges in one evaluation; an explicit x0 wins over the
    # initializer, which is then not called
    exact_start = GradientStep(operator, Scaled(0.1), initializer=lambda m: expected.clone())
    with torch.no_grad():
        ImplicitLayer(exact_start, max_iter=5, tol=1e-10)(d)
        layer(d, x0=expected)
    assert layer.last_stats.iterations.tolist() == [1, 1]
    assert len(calls) == 1


# -- the map ---------------------------------------------------------------------------------


def test_gradient_step_formula_in_float64():
    operator = OPERATORS["blur"]()
    d = measurements(operator)
    x = torch.rand(SHAPE, dtype=DTYPE, generator=torch.Generator().manual_seed(5))
    eta = 0.3                                      # not representable in float32
    fixed_point_map = GradientStep(operator, Scaled(0.1), eta=eta)
    expected = x - eta * (operator.adjoint(operator(x) - d) + 0.1 * x)
    torch.testing.assert_close(fixed_point_map(x, d), expected, rtol=1e-14, atol=1e-15)
    assert isinstance(fixed_point_map, FixedPointMap)


class _UnfusedBlur(Blur):
    """The same blur without a Fourier multiplier: the map applies A, A^T and P one by one."""

    def fourier_multiplier(self, shape, dtype=torch.float32, device="cpu"):
        return None


@pytest.mark.parametrize("precondition", [False, True])
def test_fused_fourier_step_equals_the_operator_by_operator_step(precondition):
    kernel = torch.rand(7, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    weights = torch.rand(3, 3, dtype=DTYPE, generator=torch.Generator().manual_seed(2))
    regularizer = TanhConv(weights, 0.5)
    maps = [GradientStep(blur, regularizer, eta=0.7, precondition=precondition, lam=0.05,
                         learn_step=True) for blur in (Blur(kernel), _UnfusedBlur(kernel))]
    assert maps[0].operator.fourier_multiplier((2, 1, 12, 10), DTYPE) is not None
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 12, 10, dtype=DTYPE, generator=generator, requires_grad=True)
    d = torch.randn(2, 1, 12, 10, dtype=DTYPE, generator=generator)
    probe = torch.randn(2, 1, 12, 10, dtype=DTYPE, generator=generator)
    fused, separate = (m(x, d) for m in maps)
    torch.testing.assert_close(fused, separate, rtol=1e-12, atol=1e-12)
    gradients = [torch.autograd.grad(output, [x, m.step_logit, *regularizer.parameters()],
                                     probe) for output, m in zip((fused, separate), maps)]
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-12, atol=1e-12)


def test_fused_fourier_step_rejects_a_mismatched_measurement():
    fixed_point_map = GradientStep(Blur(gaussian_kernel(3, 1.0)), Scaled(0.1))
    assert Blur(gaussian_kernel(3, 1.0), boundary="zero").fourier_multiplier(SHAPE) is None
    with pytest.raises(ValueError, match="d must have the image's shape"):
        fixed_point_map(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9))


def test_learned_step_starts_at_eta_and_stays_in_range():
    fixed_point_map = GradientStep(Identity(), Scaled(0.1), eta=0.7, learn_step=True)
    assert fixed_point_map.step_logit.requires_grad
    assert float(fixed_point_map.step.detach()) == pytest.approx(0.7)
    with torch.no_grad():
        fixed_point_map.step_logit.fill_(50.0)
    assert 0 < float(fixed_point_map.step.detach()) <= 1.4
    assert not GradientStep(Identity(), Scaled(0.1)).step_logit.requires_grad


# -- the layer -------------------------------------------------------------------------------


def test_layer_output_has_a_graph_only_when_needed():
    operator = OPERATORS["blur"]()
    d = measurements(operator)
    layer = ImplicitLayer(GradientStep(operator, Scaled(0.1)), max_iter=300, tol=1e-8)
    with torch.no_grad():
        assert not layer(d).requires_grad
    assert layer(d).requires_grad
    frozen = ImplicitLayer(GradientStep(operator, Scaled(0.1).requires_grad_(False)),
                           max_iter=300, tol=1e-8)
    assert not frozen(d).requires_grad
    assert bool(frozen.last_stats.converged.all())


def test_training_mode_solves_to_the_training_tolerance():
    operator = OPERATORS["blur"]()
    d = measurements(operator)
    layer = ImplicitLayer(GradientStep(operator, Scaled(0.1)), solver="forward", max_iter=500,
                          tol=1e-7, train_max_iter=400, train_tol=1e-2)
    with torch.no_grad():
        layer.train()
        loose = layer(d)
        loose_stats = layer.last_stats
        layer.eval()
        tight = layer(d)
        tight_stats = layer.last_stats
    assert bool(loose_stats.converged.all()) and bool(tight_stats.converged.all())
    assert float(loose_stats.residual.max()) <= 1e-2 < 10 * float(loose_stats.residual.max())
    assert float(tight_stats.residual.max()) <= 1e-7
    assert int(loose_stats.iterations.max()) < int(tight_stats.iterations.min())
    assert not torch.allclose(loose, tight, atol=1e-6)
    capped = ImplicitLayer(GradientStep(operator, Scaled(0.1)), solver="forward", max_iter=500,
                           tol=1e-7, train_max_iter=3, warn=False).train()
    with torch.no_grad():
        capped(d)
    assert int(capped.last_stats.iterations.max()) == 3


def test_non_contractive_step_warns_and_reports():
    operator = OPERATORS["blur"]()
    d = measurements(operator)
    bound = safe_step_size(operator, SHAPE, alpha=0.1)
    layer = ImplicitLayer(GradientStep(operator, Scaled(0.1), eta=10 * bound), solver="forward",
                          max_iter=100, tol=1e-6)
    with pytest.warns(ConvergenceWarning, match="Reduce eta"):
        with torch.no_grad():
            x = layer(d)
    assert not bool(layer.last_stats.converged.any())
    assert torch.isfinite(x).all()
    # quiet with warn=False, but the statistics still say so
    layer.warn = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            layer(d)
    assert not bool(layer.last_stats.converged.any())


@pytest.mark.parametrize("solver", ["forward", "anderson"])
def test_nan_measurement_is_reported(solver):
    operator = OPERATORS["blur"]()
    d = measurements(operator)
    d[0, 0, 3, 4] = math.nan
    layer = ImplicitLayer(GradientStep(operator, Scaled(0.1)), solver=solver, max_iter=500,
                          tol=1e-10)
    with pytest.warns(ConvergenceWarning, match="1 of 2 samples"):
        with torch.no_grad():
            x = layer(d)
    stats = layer.last_stats
    assert stats.converged.tolist() == [False, True]
    assert bool(stats.diverged[0])
    assert math.isinf(float(stats.residual[0]))
    # the clean sample is unaffected
    expected = dense_tikhonov(operator, torch.nan_to_num(d), 0.1)
    torch.testing.assert_close(x[1], expected[1], rtol=1e-8, atol=1e-9)


# -- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, name", [
    ({"operator": "blur"}, TypeError, "operator"),
    ({"operator": np.eye(3)}, TypeError, "operator"),
    ({"regularizer": lambda x: x}, TypeError, "regularizer"),
    ({"eta": 0.0}, ValueError, "eta"), ({"eta": -1.0}, ValueError, "eta"),
    ({"eta": math.nan}, ValueError, "eta"), ({"eta": math.inf}, ValueError, "eta"),
    ({"eta": True}, ValueError, "eta"), ({"eta": "1"}, ValueError, "eta"),
    ({"precondition": True}, ValueError, "lam"),
    ({"lam": 0.0}, ValueError, "lam"), ({"lam": -0.1}, ValueError, "lam"),
    ({"initializer": "zeros"}, ValueError, "initializer"),
    ({"initializer": "tikhonov"}, ValueError, "lam"),
])
def test_gradient_step_rejects_bad_arguments(kwargs, error, name):
    arguments = {"operator": Identity(), "regularizer": Scaled(0.1), **kwargs}
    with pytest.raises(error, match=name):
        GradientStep(**arguments)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"fixed_point_map": Scaled(0.1)}, TypeError, "fixed_point_map"),
    ({"solver": "newton"}, ValueError, "solver"),
    ({"gradient": "adjoint"}, ValueError, "gradient"),
    ({"max_iter": 0}, ValueError, "max_iter"), ({"max_iter": 1.5}, ValueError, "max_iter"),
    ({"tol": -1.0}, ValueError, "tol"), ({"tol": math.nan}, ValueError, "tol"),
    ({"train_tol": -1.0}, ValueError, "train_tol"),
    ({"train_max_iter": 0}, ValueError, "train_max_iter"),
])
def test_layer_rejects_bad_arguments(kwargs, error, name):
    arguments = {"fixed_point_map": GradientStep(Identity(), Scaled(0.1)), **kwargs}
    with pytest.raises(error, match=name):
        ImplicitLayer(**arguments)
    with pytest.raises(TypeError):
        ImplicitLayer(GradientStep(Identity(), Scaled(0.1)), max_iters=10)


def test_contraction_tools_reject_non_operators():
    with pytest.raises(TypeError, match="operator"):
        contraction_bound(np.eye(4), 1.0, SHAPE)
    with pytest.raises(TypeError, match="operator"):
        safe_step_size("blur", SHAPE)


# -- contraction -----------------------------------------------------------------------------


def test_bounds_on_the_identity():
    # ||I|| = 1; the bound takes the spectrum of A^T A as [0, ||A||^2], so s = 0 counts too
    assert safe_step_size(Identity(), SHAPE, alpha=0.5) == pytest.approx(2 / 1.5)
    assert safe_step_size(Identity(), SHAPE) == pytest.approx(2.0)
    assert contraction_bound(Identity(), 0.5, SHAPE, alpha=1.0) == pytest.approx(0.5)
    assert contraction_bound(Identity(), 0.5, SHAPE, alpha=1.0, network_lipschitz=0.2) == \
        pytest.approx(0.6)
    # preconditioned, R = lam x: (s + lam) / (s + lam) = 1, the step eta = 1 is exact
    assert contraction_bound(Identity(), 1.0, SHAPE, alpha=2.0, precondition_lam=2.0) == \
        pytest.approx(0.0, abs=1e-12)
    assert contraction_bound(Identity(), 1.0, SHAPE, alpha=2.0, precondition_lam=2.0,
                             network_lipschitz=1.0) == pytest.approx(0.5)
    assert safe_step_size(Identity(), SHAPE, alpha=2.0, precondition_lam=2.0) == \
        pytest.approx(2.0)


def test_estimate_lipschitz_on_a_linear_map_matches_dense_norm():
    operator = OPERATORS["blur"]()
    fixed_point_map = GradientStep(operator, Scaled(0.2), eta=0.9)
    matrix = dense_matrix(operator)
    jacobian = np.eye(64) - 0.9 * (matrix.T @ matrix + 0.2 * np.eye(64))
    exact = np.linalg.norm(jacobian, 2)
    x = torch.rand(SHAPE, dtype=DTYPE)
    estimate = estimate_lipschitz(fixed_point_map, x, measurements(operator), n_iter=50)
    assert estimate.shape == (2,)
    assert (estimate <= exact + 1e-12).all()
    assert (estimate >= 0.99 * exact).all()
    assert exact <= contraction_bound(operator, 0.9, SHAPE, alpha=0.2) + 1e-9


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("precondition", [False, True])
def test_jacobian_penalty_of_a_linear_map_matches_the_dense_jacobian(name, precondition):
    """For a linear map the estimate is ``eps^T J J^T eps / eps^T eps`` exactly, for the probe
    ``eps`` drawn from the generator; its mean over many probes is ``||J||_F^2 / n``."""
    operator = OPERATORS[name]()
    shape = (1,) + SHAPE[1:]
    fixed_point_map = GradientStep(operator, Scaled(0.3), eta=0.7, precondition=precondition,
                                   lam=0.3 if precondition else None)
    n = math.prod(shape)
    basis = torch.eye(n, dtype=DTYPE).reshape(n, *shape[1:])
    d = measurements(operator)[:1]
    with torch.no_grad():
        columns = fixed_point_map(basis, d.expand(n, *d.shape[1:])) - fixed_point_map(
            torch.zeros_like(basis), d.expand(n, *d.shape[1:]))
    jacobian = columns.reshape(n, n).T.numpy()  # column j = T(e_j) - T(0)
    x = torch.rand(shape, dtype=DTYPE)
    value = jacobian_penalty(fixed_point_map, x, d, torch.Generator().manual_seed(5))
    probe = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    probe = probe.flatten().numpy()
    expected = np.sum((jacobian.T @ probe) ** 2) / np.sum(probe ** 2)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-10)
    mean = jacobian_penalty(fixed_point_map, x.expand(400, *shape[1:]),
                            d.expand(400, *d.shape[1:]), torch.Generator().manual_seed(6))
    assert float(mean.detach()) == pytest.approx(np.sum(jacobian ** 2) / n, rel=0.1)


def test_jacobian_penalty_gradient_matches_finite_differences():
    """The penalty is differentiable in the regularizer's parameters (double backpropagation)."""
    torch.manual_seed(0)
    operator = OPERATORS["blur"]()
    network = TanhConv(torch.randn(3, 3, dtype=DTYPE), c=0.5)
    fixed_point_map = GradientStep(operator, AlphaPlus(0.2, network), eta=0.8,
                                   precondition=True, lam=0.2)
    x, d = torch.rand(SHAPE, dtype=DTYPE), measurements(operator)

    def value():
        return jacobian_penalty(fixed_point_map, x, d, torch.Generator().manual_seed(1))

    (gradient,) = torch.autograd.grad(value(), network.weight)
    step = 1e-6
    for index in [(0, 0), (1, 1), (2, 0)]:
        with torch.no_grad():
            network.weight[index] += step
            above = float(value().detach())
            network.weight[index] -= 2 * step
            below = float(value().detach())
            network.weight[index] += step
        assert float(gradient[index]) == pytest.approx((above - below) / (2 * step), rel=1e-5,
                                                       abs=1e-9)


def test_jacobian_penalty_reuses_a_given_evaluation():
    """``output=`` (JFB's step with ``track_input``) gives the value and parameter gradient of
    the penalty that evaluates the map itself, with one regularizer call less."""
    from implicit_inverse.equilibrium.gradients import JFB
    torch.manual_seed(0)
    operator = OPERATORS["blur"]()
    network = TanhConv(torch.randn(3, 3, dtype=DTYPE), c=0.5)
    calls = []
    network.register_forward_hook(lambda *args: calls.append(1))
    fixed_point_map = GradientStep(operator, AlphaPlus(0.2, network), eta=0.8,
                                   precondition=True, lam=0.2)
    x, d = torch.rand(SHAPE, dtype=DTYPE), measurements(operator)

    def penalty_gradient(shared):
        strategy = JFB(track_input=shared)
        output = strategy.attach(fixed_point_map, x, d, x, None)
        value = jacobian_penalty(fixed_point_map, strategy.last_input if shared else x, d,
                                 torch.Generator().manual_seed(1),
                                 output=output if shared else None)
        (gradient,) = torch.autograd.grad(value + output.sum(), network.weight)
        return float(value.detach()), gradient

    calls.clear()
    value, gradient = penalty_gradient(False)
    separate_calls = len(calls)
    calls.clear()
    shared_value, shared_gradient = penalty_gradient(True)
    assert len(calls) == separate_calls - 1
    assert shared_value == pytest.approx(value, rel=1e-12)
    torch.testing.assert_close(shared_gradient, gradient, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="output="):
        jacobian_penalty(fixed_point_map, x, d, output=fixed_point_map(x, d))


def test_jacobian_penalty_leaves_its_inputs_without_a_graph():
    operator = OPERATORS["blur"]()
    fixed_point_map = GradientStep(operator, Scaled(0.3))
    x, d = torch.rand(SHAPE, dtype=DTYPE), measurements(operator)
    value = jacobian_penalty(fixed_point_map, x, d)
    assert value.shape == () and value.requires_grad
    assert not x.requires_grad and x.grad_fn is None
    with torch.no_grad():  # computed under no_grad all the same (it builds its own graph)
        assert float(jacobian_penalty(fixed_point_map, x, d).detach()) > 0


@st.composite
def contractive_maps(draw, network="tanh"):
    """A random operator, step inside ``safe_step_size`` and ``R = alpha x + N(x)`` with a
    Lipschitz bound ``L_N`` small enough that ``contraction_bound`` is below 1."""
    size = draw(st.integers(8, 12))
    seed = draw(st.integers(0, 2**16))
    if draw(st.booleans()):
        operator = Blur(gaussian_kernel(draw(st.sampled_from([3, 5])),
                                        draw(st.floats(0.5, 2.0))))
    else:
        operator = Mask(fraction=draw(st.floats(0.3, 1.0)), random_state=seed)
    shape = (2, 1, size, size)
    alpha = draw(st.floats(0.2, 1.0))
    lam = draw(st.floats(0.05, 1.0)) if draw(st.booleans()) else None
    eta = draw(st.floats(0.05, 0.95)) * safe_step_size(operator, shape, alpha, lam)
    linear = contraction_bound(operator, eta, shape, alpha=alpha, precondition_lam=lam)
    gain = 1.0 if lam is None else lam
    lipschitz = draw(st.floats(0.0, 0.5)) * (1 - linear) * gain / eta
    torch.manual_seed(seed)
    if network == "tanh":
        regularizer = AlphaPlus(alpha, TanhConv(torch.randn(3, 3, dtype=DTYPE), lipschitz))
    else:
        dncnn = DnCNN(depth=3, width=4, zero_output=False).double()
        with torch.no_grad():
            dncnn.body[-1].weight.mul_(lipschitz / dncnn.lipschitz_bound())
        lipschitz = dncnn.lipschitz_bound()
        regularizer = AlphaPlus(alpha, dncnn)
    bound = contraction_bound(operator, eta, shape, alpha=alpha, network_lipschitz=lipschitz,
                              precondition_lam=lam)
    fixed_point_map = GradientStep(operator, regularizer, eta=eta, precondition=lam is not None,
                                   lam=lam)
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=generator, dtype=DTYPE)
    return fixed_point_map, operator(clean), bound, seed


def check_contraction(case):
    fixed_point_map, d, bound, seed = case
    assert bound < 1
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(d.shape, generator=generator, dtype=DTYPE)
    y = x + torch.randn(d.shape, generator=generator, dtype=DTYPE) * 0.5
    with torch.no_grad():
        gap = (fixed_point_map(x, d) - fixed_point_map(y, d)).flatten(1).norm(dim=1)
    # ``||A||`` inside the bound comes from ``operator.norm()``: power iteration stopped at a
    # relative change of 1e-6, a lower estimate that can be ~3e-6 short (a step at 0.75 of
    # ``safe_step_size`` then contracts by 0.5000022 where the bound says 0.5): slack 1e-5
    assert (gap <= bound * (x - y).flatten(1).norm(dim=1) * (1 + 1e-5)).all()
    assert (estimate_lipschitz(fixed_point_map, x, d) <= bound + 1e-5).all()
    # Banach: plain iteration converges; the cap allows the bound's rate to gain 1e-9
    max_iter = int(math.ceil(math.log(1e-9) / math.log(max(bound, 1e-3)))) + 20
    with torch.no_grad():
        _, stats = ForwardIteration().solve(
            lambda z, index: fixed_point_map(z, d[index]), fixed_point_map.initial_point(d),
            max_iter=max_iter, tol=1e-7)
    assert bool(stats.converged.all()), (bound, max_iter, stats.summary())


@PROPERTY
@given(contractive_maps("tanh"))
def test_contraction_bound_holds_for_tanh_conv_regularizer(case):
    check_contraction(case)


@PROPERTY
@given(contractive_maps("dncnn"))
def test_contraction_bound_holds_for_dncnn_regularizer(case):
    check_contraction(case)


@pytest.mark.parametrize("eta", [0.9, 1.3])
def test_spectral_penalty_is_the_hinge_on_the_dense_spectral_norm(eta):
    """``relu(||J||_2 - margin)^2`` of the linear map's dense Jacobian, for both samples, from
    below (power iteration gives a lower bound of the norm); a margin above the norm costs
    nothing."""
    operator = OPERATORS["blur"]()
    fixed_point_map = GradientStep(operator, Scaled(-0.5), eta=eta)
    matrix = dense_matrix(operator)
    exact = np.linalg.norm(np.eye(64) - eta * (matrix.T @ matrix - 0.5 * np.eye(64)), 2)
    x, d = torch.rand(SHAPE, dtype=DTYPE), measurements(operator)
    value = spectral_penalty(fixed_point_map, x, d, margin=0.9, n_iter=60,
                             generator=torch.Generator().manual_seed(0))
    assert (0.995 * exact - 0.9) ** 2 <= float(value) <= (exact - 0.9) ** 2 + 1e-12
    assert float(spectral_penalty(fixed_point_map, x, d, margin=exact + 0.01,
                                  n_iter=60)) == 0.0
    with pytest.raises(ValueError, match="n_iter"):
        spectral_penalty(fixed_point_map, x, d, n_iter=0)


def test_spectral_penalty_gradient_reaches_the_regularizer():
    """Differentiable in the parameters (double backpropagation), pointing towards a smaller
    norm: a gradient step on the weights lowers the penalty."""
    torch.manual_seed(0)
    operator = OPERATORS["blur"]()
    network = TanhConv(torch.randn(3, 3, dtype=DTYPE), c=0.5)
    fixed_point_map = GradientStep(operator, AlphaPlus(-0.6, network), eta=1.0)
    x, d = torch.rand(SHAPE, dtype=DTYPE), measurements(operator)

    def value():
        return spectral_penalty(fixed_point_map, x, d, margin=0.5, n_iter=30,
                                generator=torch.Generator().manual_seed(1))

    before = value()
    (gradient,) = torch.autograd.grad(before, network.weight)
    assert float(before) > 0 and gradient.abs().sum() > 0
    with torch.no_grad():
        network.weight -= 1e-2 * gradient / gradient.norm()
    assert float(value()) < float(before)
