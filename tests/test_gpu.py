"""CUDA checks: estimators and operators on a GPU (skipped, with a reason, without one)."""

import warnings

import numpy as np
import pytest
import torch

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse._runtime import TF32_SAFE_TOL
from implicit_inverse.datasets import load_faces
from implicit_inverse.equilibrium import ForwardIteration, GradientStep, ImplicitLayer
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import (Blur, Downsample, Identity, Mask, gaussian_kernel,
                                        make_measurements)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]


def _problem(n=16, size=16):
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = load_faces(size=size, n=n)
    return operator, make_measurements(clean, operator, 0.01, random_state=0), clean


def test_estimator_fit_predict_on_cuda():
    operator, X, y = _problem()
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=2, batch_size=8,
                                        max_iter=20, device="cuda", random_state=0).fit(X, y)
    assert all(p.is_cuda for p in estimator.net_.module_.parameters())
    prediction, stats = estimator.predict_with_stats(X)
    assert isinstance(prediction, np.ndarray)
    assert prediction.shape == X.shape and prediction.dtype == X.dtype
    assert np.isfinite(prediction).all()
    assert stats.iterations.device.type == "cpu"  # statistics come back to the host once
    from_tensor = estimator.predict(torch.from_numpy(X))
    assert isinstance(from_tensor, torch.Tensor) and from_tensor.device.type == "cpu"
    np.testing.assert_allclose(from_tensor.numpy(), prediction, atol=1e-5)
    assert np.isfinite(estimator.score(X, y))


@pytest.mark.parametrize("operator", [
    Blur(gaussian_kernel(5, 1.0)), Blur(gaussian_kernel(5, 1.0), boundary="zero"),
    Downsample(2), Mask(fraction=0.5, random_state=0), Identity(),
], ids=["blur-circular", "blur-zero", "downsample", "mask", "identity"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operators_keep_device_and_dtype(operator, dtype):
    x = torch.rand(2, 1, 16, 16, device="cuda", dtype=dtype)
    measured = operator(x)
    back = operator.adjoint(measured)
    assert measured.device == x.device and back.device == x.device
    assert measured.dtype == dtype and back.dtype == dtype
    cpu = operator(x.cpu())
    torch.testing.assert_close(measured.cpu(), cpu, rtol=1e-4, atol=1e-5)


def _small_step():
    """A preconditioned DE-GRAD map with a small DnCNN and its measurements (4 x 16 x 16)."""
    operator = Blur(gaussian_kernel(5, 1.0))
    torch.manual_seed(0)
    step = GradientStep(operator, TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.05),
                        precondition=True, lam=0.05)
    return step, operator(torch.rand(4, 1, 16, 16)).cuda()


def test_solve_does_no_per_iteration_host_copies(monkeypatch):
    """Loose check: explicit device-to-host copies do not grow with the iteration count.

    (The solver synchronises once per iteration to learn which samples go on; that is a
    synchronisation, not a copy of images: see the next test.)
    """
    step, d = _small_step()
    copies = {"n": 0}
    for name in ("cpu", "numpy", "tolist", "item"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            if self.is_cuda:
                copies["n"] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    counts = {}
    for max_iter in (5, 40):
        layer = ImplicitLayer(step, max_iter=max_iter, tol=0.0, warn=False).cuda()
        copies["n"] = 0
        with torch.no_grad():
            x_star = layer(d)
        torch.cuda.synchronize()
        assert x_star.is_cuda and int(layer.last_stats.iterations.max()) == max_iter
        counts[max_iter] = copies["n"]
    assert counts[40] == counts[5], counts


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_training_on_cuda(precision):
    """Autocast of the regularizer on the GPU: finite parameters, no skipped batch, the
    float32 model's quality to within 0.5 dB, predictions in float32."""
    from implicit_inverse.networks import MixedPrecision

    operator, X, y = _problem()
    settings = dict(operator=operator, max_epochs=2, batch_size=8, device="cuda",
                    random_state=0)
    single = ImplicitDeblurRegressor(**settings).fit(X, y)
    mixed = ImplicitDeblurRegressor(precision=precision, **settings).fit(X, y)
    assert isinstance(mixed.net_.module_.layer.map.regularizer, MixedPrecision)
    assert all(bool(torch.isfinite(p).all()) and p.dtype == torch.float32
               for p in mixed.net_.module_.parameters())
    assert sum(mixed.history[:, "skipped"]) == 0
    prediction = mixed.predict(X)
    assert prediction.dtype == X.dtype and np.isfinite(prediction).all()
    assert abs(mixed.score(X, y) - single.score(X, y)) < 0.5


def test_solver_synchronises_at_most_once_per_iteration():
    """With the sync debug mode on, torch warns at every host synchronisation: a solve's count
    grows by at most one per iteration (the positions of the samples that go on)."""
    step, d = _small_step()
    counts = {}
    for max_iter in (5, 40):
        layer = ImplicitLayer(step, max_iter=max_iter, tol=0.0, warn=False).cuda()
        with torch.no_grad():
            layer(d)  # warm-up: cached transfer functions, cuDNN plans
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                layer(d)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        assert int(layer.last_stats.iterations.max()) == max_iter
        counts[max_iter] = sum("synchroniz" in str(w.message).lower() for w in caught)
    assert counts[40] - counts[5] <= 40 - 5, counts


@pytest.mark.parametrize("tol, exact", [(1e-4, True), (1e-3, True), (TF32_SAFE_TOL, False)])
def test_solves_below_the_safe_tolerance_run_without_tf32(monkeypatch, tol, exact):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # cuDNN's default
    seen = []

    def f(x, index):
        seen.append(torch.backends.cudnn.allow_tf32)
        return 0.5 * x + 1.0

    x, stats = ForwardIteration().solve(f, torch.ones(2, 1, 4, 4, device="cuda"), 50, tol)
    assert bool(stats.converged.all())
    assert seen and all(flag is not exact for flag in seen)
    assert torch.backends.cudnn.allow_tf32 is True  # the caller's setting is back


def test_predict_converges_at_the_default_tol_with_tf32_allowed(monkeypatch):
    """TF32 convolutions (cuDNN's default) hold the relative residual near 1e-3, above the
    default ``tol=1e-4``: the solves of a trained model must run in exact float32, converge
    well before ``max_iter`` and leave the caller's TF32 setting as it was."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = load_faces(size=32, n=64)
    X = make_measurements(clean, operator, 0.01, random_state=0)
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=4, lr=2e-3, batch_size=16,
                                        device="cuda", random_state=0).fit(X, clean)
    history = estimator.history
    # training solves (train_tol=1e-3, also below the safe tolerance) converge and stay short
    assert sum(history[:, "skipped"]) == 0
    assert min(history[:, "fp_conv"]) >= 0.95, history[:, "fp_conv"]
    assert max(history[:, "fp_iter_max"]) < estimator.train_max_iter
    assert all(1 <= value < estimator.train_max_iter for value in history[:, "fp_iter"])
    assert all(np.isfinite(history[:, "fp_res"]))

    flags = []
    hook = estimator.regularizer_.register_forward_hook(
        lambda *_: flags.append(torch.backends.cudnn.allow_tf32))
    try:
        prediction, stats = estimator.predict_with_stats(X)
    finally:
        hook.remove()
    assert flags and not any(flags)  # every regularizer pass of the solves ran without TF32
    assert torch.backends.cudnn.allow_tf32 is True
    assert bool(stats.converged.all()), stats.summary()
    assert int(stats.iterations.max()) < estimator.max_iter, stats.summary()
    assert float(stats.residual.max()) <= estimator.tol
    assert np.isfinite(prediction).all()
