"""Fuzzing the implicit estimators with hypothesis: shapes, layouts, array kinds, dtypes and
values. Whatever comes in, ``fit`` and ``predict`` either work and return finite images, or raise
a ValueError or TypeError with a message; never another exception type, never NaN or inf."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from implicit_inverse import ImplicitRegressor
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, Downsample, Identity, gaussian_kernel

OPERATORS = {"identity": Identity, "blur": lambda: Blur(gaussian_kernel(3, 1.0)),
             "downsample": lambda: Downsample(2)}
DTYPES = ["float32", "float64", "float16", "uint8", "int64", "bool", "complex64", "object",
          "<U3"]
SPECIAL = [np.nan, np.inf, -np.inf, 1e39, -1e30, 3e38, 255.0, -3.0, 1e-40, 0.0]

FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def images(draw, shape):
    """Images of ``shape`` with values mostly in [0, 1], sometimes far off or special."""
    size = int(np.prod(shape))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    values = np.random.default_rng(seed).random(size)
    kind = draw(st.sampled_from(["unit"] * 6 + ["scaled", "special"]))
    if kind == "scaled":
        values = values * draw(st.sampled_from([-1.0, 255.0, 1e6, 1e20]))
    elif kind == "special" and size:
        spots = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3))
        values[spots] = draw(st.sampled_from(SPECIAL))
    return values.reshape(shape)


def as_user_input(values, dtype, layout, kind):
    """``values`` (n, C, H, W) laid out, typed and wrapped as a user might pass them."""
    n, c = values.shape[:2]
    if layout == "3d":
        values = values[:, 0]
    elif layout == "flat":
        values = values.reshape(n, int(np.prod(values.shape[1:])))
    elif layout == "5d":
        values = values[:, None]
    with np.errstate(all="ignore"):
        if dtype == "<U3":
            array = values.astype(str).astype(dtype)
        elif dtype == "object":
            array = values.astype(object)
        else:
            array = values.astype(dtype)
    if kind == "torch" and array.dtype.kind not in "OU":
        return torch.from_numpy(np.ascontiguousarray(array))
    if kind == "list":
        return array.tolist()
    return array


@st.composite
def problems(draw):
    operator = draw(st.sampled_from(sorted(OPERATORS)))
    # mostly shapes an estimator can take, sometimes ones it must refuse
    n = draw(st.sampled_from([2, 3, 4, 5] * 3 + [0, 1]))
    c = draw(st.sampled_from([1, 1, 2]))
    h, w = (draw(st.sampled_from(list(range(2, 10)) * 3 + [0, 1])) for _ in range(2))
    clean = draw(images((n, c, h, w)))
    try:
        with np.errstate(all="ignore"):
            measured = OPERATORS[operator]()(torch.from_numpy(clean)).numpy()
    except Exception:  # noqa: BLE001 - a shape the operator refuses: any measurements will do
        measured = draw(images((n, c, h, w)))
    if draw(st.sampled_from([False] * 4 + [True])):  # other measurements (values or shape)
        hh, ww = draw(st.sampled_from([(measured.shape[2], measured.shape[3]), (h, w),
                                       (h + 1, w), (max(h - 1, 0), w)]))
        measured = draw(images((n, c, hh, ww)))
    dtype_x, dtype_y = (draw(st.sampled_from(DTYPES[:3] * 5 + DTYPES)) for _ in range(2))
    layout = draw(st.sampled_from(["4d"] * 3 + ["3d"] * 3 + ["flat", "5d"]))
    kind = draw(st.sampled_from(["numpy"] * 3 + ["torch"] * 2 + ["list"]))
    new = draw(images((draw(st.integers(0, 3)), c, measured.shape[2], measured.shape[3])))
    return dict(
        operator=operator, channels=c,
        X=as_user_input(measured, dtype_x, layout, kind),
        y=as_user_input(clean, dtype_y, layout, kind),
        X_new=as_user_input(new, dtype_x, layout, kind),
        solver=draw(st.sampled_from(["anderson", "forward"])),
        eta=draw(st.sampled_from([0.5, 1.0, 1.9, 5.0])),
        precondition=draw(st.booleans()),
        noise_std=draw(st.sampled_from(["auto", 0.0, 0.05])),
        batch_size=draw(st.sampled_from([1, 2, 4])),
    )


def check_output(images, n):
    values = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    assert values.shape[0] == n
    assert np.isfinite(values.astype(np.float64)).all(), "predictions contain NaN or inf"


def attempt(method, *args):
    """``method(*args)``, or None when it raised ValueError/TypeError (with a message)."""
    try:
        return method(*args)
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return None


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(problems())
def test_fit_and_predict_either_work_or_refuse_with_value_or_type_error(problem):
    torch.manual_seed(0)
    est = ImplicitRegressor(
        OPERATORS[problem["operator"]](),
        regularizer=TikhonovPlusNetwork(DnCNN(depth=2, width=4, channels=problem["channels"]),
                                        alpha=0.01),
        solver=problem["solver"], eta=problem["eta"], precondition=problem["precondition"],
        noise_std=problem["noise_std"], batch_size=problem["batch_size"], max_epochs=1,
        max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if attempt(est.fit, problem["X"], problem["y"]) is None:
            return
        for X in (problem["X"], problem["X_new"]):
            predictions = attempt(est.predict, X)
            if predictions is not None:
                check_output(predictions, len(X))
