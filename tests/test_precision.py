"""Mixed precision of the regularizer (networks.precision, estimator ``precision=``)."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.networks import DnCNN, MixedPrecision, TikhonovPlusNetwork
from implicit_inverse.networks.precision import with_precision

pytestmark = pytest.mark.filterwarnings(
    "ignore::implicit_inverse.equilibrium.ConvergenceWarning")


def _network():
    torch.manual_seed(0)
    network = DnCNN(depth=3, width=8)
    with torch.no_grad():  # a non-zero output layer, so that the output shows the rounding
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return network


def test_autocast_in_training_mode_float32_in_evaluation_mode():
    network = _network()
    wrapped = MixedPrecision(network)
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        reference = network(x)
        reduced = wrapped.train()(x)
        evaluated = wrapped.eval()(x)
    assert reduced.dtype == torch.float32 and evaluated.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in wrapped.parameters())
    error = float((reduced - reference).abs().max() / reference.abs().max())
    assert 0 < error < 0.05  # bfloat16 rounding: 8 significant bits
    torch.testing.assert_close(evaluated, reference, rtol=0, atol=0)
    with torch.no_grad():
        inference = MixedPrecision(network, inference=True).eval()(x)
    assert not torch.equal(inference, reference)


def test_gradients_and_double_backward_through_the_wrapper_are_finite():
    wrapped = MixedPrecision(TikhonovPlusNetwork(_network(), alpha=0.05)).train()
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    output = wrapped(x)
    (vjp,) = torch.autograd.grad(output, x, torch.randn_like(x), create_graph=True)
    (output.square().mean() + vjp.square().mean()).backward()  # the Jacobian penalty's path
    assert all(torch.isfinite(p.grad).all() for p in wrapped.parameters())


def test_float16_needs_cuda_and_names_are_checked():
    with pytest.raises(ValueError, match="CUDA"):
        with_precision(_network(), "float16", "cpu")
    with pytest.raises(ValueError, match="CUDA"):
        MixedPrecision(_network(), torch.float16).train()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="precision"):
        with_precision(_network(), "float8")
    with pytest.raises(ValueError, match="dtype"):
        MixedPrecision(_network(), torch.float32)
    network = _network()
    assert with_precision(network, "float32") is network


def test_estimator_trains_in_bfloat16_like_float32(blurred, blur):
    X, y = blurred[0][:16], blurred[1][:16]
    settings = dict(operator=blur, max_epochs=2, batch_size=8, random_state=0, n_threads=1)
    single = ImplicitDeblurRegressor(**settings).fit(X, y)
    mixed = ImplicitDeblurRegressor(precision="bfloat16", **settings).fit(X, y)
    assert isinstance(mixed.net_.module_.layer.map.regularizer, MixedPrecision)
    assert all(bool(torch.isfinite(p).all()) for p in mixed.net_.module_.parameters())
    assert sum(mixed.history[:, "skipped"]) == 0
    prediction = mixed.predict(X)
    assert prediction.dtype == X.dtype and np.isfinite(prediction).all()
    assert abs(mixed.score(X, y) - single.score(X, y)) < 0.5


def test_estimator_refuses_float16_on_the_cpu_and_unknown_precisions(blurred, blur):
    X, y = blurred[0][:8], blurred[1][:8]
    with pytest.raises(ValueError, match="bfloat16"):
        ImplicitDeblurRegressor(operator=blur, precision="float16", max_epochs=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="precision"):
        ImplicitDeblurRegressor(operator=blur, precision="half", max_epochs=1).fit(X, y)
