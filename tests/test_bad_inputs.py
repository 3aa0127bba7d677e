"""Bad input to the implicit estimators: every kind is refused with a ValueError or TypeError (or
NotFittedError) whose message names the argument and what was expected, before any training,
and without touching the caller's arrays."""

import copy
import uuid
import warnings
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from implicit_inverse import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                              ImplicitRegressor, ImplicitSuperResolutionRegressor)
from implicit_inverse.equilibrium import ConvergenceWarning
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel

N = 16

# -- a regularizer that reports how it was called ----------------------------------------------
CALLS = defaultdict(list)  # key -> [(batch size, grad enabled)], shared by deep copies


class Spy(nn.Module):
    """A tiny regularizer recording each call; ``fit`` trains a deep copy, which records too."""

    def __init__(self, inner=None):
        super().__init__()
        self.key = uuid.uuid4().hex
        self.inner = inner if inner is not None else TikhonovPlusNetwork(
            DnCNN(depth=3, width=8), alpha=0.01)

    def forward(self, x):
        CALLS[self.key].append((x.shape[0], torch.is_grad_enabled()))
        return self.inner(x)


class ShapeChanging(Spy):
    def forward(self, x):
        return super().forward(x)[..., 1:, :]


class Failing(Spy):
    def forward(self, x):
        super().forward(x)
        raise RuntimeError("boom")


class ReturnsTuple(Spy):
    def forward(self, x):
        return (super().forward(x),)


def assert_not_trained(spy):
    """At most the one-image shape probe (without gradients) ran: no solve, no training step."""
    calls = CALLS[spy.key]
    assert all(size == 1 and not grad for size, grad in calls), calls
    assert len(calls) <= 1, calls


def estimator(cls=ImplicitDeblurRegressor, operator="blur", **params):
    defaults = dict(regularizer=Spy(), max_epochs=1, batch_size=8, max_iter=5, random_state=0)
    if isinstance(operator, str) and operator == "blur":
        operator = Blur(gaussian_kernel(5, 1.0))
    return cls(operator, **{**defaults, **params})


# -- the caller's data must not change ----------------------------------------------------------
def snapshot(value):
    if isinstance(value, torch.Tensor):
        return ("torch", value.dtype, tuple(value.shape), value.detach().clone())
    if scipy.sparse.issparse(value):
        return ("sparse", value.copy())
    if isinstance(value, np.ndarray):
        return ("numpy", value.dtype, value.shape, copy.deepcopy(value))
    return ("other", copy.deepcopy(value))


def assert_unchanged(value, before):
    now = snapshot(value)
    assert now[0] == before[0]
    if before[0] == "torch":
        assert now[1:3] == before[1:3]
        assert torch.equal(torch.nan_to_num(now[3]), torch.nan_to_num(before[3])) \
            if now[3].is_floating_point() or now[3].is_complex() else torch.equal(now[3], before[3])
    elif before[0] == "numpy":
        assert now[1:3] == before[1:3]
        if before[1].kind in "fc":
            np.testing.assert_array_equal(now[3], before[3])  # NaN == NaN here
        else:
            assert now[3].tolist() == before[3].tolist()
    elif before[0] == "sparse":
        assert (now[1] != before[1]).nnz == 0
    else:
        assert repr(now[1]) == repr(before[1])


# -- fit: bad data ------------------------------------------------------------------------------
def _with(values, index, value, dtype=None):
    values = np.array(values, dtype=dtype)
    values[index] = value
    return values


