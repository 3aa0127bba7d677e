"""Tests for the gradient strategies (JFB, exact implicit, unrolled) in float64.

The exact implicit gradient is checked against central finite differences of the loss through
the whole solve, for a scalar regularizer weight and for a direction in a tiny DnCNN's weights;
unrolled gradients must agree with it once the unrolled iteration has converged; the JFB
direction must be a descent direction on a contractive map; and JFB must keep no graph through
the forward iterations (its graph has the same size for 5 and 40 iterations, while the unrolled
graph grows).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from implicit_inverse.equilibrium import (
    JFB,
    ConvergenceWarning,
    Exact,
    GradientStep,
    GradientStrategy,
    ImplicitLayer,
    Unrolled,
    get_gradient,
)
from implicit_inverse.equilibrium.solvers import Anderson
from implicit_inverse.networks import DnCNN
from implicit_inverse.operators import Blur, gaussian_kernel

DTYPE = torch.float64
SHAPE = (2, 1, 8, 8)


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors


class Scaled(nn.Module):
    """``R(x) = lam * x`` with a float64 parameter ``lam``."""

    def __init__(self, lam):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lam), dtype=DTYPE))

    def forward(self, x):
        return self.lam * x


class AlphaPlus(nn.Module):
    """``R(x) = alpha * x + network(x)`` with a fixed ``alpha``."""

    def __init__(self, alpha, network):
        super().__init__()
        self.alpha = float(alpha)
        self.network = network

    def forward(self, x):
        return self.alpha * x + self.network(x)


def tiny_dncnn(lipschitz=0.2, seed=0):
    """A depth-3, width-4 DnCNN in float64 whose Lipschitz bound is ``lipschitz``."""
    torch.manual_seed(seed)
    network = DnCNN(depth=3, width=4, zero_output=False).double()
    with torch.no_grad():
        network.body[-1].weight.mul_(lipschitz / network.lipschitz_bound())
    return network


def problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = torch.rand(SHAPE, generator=generator, dtype=DTYPE)
    d = operator(clean) + 0.02 * torch.randn(SHAPE, generator=generator, dtype=DTYPE)
    return operator, d, clean


def loss_of(layer, d, clean):
    return 0.5 * ((layer(d) - clean) ** 2).sum()


def make_layer(operator, regularizer, gradient, precondition=False, **kwargs):
    options = {"solver": Anderson(), "max_iter": 500, "tol": 1e-13, **kwargs}
    fixed_point_map = GradientStep(operator, regularizer, eta=1.0, precondition=precondition,
                                   lam=0.5 if precondition else None)
    return ImplicitLayer(fixed_point_map, gradient=gradient, **options)


def parameter_gradients(layer, d, clean):
    layer.zero_grad()
    loss_of(layer, d, clean).backward()
    return torch.cat([p.grad.flatten() for p in layer.parameters() if p.requires_grad])


# -- exact gradient against finite differences -------------------------------------------------


@pytest.mark.parametrize("precondition", [False, True])
def test_exact_gradient_of_scalar_parameter_matches_finite_differences(precondition):
    operator, d, clean = problem()
    regularizer = Scaled(0.5)
    layer = make_layer(operator, regularizer, Exact(tol=1e-12, max_iter=500), precondition)
    loss_of(layer, d, clean).backward()
    gradient = float(regularizer.lam.grad)
    stats = layer.gradient.last_stats
    assert bool(stats.converged.all()) and stats.n_evaluations > 0
    step = 1e-5
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            regularizer.lam.fill_(0.5 + sign * step)
            values.append(float(loss_of(layer, d, clean)))
    finite_difference = (values[0] - values[1]) / (2 * step)
    assert gradient == pytest.approx(finite_difference, rel=1e-6)
    # and the closed form: dL/dlam = -(x* - clean)^T (A^T A + lam I)^{-1} x*
    with torch.no_grad():
        regularizer.lam.fill_(0.5)
        x_star = layer(d)
        closed_form = -float(((x_star - clean) * operator.solve_normal(x_star, 0.5)).sum())
    assert gradient == pytest.approx(closed_form, rel=1e-8)


@pytest.mark.parametrize("precondition", [False, True])
def test_exact_gradient_of_dncnn_weights_matches_finite_differences(precondition):
    operator, d, clean = problem(seed=1)
    network = tiny_dncnn()
    layer = make_layer(operator, AlphaPlus(0.5, network), Exact(tol=1e-12, max_iter=500),
                       precondition)
    weight = network.body[0].weight
    direction = torch.randn(weight.shape, dtype=DTYPE,
                            generator=torch.Generator().manual_seed(7))
    loss_of(layer, d, clean).backward()
    directional = float((weight.grad * direction).sum())
    assert bool(layer.last_stats.converged.all())
    assert bool(layer.gradient.last_stats.converged.all())
    original = weight.detach().clone()
    step = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            weight.copy_(original + sign * step * direction)
            values.append(float(loss_of(layer, d, clean)))
    with torch.no_grad():
        weight.copy_(original)
    finite_difference = (values[0] - values[1]) / (2 * step)
    assert abs(directional) > 1e-6                       # a non-trivial check
    assert directional == pytest.approx(finite_difference, rel=1e-5)


# -- strategies against each other -------------------------------------------------------------


def test_unrolled_agrees_with_exact_once_converged():
    operator, d, clean = problem(seed=2)
    network = tiny_dncnn(seed=1)
    regularizer = AlphaPlus(0.5, network)
    exact = parameter_gradients(
        make_layer(operator, regularizer, Exact(tol=1e-12, max_iter=500)), d, clean)
    # contraction <= 0.5 + 0.2 = 0.7: 150 unrolled steps are converged to ~1e-23
    unrolled = parameter_gradients(make_layer(operator, regularizer, Unrolled(steps=150)), d,
                                   clean)
    torch.testing.assert_close(unrolled, exact, rtol=1e-7, atol=1e-12)
    # a handful of steps is not converged and does not agree
    short = parameter_gradients(make_layer(operator, regularizer, Unrolled(steps=2)), d, clean)
    assert (short - exact).norm() > 1e-3 * exact.norm()


def test_unrolled_default_steps_follow_the_forward_solve():
    operator, d, clean = problem(seed=2)
    regularizer = Scaled(0.5)
    layer = make_layer(operator, regularizer, Unrolled(), solver="forward", tol=1e-13)
    unrolled = parameter_gradients(layer, d, clean)
    assert int(layer.last_stats.iterations.max()) > 30
    exact = parameter_gradients(make_layer(operator, regularizer, Exact(tol=1e-12)), d, clean)
    torch.testing.assert_close(unrolled, exact, rtol=1e-8, atol=0)


def test_jfb_is_a_descent_direction_on_a_contractive_map():
    operator, d, clean = problem(seed=3)
    network = tiny_dncnn(lipschitz=0.1, seed=2)
    regularizer = AlphaPlus(0.5, network)
    exact = parameter_gradients(
        make_layer(operator, regularizer, Exact(tol=1e-12, max_iter=500)), d, clean)
    jfb = parameter_gradients(make_layer(operator, regularizer, JFB()), d, clean)
    assert exact.norm() > 0 and jfb.norm() > 0
    cosine = float(jfb @ exact / (jfb.norm() * exact.norm()))
    assert cosine > 0, cosine
    # and a step along -JFB lowers the loss
    layer = make_layer(operator, regularizer, JFB())
    parameters = [p for p in layer.parameters() if p.requires_grad]
    with torch.no_grad():
        before = float(loss_of(layer, d, clean))
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter -= 1e-4 / jfb.norm() * jfb[offset:offset + size].reshape(parameter.shape)
            offset += size
        after = float(loss_of(layer, d, clean))
    assert after < before


def test_jfb_gradient_is_one_differentiable_step():
    # for R = lam x: JFB gives dL/dlam = -eta <x* - clean, x*>
    operator, d, clean = problem()
    regularizer = Scaled(0.5)
    layer = make_layer(operator, regularizer, "jfb")
    loss_of(layer, d, clean).backward()
    with torch.no_grad():
        x_star = layer(d)
        expected = -float(((layer.map(x_star, d) - clean) * x_star).sum())
    assert float(regularizer.lam.grad) == pytest.approx(expected, rel=1e-10)


def test_jfb_tracking_its_input_gives_the_same_gradient():
    """``JFB(track_input=True)`` only adds the input to the graph: same parameter gradient,
    and ``last_input`` is the leaf the step was evaluated at."""
    operator, d, clean = problem()
    gradients = []
    for track in (False, True):
        regularizer = Scaled(0.5)
        layer = make_layer(operator, regularizer, JFB(track_input=track))
        loss_of(layer, d, clean).backward()
        gradients.append(float(regularizer.lam.grad))
        if track:
            assert layer.gradient.last_input.requires_grad
            assert layer.gradient.last_input.grad is not None
        else:
            assert layer.gradient.last_input is None
    assert gradients[1] == pytest.approx(gradients[0], rel=1e-12)
    assert repr(JFB(track_input=True)) == "JFB(track_input=True)"


def test_exact_reports_an_unconverged_backward_solve():
    operator, d, clean = problem()
    layer = make_layer(operator, Scaled(0.05), Exact(max_iter=2, tol=1e-12))
    loss = loss_of(layer, d, clean)
    with pytest.warns(ConvergenceWarning):
        loss.backward()
    stats = layer.gradient.last_stats
    assert not bool(stats.converged.all())
    assert stats.iterations.tolist() == [2, 2]
    quiet = make_layer(operator, Scaled(0.05), Exact(max_iter=2, tol=1e-12, warn=False))
    loss_of(quiet, d, clean).backward()
    assert not bool(quiet.gradient.last_stats.converged.all())


# -- memory: the graph JFB keeps does not grow with the iterations ------------------------------


def graph_size(tensor):
    """Number of autograd nodes reachable from ``tensor.grad_fn``."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("gradient, grows", [(JFB, False), (Exact, False), (Unrolled, True)])
