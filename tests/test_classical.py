"""Classical baselines: TikhonovRegressor, DirectInverseRegressor and tune_lam."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from implicit_inverse import (DirectInverseRegressor, TikhonovRegressor,
                              TotalVariationRegressor, WienerRegressor)
from implicit_inverse.baselines.classical import tikhonov
from implicit_inverse.baselines.tuning import LAM_GRID, tune_lam
from implicit_inverse.metrics import psnr, psnr_scorer
from implicit_inverse.operators import Blur, Identity, Mask, gaussian_kernel, make_measurements


def dense_matrix(operator, side):
    """The operator as a dense matrix acting on flattened side x side images (float64)."""
    basis = torch.eye(side * side, dtype=torch.float64).reshape(-1, 1, side, side)
    return operator(basis).reshape(side * side, -1).T.numpy()


@pytest.mark.parametrize("lam", [1e-2, 0.3])
def test_tikhonov_equals_the_closed_form(any_operator, lam):
    operator = any_operator
    rng = np.random.default_rng(0)
    clean = rng.random((3, 8, 8))
    measured = make_measurements(clean, operator, noise_std=0.05, random_state=1)
    A = dense_matrix(operator, 8)
    d = measured.reshape(3, -1).astype(np.float32).astype(np.float64)  # predict runs on float32
    expected = np.linalg.solve(A.T @ A + lam * np.eye(64), A.T @ d.T).T.reshape(3, 8, 8)

    est = TikhonovRegressor(operator, lam=lam)
    assert est.fit(measured, clean) is est
    out = est.predict(measured)
    assert out.dtype == np.float64 and out.shape == (3, 8, 8)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_tikhonov_layouts_and_kinds(faces, blurred):
    X, y = blurred
    est = TikhonovRegressor(Blur(gaussian_kernel(5, 1.0)), lam=1e-2).fit(X, y)
    assert (est.image_shape_, est.n_channels_, est.n_features_in_) == ((1, 16, 16), 1, 256)
    out = est.predict(X)
    assert out.dtype == np.float32 and out.shape == X.shape
    np.testing.assert_allclose(est.predict(X[:, None])[:, 0], out)
    np.testing.assert_allclose(est.predict(X.reshape(32, -1)), out.reshape(32, -1))
    torch_out = est.predict(torch.tensor(X, dtype=torch.float64))
    assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.float64
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-6)
    assert est.score(X, y) == pytest.approx(psnr(y, out))
    assert psnr_scorer(est, X, y) == pytest.approx(est.score(X, y))
    with pytest.raises(ValueError, match="X has 100 features"):
        est.predict(np.zeros((2, 100), dtype=np.float32))


def test_tikhonov_with_explicit_image_shape():
    clean = np.random.default_rng(0).random((4, 6, 10))
    operator = Blur(gaussian_kernel(3, 0.8))
    X = make_measurements(clean, operator, noise_std=0.01, random_state=0)
    est = TikhonovRegressor(operator, image_shape=(1, 6, 10)).fit(X.reshape(4, -1),
                                                                  clean.reshape(4, -1))
    np.testing.assert_allclose(est.predict(X.reshape(4, -1)).reshape(4, 6, 10),
                               TikhonovRegressor(operator).fit(X, clean).predict(X))


@pytest.mark.parametrize("cls", [TikhonovRegressor, DirectInverseRegressor, WienerRegressor,
                                 TotalVariationRegressor])
def test_classical_contract(cls, blurred, blur):
    X, y = blurred
    est = cls(blur)
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="operator is required"):
        cls().fit(X, y)
    with pytest.raises(ValueError, match="X contains NaN"):
        est.fit(np.where(X > 0.9, np.nan, X), y)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        est.fit(np.where(X > 0.9, np.inf, X), y)
    with pytest.raises(ValueError, match="X and y have different numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="X and y do not match"):
        est.fit(X, y[:, :8, :8])
    est.fit(X, y)
    with pytest.raises(ValueError, match="X contains NaN"):
        est.predict(np.where(X > 0.9, np.nan, X))
    with pytest.raises(ValueError, match="X has 100 features"):
        est.predict(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError, match="X has 3 channels"):
        est.predict(np.zeros((2, 3, 16, 16), dtype=np.float32))


@pytest.mark.parametrize("params", [dict(lam=0.0), dict(lam=-1.0), dict(lam=np.inf),
                                    dict(lam="auto")], ids=repr)
def test_tikhonov_bad_lam(params, blurred):
    X, y = blurred
    with pytest.raises(ValueError, match="lam"):
        TikhonovRegressor(Identity(), **params).fit(X, y)


@pytest.mark.parametrize("floor", [0.0, -1e-3, np.inf])
def test_direct_inverse_bad_floor(floor, blurred):
    X, y = blurred
    with pytest.raises(ValueError, match="floor"):
        DirectInverseRegressor(Identity(), floor=floor).fit(X, y)


def test_grid_search_over_lam_picks_a_sensible_weight(faces, blur):
    grid = {"lam": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]}
    best = {}
    for noise_std in (0.002, 0.05):
        X = make_measurements(faces, blur, noise_std=noise_std, random_state=0)
        search = GridSearchCV(TikhonovRegressor(blur), grid, scoring=psnr_scorer, cv=3)
        search.fit(X, faces)
        scores = search.cv_results_["mean_test_score"]
        best[noise_std] = search.best_params_["lam"]
        assert best[noise_std] not in (grid["lam"][0], grid["lam"][-1])  # an interior optimum
        assert search.best_score_ == scores.max() > scores[0] and scores.max() > scores[-1]
        assert search.best_score_ > psnr(faces, X)
    assert best[0.05] > best[0.002]  # more noise calls for more regularisation


def test_tune_lam_returns_the_grid_value_with_the_best_psnr(faces, blur):
    X = make_measurements(faces, blur, noise_std=0.01, random_state=0)
    measured = torch.tensor(X[:, None])
    clean = torch.tensor(faces[:, None])
    lam = tune_lam(blur, measured, clean)
    assert lam in LAM_GRID
    scores = [psnr(faces, tikhonov(blur, measured, value)[:, 0].numpy()) for value in LAM_GRID]
    assert lam == LAM_GRID[int(np.argmax(scores))]
    assert LAM_GRID[0] < lam < LAM_GRID[-1]
    grid = (1e-3, 3e-3, 1e-2, 3e-2)
    chosen = tune_lam(blur, measured, clean, grid=grid)
    assert chosen == grid[int(np.argmax([psnr(faces, tikhonov(blur, measured, v)[:, 0].numpy())
                                         for v in grid]))]
    # it agrees with cross-validated search on the same grid
    search = GridSearchCV(TikhonovRegressor(blur), {"lam": list(grid)}, scoring=psnr_scorer,
                          cv=2).fit(X, faces)
    assert search.best_params_["lam"] == chosen


def test_direct_inverse_inverts_noiseless_blur_and_amplifies_noise(faces, blur):
    clean_measurements = make_measurements(faces, blur)
    est = DirectInverseRegressor(blur, floor=1e-6).fit(clean_measurements, faces)
    assert est.score(clean_measurements, faces) > 50
    noisy = make_measurements(faces, blur, noise_std=0.01, random_state=0)
    direct = DirectInverseRegressor(blur).fit(noisy, faces)
    tikh = TikhonovRegressor(blur, lam=1e-2).fit(noisy, faces)
    assert direct.predict(noisy).shape == noisy.shape
    assert tikh.score(noisy, faces) > direct.score(noisy, faces)


def test_direct_inverse_falls_back_to_tikhonov_with_the_floor(faces):
    operator = Mask(fraction=0.5, random_state=0)
    X = make_measurements(faces, operator, noise_std=0.01, random_state=0)
    direct = DirectInverseRegressor(operator, floor=1e-2).fit(X, faces).predict(X)
    np.testing.assert_allclose(direct, TikhonovRegressor(operator, lam=1e-2).fit(X, faces)
                               .predict(X))