BAD_DATA = {
    # kind: (make (X, y) from good writeable data, estimator params, error, message pattern)
    "nan in X": (lambda X, y: (_with(X, (3, 2, 5), np.nan), y), {}, ValueError,
                 "X contains NaN or infinity"),
    "+inf in X": (lambda X, y: (_with(X, (0, 0, 0), np.inf), y), {}, ValueError,
                  "X contains NaN or infinity"),
    "-inf in X": (lambda X, y: (_with(X, (5, 1, 1), -np.inf), y), {}, ValueError,
                  "X contains NaN or infinity"),
    "nan in y": (lambda X, y: (X, _with(y, (15, 15, 15), np.nan)), {}, ValueError,
                 "y contains NaN or infinity"),
    "+inf in y": (lambda X, y: (X, _with(y, (2, 3, 4), np.inf)), {}, ValueError,
                  "y contains NaN or infinity"),
    "-inf in y": (lambda X, y: (X, _with(y, (1, 1, 1), -np.inf)), {}, ValueError,
                  "y contains NaN or infinity"),
    "nan in torch X": (lambda X, y: (torch.from_numpy(_with(X, (0, 0, 0), np.nan)), y), {},
                       ValueError, "X contains NaN or infinity"),
    "n mismatch": (lambda X, y: (X, y[:-1]), {}, ValueError,
                   "X and y have different numbers of samples: 16 and 15"),
    "1-D X": (lambda X, y: (X.ravel(), y), {}, ValueError,
              r"X must be images shaped \(n, H, W\) or \(n, C, H, W\).*got 1-D"),
    "5-D X": (lambda X, y: (X[:, None, None], y), {}, ValueError,
              r"X must be images shaped .*got 5-D"),
    "1-D y": (lambda X, y: (X, y[:, 0, 0]), {}, ValueError, r"y must be images shaped .*got 1-D"),
    "scalar X": (lambda X, y: (0.5, y), {}, ValueError, r"X must be images shaped .*got 0-D"),
    "image size X vs y": (lambda X, y: (X, y[:, :12, :12]), {}, ValueError,
                          r"X and y do not match through the operator.*maps y of shape"),
    "channels X vs y": (lambda X, y: (X[:, None], np.repeat(y[:, None], 3, axis=1)), {},
                        ValueError, "X and y do not match through the operator"),
    "size the operator refuses": (
        lambda X, y: (X, y), dict(cls=ImplicitInpaintingRegressor, operator=None,
                                  mask=np.ones((8, 8))),
        ValueError, r"X of shape \(1, 16, 16\) cannot be handled by the operator Mask"),
    "image smaller than the blur": (lambda X, y: (X[:, :3, :3], y[:, :3, :3]), {}, ValueError,
                                    "cannot be handled by the operator Blur"),
    "odd size for downsampling": (
        lambda X, y: (X[:, :7, :7], y[:, :15, :15]),
        dict(cls=ImplicitSuperResolutionRegressor, operator=None),
        ValueError, "X and y do not match|cannot be measured|cannot be handled"),
    "empty X": (lambda X, y: (X[:0], y[:0]), {}, ValueError,
                "X is empty: found array with 0 sample"),
    "images of 0 pixels": (lambda X, y: (X[:, :0], y), {}, ValueError, "X is empty"),
    "single sample": (lambda X, y: (X[:1], y[:1]), {}, ValueError,
                      "X has n_samples = 1; at least 2 images are needed"),
    "strings": (lambda X, y: (np.full(X.shape, "0.5"), y), {}, TypeError,
                "X must be an array of real numbers; got dtype <U3"),
    "bytes": (lambda X, y: (X, np.full(y.shape, b"a")), {}, TypeError,
              "y must be an array of real numbers; got dtype |S1"),
    "objects": (lambda X, y: (X, np.full(y.shape, None)), {}, TypeError,
                "y must be an array of real numbers; got objects of type NoneType"),
    "dict objects": (lambda X, y: (np.full(X.shape, {}, dtype=object), y), {}, TypeError,
                     "X must be an array of real numbers"),
    "ragged list": (lambda X, y: ([[0.0, 1.0], [0.0]], y), {}, TypeError,
                    "X must be an array of real numbers"),
    "dates": (lambda X, y: (np.zeros(X.shape, dtype="datetime64[s]"), y), {}, TypeError,
              "X must be an array of real numbers; got dtype datetime64"),
    "complex X": (lambda X, y: (X + 0.5j, y), {}, ValueError,
                  "Complex data not supported: X must be real"),
    "complex torch y": (lambda X, y: (X, torch.from_numpy(y) * (1 + 1j)), {}, ValueError,
                        "Complex data not supported: y must be real"),
    "boolean X": (lambda X, y: (X > 0.5, y), {}, TypeError,
                  "X must be real floating images; got dtype bool"),
    "boolean torch y": (lambda X, y: (X, torch.from_numpy(y) > 0.5), {}, TypeError,
                        "y must be real floating images; got dtype bool"),
    "uint8 X": (lambda X, y: ((X * 255).astype(np.uint8), y), {}, TypeError,
                r"X must be floating point images in \[0, 1\]; got integer dtype uint8.*"
                r"x.astype\(np.float32\) / 255"),
    "int64 torch y": (lambda X, y: (X, torch.from_numpy((y * 255).astype(np.int64))), {},
                      TypeError, r"y must be floating point images.*int64.*x.float\(\) / 255"),
    "beyond float32": (lambda X, y: (X.astype(np.float64) * 1e39, y), {}, ValueError,
                       "X has values of magnitude up to .*beyond the float32 range"),
    "y is None": (lambda X, y: (X, None), {}, ValueError, "requires y to be passed"),
    "sparse X": (lambda X, y: (scipy.sparse.csr_matrix(X.reshape(N, -1)), y), {}, TypeError,
                 r"X is a sparse matrix.*X.toarray\(\)"),
    "flat X of another size": (lambda X, y: (X.reshape(N, -1)[:, :200], y),
                               dict(image_shape=(1, 16, 16)), ValueError,
                               r"X has 200 features per row, which cannot be images of shape "
                               r"\(1, 16, 16\)"),
    "one value per sample": (lambda X, y: (X[:, :1, 0], y[:, :1, 0]), {}, ValueError,
                             r"X has 1 feature\(s\) per row"),
}