def test_graph_size_against_iterations(gradient, grows):
    operator, d, _ = problem()
    sizes = {}
    for max_iter in (5, 40):
        # R = 0.01 x: the plain map contracts slowly, so every one of the iterations runs
        layer = make_layer(operator, Scaled(0.01), gradient(), solver="forward",
                           max_iter=max_iter, tol=0.0, warn=False)
        out = layer(d)
        assert layer.last_stats.iterations.tolist() == [max_iter, max_iter]
        sizes[max_iter] = graph_size(out)
    if grows:
        assert sizes[40] > sizes[5] * 4
    else:
        assert sizes[40] == sizes[5]
        # the whole graph is that of a single application of the map
        single = layer.map(d.clone(), d)
        assert sizes[40] == graph_size(single)


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, name", [
    (lambda: Exact(max_iter=0), "max_iter"), (lambda: Exact(max_iter=2.5), "max_iter"),
    (lambda: Exact(tol=-1.0), "tol"), (lambda: Exact(tol=math.nan), "tol"),
    (lambda: Exact(solver="cg"), "solver"), (lambda: Unrolled(steps=0), "steps"),
    (lambda: Unrolled(steps=1.5), "steps"), (lambda: Unrolled(steps=True), "steps"),
    (lambda: get_gradient("ift"), "gradient"), (lambda: get_gradient(3), "gradient"),
])
def test_strategies_reject_bad_arguments(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


def test_get_gradient():
    assert isinstance(get_gradient("jfb"), JFB)
    assert isinstance(get_gradient("exact"), Exact)
    assert isinstance(get_gradient("unrolled"), Unrolled)
    strategy = Exact(max_iter=7)
    assert get_gradient(strategy) is strategy
    assert all(isinstance(get_gradient(name), GradientStrategy)
               for name in ("jfb", "exact", "unrolled"))
    with pytest.raises(TypeError):
        Exact(maxiter=3)
    assert "max_iter=7" in repr(strategy)
    assert np.isfinite(strategy.tol)
