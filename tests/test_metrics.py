import math

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GridSearchCV

from implicit_inverse.metrics import psnr, psnr_scorer, ssim, ssim_scorer


def _pair(shape, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x, np.clip(x + noise * rng.standard_normal(shape), 0, 1)


def _hand_psnr(x, y, data_range=1.0):
    return 10 * math.log10(data_range**2 / np.mean((x - y) ** 2))


@pytest.mark.parametrize("shape", [(16, 16), (3, 16, 16), (3, 2, 16, 16)])
def test_psnr_is_mean_of_per_image_hand_formula(shape):
    x, y = _pair(shape)
    if len(shape) == 2:
        expected = _hand_psnr(x, y)
    else:
        expected = np.mean([_hand_psnr(a, b) for a, b in zip(x, y)])
    assert psnr(x, y) == pytest.approx(expected, rel=1e-10)


def test_psnr_data_range_and_known_value():
    x = np.zeros((2, 8, 8))
    assert psnr(x, x + 0.1) == pytest.approx(20.0)
    assert psnr(255 * x, 255 * (x + 0.1), data_range=255) == pytest.approx(20.0)


def test_psnr_identical_is_inf():
    x, _ = _pair((2, 8, 8))
    assert psnr(x, x) == math.inf


def test_metrics_accept_torch_tensors():
    x, y = _pair((2, 1, 12, 12))
    tx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float32)
    assert psnr(tx, ty) == pytest.approx(psnr(x, y), rel=1e-5)
    assert ssim(tx, ty) == pytest.approx(ssim(x, y), rel=1e-4)
    assert psnr(tx.to(torch.bfloat16), ty.to(torch.bfloat16)) > 20


@pytest.mark.parametrize("shape", [(16, 16), (3, 16, 16), (2, 3, 16, 16), (2, 1, 5, 5)])
def test_ssim_identical_is_one_and_noise_lowers_it(shape):
    x, y = _pair(shape, noise=0.2)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, y) < 0.99


def test_ssim_small_images_use_window_that_fits():
    x, y = _pair((2, 4, 6), noise=0.2)
    assert -1.0 <= ssim(x, y) <= 1.0


def test_ssim_rejects_images_smaller_than_3():
    x, y = _pair((2, 2, 8))
    with pytest.raises(ValueError, match="at least 3x3"):
        ssim(x, y)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(ValueError, match=r"x_true.*\(2, 8, 8\).*x_pred.*\(2, 8, 9\)"):
        metric(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))


@pytest.mark.parametrize("metric", [psnr, ssim])
@pytest.mark.parametrize("shape", [(8,), (1, 1, 1, 8, 8)])
def test_wrong_number_of_dimensions(metric, shape):
    with pytest.raises(ValueError, match="must be shaped"):
        metric(np.zeros(shape), np.ones(shape))


@pytest.mark.parametrize("data_range", [0, -1.0, float("nan")])
def test_bad_data_range_value(data_range):
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=data_range)


def test_bad_data_range_type():
    with pytest.raises(TypeError, match="data_range"):
        ssim(np.zeros((8, 8)), np.ones((8, 8)), data_range="1")


def test_non_numeric_input_is_type_error():
    with pytest.raises(TypeError, match="x_true"):
        psnr(object(), np.zeros((4, 4)))


class _Shrink(RegressorMixin, BaseEstimator):
    """Predicts ``alpha * X``: the best alpha for y == X is 1."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        return self.alpha * np.asarray(X)


@pytest.mark.parametrize("shape", [(12, 8, 8), (12, 1, 8, 8), (12, 64)])
@pytest.mark.parametrize("scorer", [psnr_scorer, ssim_scorer])
def test_scorers_in_grid_search(scorer, shape):
    rng = np.random.default_rng(0)
    X = rng.random(shape)
    y = X + 0.01 * rng.standard_normal(shape)  # keeps the best PSNR finite
    search = GridSearchCV(
        _Shrink(), {"alpha": [0.5, 1.0, 0.8]}, scoring=scorer, cv=3, error_score="raise"
    )
    search.fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"alpha": 1.0}


def test_psnr_scorer_flattened_rows_match_images():
    X, y = _pair((6, 8, 8))
    est = _Shrink(alpha=0.9).fit(X)
    flat = psnr_scorer(est, X.reshape(6, -1), y.reshape(6, -1))
    assert flat == pytest.approx(psnr_scorer(est, X, y))
    assert flat == pytest.approx(psnr(y, 0.9 * X))


def test_ssim_scorer_reshapes_square_rows():
    X, y = _pair((6, 8, 8))
    est = _Shrink(alpha=0.9).fit(X)
    assert ssim_scorer(est, X.reshape(6, -1), y.reshape(6, -1)) == pytest.approx(ssim(y, 0.9 * X))


def test_ssim_scorer_rejects_non_square_rows():
    X = np.random.default_rng(0).random((4, 10))
    with pytest.raises(ValueError, match="perfect square"):
        ssim_scorer(_Shrink().fit(X), X, X)


def test_scorer_shape_mismatch():
    X = np.zeros((4, 8, 8))
    with pytest.raises(ValueError, match="y_true and y_pred"):
        psnr_scorer(_Shrink().fit(X), X, np.zeros((4, 8, 7)))