@pytest.mark.parametrize("case", list(BAD_DATA), ids=list(BAD_DATA))
def test_bad_data_is_refused_before_training_and_left_untouched(case, blurred):
    make_bad, params, error, match = BAD_DATA[case]
    X, y = make_bad(np.array(blurred[0][:N]), np.array(blurred[1][:N]))
    X_before, y_before = snapshot(X), snapshot(y)
    est = estimator(**params)
    with pytest.raises(error, match=match) as info:
        est.fit(X, y)
    assert str(info.value)
    assert not hasattr(est, "net_")
    assert_not_trained(est.regularizer)
    assert_unchanged(X, X_before)
    assert_unchanged(y, y_before)


# -- fit: bad hyperparameters -------------------------------------------------------------------
BAD_PARAMS = {
    # kind: (params, error message pattern: it names the parameter and what it must be)
    "eta=0": (dict(eta=0.0), r"'eta' parameter .* must be a float in the range \(0.0, inf\)"),
    "eta<0": (dict(eta=-1.0), "'eta' parameter .* range"),
    "eta=nan": (dict(eta=np.nan), "'eta' parameter .* range"),
    "eta=inf": (dict(eta=np.inf), "'eta' parameter .* range"),
    "eta string": (dict(eta="large"), "'eta' parameter"),
    "noise_std<0": (dict(noise_std=-0.01), r"'noise_std' parameter .* \[0.0, inf\) or a str"),
    "noise_std=nan": (dict(noise_std=np.nan), "'noise_std' parameter"),
    "noise_std unknown string": (dict(noise_std="high"), "'noise_std' parameter .*'auto'"),
    "max_iter=0": (dict(max_iter=0), r"'max_iter' parameter .* int in the range \[1, inf\)"),
    "max_iter float": (dict(max_iter=2.5), "'max_iter' parameter .* int"),
    "max_iter bool": (dict(max_iter=True), "'max_iter' parameter .* int >= 1, got the bool"),
    "tol<0": (dict(tol=-1e-3), r"'tol' parameter .* \[0.0, inf\)"),
    "tol=nan": (dict(tol=np.nan), "'tol' parameter"),
    "batch_size=0": (dict(batch_size=0), r"'batch_size' parameter .* \[1, inf\)"),
    "batch_size float": (dict(batch_size=8.0), "'batch_size' parameter .* int"),
    "max_epochs=0": (dict(max_epochs=0), r"'max_epochs' parameter .* \[1, inf\)"),
    "max_epochs bool": (dict(max_epochs=False), "'max_epochs' parameter"),
    "lam=0": (dict(lam=0.0), "'lam' parameter"),
    "lr=0": (dict(lr=0.0), "'lr' parameter"),
    "lr=nan": (dict(lr=np.nan), "'lr' parameter"),
    "unknown gradient": (dict(gradient="backprop"), "'gradient' parameter .* among"),
    "unknown solver": (dict(solver="newton"), "'solver' parameter .* among"),
    "operator not a LinearOperator": (dict(operator=np.eye(3)),
                                      "'operator' parameter .*LinearOperator"),
    "operator a function": (dict(operator=lambda x: x), "'operator' parameter .*LinearOperator"),
    "regularizer not a module": (dict(regularizer=lambda x: 0.01 * x),
                                 "'regularizer' parameter .*torch.nn.modules.module.Module"),
    "regularizer changes the shape": (dict(regularizer=ShapeChanging()),
                                      r"regularizer must return images shaped like its input "
                                      r"\(1, 1, 16, 16\), got \(1, 1, 15, 16\)"),
    "regularizer returns a tuple": (dict(regularizer=ReturnsTuple()),
                                    "regularizer must return images shaped .* got tuple"),
    "regularizer fails": (dict(regularizer=Failing()),
                          "regularizer failed on an image of shape .*RuntimeError: boom"),
    "device unknown": (dict(device="tpu"), "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"),
    "device type": (dict(device=3), "'device' parameter"),
    "image_shape": (dict(image_shape=(1, 0, 16)), r"image_shape must be a tuple of 3 positive"),
    "n_threads=0": (dict(n_threads=0), "'n_threads' parameter"),
    "callbacks not a list": (dict(callbacks="checkpoint"), "'callbacks' parameter .*'list'"),
    "random_state": (dict(random_state="seed"), "'random_state' parameter"),
    "optimizer": (dict(optimizer="adam"), "'optimizer' parameter .* callable"),
    "kernel_size=0": (dict(kernel_size=0, operator=None), "'kernel_size' parameter"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS), ids=list(BAD_PARAMS))
