"""Tests for the regularizer networks: ``DnCNN`` and ``TikhonovPlusNetwork``."""

import math

import pytest
import torch
from torch import nn

from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

DTYPE = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors


def empirical_ratios(network, shape, n_pairs=8, seed=0):
    """``||N(x) - N(y)|| / ||x - y||`` for random pairs, near and far."""
    generator = torch.Generator().manual_seed(seed)
    ratios = []
    for scale in (1.0, 1e-3):
        x = torch.randn((n_pairs,) + shape, generator=generator, dtype=DTYPE)
        y = x + scale * torch.randn(x.shape, generator=generator, dtype=DTYPE)
        with torch.no_grad():
            gap = (network(x) - network(y)).flatten(1).norm(dim=1)
        ratios.append(gap / (x - y).flatten(1).norm(dim=1))
    return torch.cat(ratios)


def largest_gain(network, shape, n_iter=30, seed=0):
    """A sharper empirical Lipschitz estimate: power iteration on the Jacobian at a point."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((1,) + shape, generator=generator, dtype=DTYPE)
    v = torch.randn(x.shape, generator=generator, dtype=DTYPE)
    gain = 0.0
    for _ in range(n_iter):
        v = v / v.norm()
        _, jv = torch.func.jvp(network, (x,), (v,))
        gain = float(jv.norm().detach())
        _, vjp = torch.func.vjp(network, x)
        v = vjp(jv)[0]
    return gain


# -- DnCNN -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, height, width", [(1, 8, 8), (3, 9, 13), (2, 16, 5)])
@pytest.mark.parametrize("depth, kernel_size", [(2, 3), (4, 5)])
def test_dncnn_output_shape_equals_input(channels, height, width, depth, kernel_size):
    torch.manual_seed(0)
    network = DnCNN(depth=depth, width=4, channels=channels, kernel_size=kernel_size,
                    zero_output=False).double()
    x = torch.randn(2, channels, height, width, dtype=DTYPE)
    out = network(x)
    assert out.shape == x.shape and out.dtype == DTYPE
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_dncnn_depth_counts_convolutions():
    network = DnCNN(depth=5, width=4)
    convolutions = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 5
    assert convolutions[0].in_channels == 1 and convolutions[-1].out_channels == 1
    assert all(c.out_channels == 4 for c in convolutions[:-1])


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_zero_output_gives_exactly_zero(spectral_norm):
    torch.manual_seed(0)
    network = DnCNN(depth=3, width=4, channels=2, spectral_norm=spectral_norm)
    x = torch.randn(3, 2, 8, 8)
    out = network(x)
    assert torch.equal(out, torch.zeros_like(x))
    # ... but it is trainable: the output layer receives a gradient
    (out * x).sum().backward()
    assert network.body[-1].weight.grad.abs().sum() > 0
    assert network.lipschitz_bound() == 0.0


def test_dncnn_is_translation_equivariant():
    # circular padding: shifting the image shifts the output
    torch.manual_seed(0)
    network = DnCNN(depth=3, width=4, zero_output=False).double()
    x = torch.randn(1, 1, 8, 8, dtype=DTYPE)
    shifted = torch.roll(x, shifts=(2, 3), dims=(2, 3))
    torch.testing.assert_close(network(shifted), torch.roll(network(x), shifts=(2, 3), dims=(2, 3)))


@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_lipschitz_bound_is_an_upper_bound(spectral_norm, seed):
    torch.manual_seed(seed)
    network = DnCNN(depth=4, width=6, channels=2, spectral_norm=spectral_norm,
                    zero_output=False).double()
    network(torch.randn(1, 2, 8, 8, dtype=DTYPE))      # one power-iteration update (train mode)
    network.eval()
    bound = network.lipschitz_bound()
    assert math.isfinite(bound) and bound > 0
    ratios = empirical_ratios(network, (2, 8, 8), seed=seed)
    assert float(ratios.max()) <= bound
    assert largest_gain(network, (2, 8, 8), seed=seed) <= bound


def test_spectral_norm_constrains_every_convolution():
    torch.manual_seed(0)
    network = DnCNN(depth=4, width=6, spectral_norm=True, zero_output=False).double()
    for _ in range(20):                                  # let the power iterations converge
        network(torch.randn(1, 1, 8, 8, dtype=DTYPE))
    network.eval()
    convolutions = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    for conv in convolutions:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        # torch's spectral_norm runs one power iteration per training forward
        assert float(sigma) == pytest.approx(1.0, rel=1e-2)
    # the bound is then sqrt(3 * 3) per layer
    assert network.lipschitz_bound() == pytest.approx(3.0 ** 4, rel=5e-2)


def test_spectral_norm_with_zero_output_is_finite_and_trainable():
    torch.manual_seed(0)
    network = DnCNN(depth=3, width=4, spectral_norm=True)   # zero_output defaults to True
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(network(x), torch.zeros_like(x))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    ((network(x) - x) ** 2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    optimizer.step()
    out = network(x)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    bound = network.lipschitz_bound()
    assert math.isfinite(bound) and bound > 0
    network.eval()
    assert float(empirical_ratios(network.double(), (1, 8, 8)).max()) <= bound


@pytest.mark.parametrize("kwargs, name", [
    ({"depth": 1}, "depth"), ({"depth": 0}, "depth"), ({"depth": 2.5}, "depth"),
    ({"depth": True}, "depth"), ({"width": 0}, "width"), ({"width": "8"}, "width"),
    ({"channels": 0}, "channels"), ({"kernel_size": 4}, "kernel_size"),
    ({"kernel_size": 0}, "kernel_size"),
])
def test_dncnn_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DnCNN(**kwargs)
    with pytest.raises(TypeError):
        DnCNN(dept=3)


# -- TikhonovPlusNetwork ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-6, 1e-2, 0.7, 30.0])
def test_tikhonov_plus_zero_network_is_alpha_x(alpha):
    regularizer = TikhonovPlusNetwork(DnCNN(depth=3, width=4), alpha=alpha).double()
    assert float(regularizer.alpha) > 0
    assert float(regularizer.alpha) == pytest.approx(alpha, rel=1e-6)
    x = torch.randn(2, 1, 8, 8, dtype=DTYPE)
    out = regularizer(x)
    assert torch.equal(out, regularizer.alpha * x)
    torch.testing.assert_close(out, alpha * x, rtol=1e-6, atol=0)


def test_alpha_stays_positive_under_training():
    regularizer = TikhonovPlusNetwork(DnCNN(depth=2, width=2), alpha=1e-2)
    optimizer = torch.optim.SGD([regularizer.raw_alpha], lr=10.0)
    x = torch.ones(1, 1, 4, 4)
    for _ in range(5):                   # push alpha down as hard as possible
        optimizer.zero_grad()
        regularizer(x).sum().backward()
        optimizer.step()
    assert 0 < float(regularizer.alpha) < 1e-2


def test_learn_alpha_false_freezes_alpha():
    torch.manual_seed(0)
    regularizer = TikhonovPlusNetwork(DnCNN(depth=3, width=4), alpha=0.3, learn_alpha=False)
    assert not regularizer.raw_alpha.requires_grad
    trainable = [p for p in regularizer.parameters() if p.requires_grad]
    assert all(p is not regularizer.raw_alpha for p in trainable)
    optimizer = torch.optim.SGD(regularizer.parameters(), lr=1.0)
    x = torch.randn(2, 1, 8, 8)
    regularizer(x).pow(2).sum().backward()
    optimizer.step()
    assert float(regularizer.alpha) == pytest.approx(0.3, rel=1e-6)
    assert regularizer.network.body[-1].weight.abs().sum() > 0     # the network did train
    learned = TikhonovPlusNetwork(DnCNN(depth=3, width=4), alpha=0.3)
    assert learned.raw_alpha.requires_grad


def test_tikhonov_plus_accepts_any_module():
    # R(x) = alpha * x + scale * network(x)
    x = torch.randn(1, 1, 3, 3)
    regularizer = TikhonovPlusNetwork(nn.Identity(), alpha=0.5)
    torch.testing.assert_close(regularizer(x), 1.5 * x)
    scaled = TikhonovPlusNetwork(nn.Identity(), alpha=0.5, scale=2.0)
    torch.testing.assert_close(scaled(x), 2.5 * x)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"alpha": 0.0}, ValueError, "alpha"), ({"alpha": -1.0}, ValueError, "alpha"),
    ({"alpha": math.nan}, ValueError, "alpha"), ({"alpha": math.inf}, ValueError, "alpha"),
    ({"alpha": True}, ValueError, "alpha"), ({"alpha": "0.1"}, ValueError, "alpha"),
    ({"network": lambda x: x}, TypeError, "network"), ({"network": None}, TypeError, "network"),
    ({"scale": 0.0}, ValueError, "scale"), ({"scale": math.nan}, ValueError, "scale"),
])
def test_tikhonov_plus_rejects_bad_arguments(kwargs, error, name):
    arguments = {"network": DnCNN(depth=2, width=2), **kwargs}
    with pytest.raises(error, match=name):
        TikhonovPlusNetwork(**arguments)