def test_bad_hyperparameters_are_refused_before_training(case, blurred):
    params, match = BAD_PARAMS[case]
    X, y = np.array(blurred[0][:N]), np.array(blurred[1][:N])
    X_before, y_before = snapshot(X), snapshot(y)
    est = estimator(**params)
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(X, y)
    assert not hasattr(est, "net_")
    if isinstance(est.regularizer, Spy):
        assert_not_trained(est.regularizer)
    assert_unchanged(X, X_before)
    assert_unchanged(y, y_before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_is_refused_before_training(device, blurred):
    est = estimator(device=device)
    with pytest.raises(ValueError, match=r"device='cuda(:\d)?' was requested but CUDA is not "
                                         r"available .*use device='cpu' or 'auto'"):
        est.fit(blurred[0][:N], blurred[1][:N])
    assert not hasattr(est, "net_")
    assert_not_trained(est.regularizer)


def test_operator_is_required():
    X = np.zeros((4, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="operator is required for ImplicitRegressor"):
        ImplicitRegressor(regularizer=Spy()).fit(X, X)


# -- predict, score and continued training on a fitted model ------------------------------------
@pytest.fixture(scope="module")
def fitted(blurred):
    X, y = blurred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator().fit(X[:N], y[:N])


def _trained_calls(est):
    return len(CALLS[est.net_.module_.layer.map.regularizer.key])


BAD_PREDICT = {
    "nan": (lambda X: _with(X, (0, 0, 0), np.nan), ValueError, "X contains NaN or infinity"),
    "+inf": (lambda X: _with(X, (0, 1, 0), np.inf), ValueError, "X contains NaN or infinity"),
    "-inf": (lambda X: _with(X, (2, 1, 0), -np.inf), ValueError, "X contains NaN or infinity"),
    "channels differ from fit": (lambda X: np.repeat(X[:, None], 3, axis=1), ValueError,
                                 "X has 3 channels but the model was fitted on 1"),
    "image too small for the blur": (lambda X: X[:, :3, :3], ValueError,
                                     "cannot be handled by the operator"),
    "flat X with other features": (lambda X: X.reshape(len(X), -1)[:, :100], ValueError,
                                   "X has 100 features, but ImplicitDeblurRegressor is "
                                   "expecting 256 features"),
    "1-D": (lambda X: X.ravel(), ValueError, "X must be images shaped"),
    "5-D": (lambda X: X[:, None, None], ValueError, "X must be images shaped"),
    "empty": (lambda X: X[:0], ValueError, "X is empty"),
    "strings": (lambda X: np.full(X.shape, "a"), TypeError, "X must be an array of real numbers"),
    "complex": (lambda X: X + 0j, ValueError, "Complex data not supported: X"),
    "boolean": (lambda X: X > 0.5, TypeError, "X must be real floating images"),
    "uint8": (lambda X: (X * 255).astype(np.uint8), TypeError, r"/ 255"),
    "beyond float32": (lambda X: X.astype(np.float64) * 1e39, ValueError,
                       "beyond the float32 range"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT), ids=list(BAD_PREDICT))
def test_bad_data_is_refused_by_predict_before_solving(case, fitted, blurred):
    make_bad, error, match = BAD_PREDICT[case]
    X = make_bad(np.array(blurred[0][N:N + 8]))
    before, calls = snapshot(X), _trained_calls(fitted)
    with pytest.raises(error, match=match):
        fitted.predict(X)
    assert _trained_calls(fitted) == calls  # refused before the regularizer ran
    assert_unchanged(X, before)


def test_measurements_that_overflow_the_solve_are_refused_not_returned_as_nan(fitted, blurred):
    X = np.array(blurred[0][N:N + 4]) * np.float32(3e38)  # finite in float32, overflows inside
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="X has values of magnitude up to .*overflows "
                                             "float32; images must be scaled to"):
            fitted.predict(X)


def test_continued_training_refuses_other_channels(fitted, blurred):
    est = copy.deepcopy(fitted)
    X = np.repeat(np.array(blurred[0][:N])[:, None], 3, axis=1)
    y = np.repeat(np.array(blurred[1][:N])[:, None], 3, axis=1)
    epochs, calls = len(est.history), _trained_calls(est)
    with pytest.raises(ValueError, match="X has 3 channels but the model was fitted on 1"):
        est.partial_fit(X, y)
    assert len(est.history) == epochs and _trained_calls(est) == calls


@pytest.mark.parametrize("est", [ImplicitDeblurRegressor(), ImplicitSuperResolutionRegressor(),
                                 ImplicitInpaintingRegressor(),
                                 ImplicitRegressor(Blur(gaussian_kernel(3, 1.0)))],
                         ids=lambda est: type(est).__name__)
def test_use_before_fit_raises_not_fitted(est, blurred):
    X, y = blurred
    for use in (lambda: est.predict(X), lambda: est.score(X, y), lambda: est.history):
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            use()


# -- values far outside [0, 1]: a warning, not an error ------------------------------------------
def test_images_far_outside_unit_range_warn(blurred, fitted):
    X, y = np.array(blurred[0][:N]), np.array(blurred[1][:N])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(UserWarning, match=r"y has values in .* far outside \[0, 1\].*divide "
                                             "by 255"):
            estimator(max_epochs=1).fit(X, y * 255)
        with pytest.warns(UserWarning, match=r"X has values in .* far outside \[0, 1\]"):
            fitted.predict(X[:4] * 255)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # nominal data: no range warning
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted.predict(X[:4])
