"""Classical baselines WienerRegressor and TotalVariationRegressor (and their helpers)."""

import dataclasses

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle, wiener as skimage_wiener
from sklearn.model_selection import GridSearchCV

from implicit_inverse import TikhonovRegressor, TotalVariationRegressor, WienerRegressor
from implicit_inverse.baselines.classical import laplacian_power
from implicit_inverse.baselines.total_variation import denoise_tv, tv_deconvolve
from implicit_inverse.baselines import tuning
from implicit_inverse.baselines.tuning import (BALANCE_GRID, LAM_GRID, TV_WEIGHT_GRID,
                                               tune_strongest)
from implicit_inverse.metrics import psnr, psnr_scorer
from implicit_inverse.operators import Blur, Identity, gaussian_kernel, make_measurements

pytestmark = pytest.mark.usefixtures("single_thread")
ASYMMETRIC = np.array([[0.0, 0.2, 0.1], [0.1, 0.4, 0.0], [0.0, 0.1, 0.1]])
ESTIMATORS = [WienerRegressor, TotalVariationRegressor]
SMALL_TV = dict(n_iter=20)  # fewer ADMM iterations keep the tests fast


def dense_matrix(operator, side):
    """The operator as a dense matrix acting on flattened side x side images (float64)."""
    basis = torch.eye(side * side, dtype=torch.float64).reshape(-1, 1, side, side)
    return operator(basis).reshape(side * side, -1).T.numpy()


def dense_laplacian(side):
    """The circular 5-point Laplacian as a dense matrix on side x side images."""
    return dense_matrix(type("L", (Identity,), {"_forward": staticmethod(
        lambda x: 4 * x - sum(torch.roll(x, s, d) for s in (1, -1) for d in (-2, -1)))})(), side)


def tv_objective(x, d, weight):
    """0.5 ||x - d||^2 + weight * isotropic TV(x) with forward differences (Neumann)."""
    rows = np.diff(x, axis=-2, append=x[..., -1:, :])
    cols = np.diff(x, axis=-1, append=x[..., :, -1:])
    return 0.5 * ((x - d) ** 2).sum() + weight * np.sqrt(rows ** 2 + cols ** 2).sum()


def rectangles(n, side, rng):
    """Piecewise-constant images: a few random rectangles of random grey levels on a background."""
    images = np.full((n, side, side), 0.2)
    for image in images:
        for _ in range(4):
            top, left = rng.integers(0, side - 4, size=2)
            height, width = rng.integers(4, side // 2, size=2)
            image[top:top + height, left:left + width] = rng.uniform(0.1, 0.9)
    return images.astype(np.float32)


# --- Wiener ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", [gaussian_kernel(5, 1.0), ASYMMETRIC], ids=["gauss", "asym"])
@pytest.mark.parametrize("balance", [1e-3, 0.1])
def test_wiener_is_the_fourier_filter(kernel, balance):
    rng = np.random.default_rng(0)
    measured = rng.random((3, 12, 10)).astype(np.float32)  # predict computes in float64
    kh, kw = kernel.shape
    padded = np.zeros((12, 10))
    padded[:kh, :kw] = kernel
    transfer = np.fft.fft2(np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1)))
    fy, fx = np.meshgrid(np.fft.fftfreq(12), np.fft.fftfreq(10), indexing="ij")
    laplacian = 4 - 2 * np.cos(2 * np.pi * fy) - 2 * np.cos(2 * np.pi * fx)
    for regularizer, power in (("laplacian", laplacian ** 2), ("identity", 1.0)):
        expected = np.fft.ifft2(np.conj(transfer) * np.fft.fft2(measured)
                                / (np.abs(transfer) ** 2 + balance * power)).real
        est = WienerRegressor(Blur(kernel), balance=balance, regularizer=regularizer)
        np.testing.assert_allclose(est.fit(measured, measured).predict(measured), expected,
                                   atol=1e-6)


@pytest.mark.parametrize("kernel", [gaussian_kernel(5, 1.0), ASYMMETRIC], ids=["gauss", "asym"])
def test_wiener_matches_skimage(kernel, blurred):
    X, y = blurred
    for balance in (3e-3, 0.05):
        reference = np.stack([skimage_wiener(x.astype(np.float64), kernel, balance, clip=False)
                              for x in X[:4]])
        identity = np.stack([skimage_wiener(x.astype(np.float64), kernel, balance,
                                            reg=np.ones((1, 1)), clip=False) for x in X[:4]])
        est = WienerRegressor(Blur(kernel), balance=balance).fit(X, y)
        np.testing.assert_allclose(est.predict(X[:4]), reference, atol=1e-6)
        est.set_params(regularizer="identity")
        np.testing.assert_allclose(est.predict(X[:4]), identity, atol=1e-6)


@pytest.mark.parametrize("name", ["zero-boundary blur (CG)", "downsample", "mask", "identity"])
def test_wiener_laplacian_solves_the_normal_equations(name, operators):
    operator = operators[name]
    rng = np.random.default_rng(0)
    clean = rng.random((3, 8, 8))
    measured = make_measurements(clean, operator, noise_std=0.05, random_state=1)
    A, L = dense_matrix(operator, 8), dense_laplacian(8)
    d = measured.reshape(3, -1).astype(np.float32).astype(np.float64)  # predict uses float32
    expected = np.linalg.solve(A.T @ A + 0.05 * L.T @ L, A.T @ d.T).T.reshape(3, 8, 8)
    out = WienerRegressor(operator, balance=0.05).fit(measured, clean).predict(measured)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_wiener_with_identity_prior_is_tikhonov(any_operator):
    operator = any_operator
    clean = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    measured = make_measurements(clean, operator, noise_std=0.05, random_state=1)
    wiener = WienerRegressor(operator, balance=0.03, regularizer="identity").fit(measured, clean)
    tikhonov = TikhonovRegressor(operator, lam=0.03).fit(measured, clean)
    np.testing.assert_array_equal(wiener.predict(measured), tikhonov.predict(measured))


def test_laplacian_power_is_the_transfer_function_of_the_stencil():
    stencil = np.zeros((6, 9))
    stencil[0, 0], stencil[[1, -1], 0], stencil[0, [1, -1]] = 4, -1, -1
    expected = np.abs(np.fft.rfft2(stencil)) ** 2
    np.testing.assert_allclose(laplacian_power(6, 9).numpy(), expected, atol=1e-12)


def test_wiener_laplacian_needs_a_kernel_with_nonzero_sum(blurred):
    X, y = blurred
    est = WienerRegressor(Blur(np.array([[1.0, -1.0]]))).fit(X, y)
    with pytest.raises(ValueError, match="regularizer='identity'"):
        est.predict(X)
    assert np.isfinite(est.set_params(regularizer="identity").predict(X)).all()


# --- total variation ---------------------------------------------------------------------------

@pytest.mark.parametrize("weight", [0.02, 0.3])
@pytest.mark.parametrize("options", [dict(), dict(max_num_iter=4), dict(eps=0.0,
                                                                          max_num_iter=60)],
                         ids=["default", "capped", "no-tol"])
def test_denoise_tv_equals_skimage_per_image_and_channel(weight, options):
    images = np.random.default_rng(0).random((3, 2, 10, 13))
    expected = np.stack([denoise_tv_chambolle(image, weight=weight, channel_axis=0, **options)
                         for image in images])
    out = denoise_tv(torch.tensor(images), weight, max_iter=options.get("max_num_iter", 200),
                     tol=options.get("eps", 2e-4))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def test_tv_admm_reaches_the_denoising_minimum():
    noisy = np.random.default_rng(1).random((2, 1, 12, 12))
    weight = 0.1
    minimum = tv_objective(denoise_tv(torch.tensor(noisy), weight, max_iter=2000, tol=0.0)
                           .numpy(), noisy, weight)
    out = tv_deconvolve(Identity(), torch.tensor(noisy), weight, rho=1.0, n_iter=30,
                        tv_iter=20).numpy()
    assert minimum <= tv_objective(out, noisy, weight) < 1.005 * minimum
    assert tv_objective(out, noisy, weight) < 0.7 * tv_objective(noisy, noisy, weight)


@pytest.mark.parametrize("name", ["mask", "downsample", "asymmetric kernel"])
def test_tv_runs_on_every_operator(name, operators):
    operator = operators[name]
    clean = rectangles(4, 16, np.random.default_rng(0))
    X = make_measurements(clean, operator, noise_std=0.02, random_state=0)
    est = TotalVariationRegressor(operator, weight=5e-3, **SMALL_TV).fit(X, clean)
    out = est.predict(X)
    assert out.shape == clean.shape and np.isfinite(out).all()
    assert est.score(X, clean) > TikhonovRegressor(operator, lam=0.3).fit(X, clean).score(X, clean)


def test_tv_beats_tikhonov_on_piecewise_constant_images():
    rng = np.random.default_rng(0)
    train, test = rectangles(12, 16, rng), rectangles(8, 16, rng)
    blur = Blur(gaussian_kernel(5, 1.0))
    X_train = make_measurements(train, blur, noise_std=0.02, random_state=1)
    X_test = make_measurements(test, blur, noise_std=0.02, random_state=2)
    tuned, strongest = tune_strongest(blur, X_train, train, methods=["tikhonov", "tv"], cv=2)
    assert strongest == "tv"
    assert tuned["tv"].n_evaluated < len(TV_WEIGHT_GRID)  # coarse to fine
    tv, tikhonov = tuned["tv"].estimator, tuned["tikhonov"].estimator
    assert tv.score(X_test, test) > tikhonov.score(X_test, test) + 3.0  # measured: 4.9 dB


# --- the shared contract -----------------------------------------------------------------------

@pytest.mark.parametrize("cls", ESTIMATORS)
def test_layouts_kinds_and_batching(cls, blurred, blur):
    X, y = blurred
    X, y = X[:6], y[:6]
    params = SMALL_TV if cls is TotalVariationRegressor else {}
    est = cls(blur, **params).fit(X, y)
    assert (est.image_shape_, est.n_channels_, est.n_features_in_) == ((1, 16, 16), 1, 256)
    out = est.predict(X)
    assert out.dtype == np.float32 and out.shape == X.shape
    np.testing.assert_allclose(np.concatenate([est.predict(X[i:i + 1]) for i in range(6)]), out,
                               atol=1e-6)
    np.testing.assert_allclose(est.predict(X[:, None])[:, 0], out)
    np.testing.assert_allclose(est.predict(X.reshape(6, -1)), out.reshape(6, -1))
    torch_out = est.predict(torch.tensor(X, dtype=torch.float64))
    assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.float64
    np.testing.assert_allclose(torch_out.numpy(), out, atol=1e-6)
    assert est.score(X, y) == pytest.approx(psnr(y, out))
    assert psnr_scorer(est, X, y) == pytest.approx(est.score(X, y))
    # RGB: every channel is reconstructed as the grey image it holds
    rgb = np.stack([X, X[::-1], X[:, ::-1]], axis=1)
    rgb_out = cls(blur, **params).fit(rgb, np.stack([y, y[::-1], y[:, ::-1]], axis=1)).predict(rgb)
    assert rgb_out.shape == (6, 3, 16, 16)
    np.testing.assert_allclose(rgb_out[:, 0], out, atol=1e-6)
    np.testing.assert_allclose(rgb_out[:, 2], est.predict(X[:, ::-1].copy()), atol=1e-6)
    # 2-D rows of a non-square image with an explicit image_shape
    flat = cls(blur, image_shape=(1, 8, 32), **params).fit(X.reshape(6, -1), y.reshape(6, -1))
    np.testing.assert_allclose(flat.predict(X.reshape(6, -1)),
                               est.predict(X.reshape(6, 8, 32)).reshape(6, -1), atol=1e-6)


@pytest.mark.parametrize("cls, key, grid", [
    (WienerRegressor, "balance", [1e-5, 3e-3, 1.0]),
    (TotalVariationRegressor, "weight", [1e-5, 1e-3, 0.1]),
])
def test_grid_search_picks_an_interior_weight(cls, key, grid, blurred, blur):
    X, y = blurred
    params = SMALL_TV if cls is TotalVariationRegressor else {}
    search = GridSearchCV(cls(blur, **params), {key: grid}, scoring=psnr_scorer, cv=2)
    search.fit(X[:16], y[:16])
    assert search.best_params_[key] == grid[1]
    assert search.best_score_ > psnr(y[:16], X[:16])


def test_module_grids():
    for grid in (BALANCE_GRID, TV_WEIGHT_GRID):
        assert isinstance(grid, tuple) and len(grid) >= 9
        assert all(isinstance(v, float) and v > 0 for v in grid) and list(grid) == sorted(grid)
    assert WienerRegressor().balance in BALANCE_GRID or \
        min(BALANCE_GRID) < WienerRegressor().balance < max(BALANCE_GRID)
    assert min(TV_WEIGHT_GRID) < TotalVariationRegressor().weight < max(TV_WEIGHT_GRID)


def test_tune_strongest_tunes_every_baseline_on_one_subset(blurred, blur):
    X, y = blurred
    tuned, strongest = tune_strongest(blur, X, y, methods=["tikhonov", "wiener"], max_samples=24)
    assert list(tuned) == ["tikhonov", "wiener"]
    assert strongest == max(tuned, key=lambda key: tuned[key].cv_psnr)
    for key, baseline in tuned.items():
        grid = tuning.BASELINES[key].grid
        assert baseline.value in grid and baseline.n_evaluated == len(grid)  # exhaustive
        assert baseline.n_samples == 24 and baseline.seconds > 0
        assert baseline.estimator.get_params()[baseline.param] == baseline.value
        assert baseline.estimator.image_shape_ == (1, 16, 16)
    # the documented subset and folds: GridSearchCV there agrees
    chosen = np.random.default_rng(0).permutation(len(X))[:24]
    search = GridSearchCV(TikhonovRegressor(blur), {"lam": list(LAM_GRID)}, scoring=psnr_scorer,
                          cv=3).fit(X[chosen], y[chosen])
    assert tuned["tikhonov"].value == search.best_params_["lam"]
    assert tuned["tikhonov"].cv_psnr == pytest.approx(search.best_score_)
    with pytest.raises(ValueError, match="methods must be among"):
        tune_strongest(blur, X, y, methods=["ridge"])


def test_coarse_to_fine_search_finds_the_exhaustive_choice(blurred, blur, monkeypatch):
    X, y = blurred
    exhaustive = tune_strongest(blur, X, y, methods=["tikhonov"])[0]["tikhonov"]
    monkeypatch.setitem(tuning.BASELINES, "tikhonov",
                        dataclasses.replace(tuning.BASELINES["tikhonov"], coarse_step=3))
    coarse = tune_strongest(blur, X, y, methods=["tikhonov"])[0]["tikhonov"]
    assert (coarse.value, coarse.cv_psnr) == (exhaustive.value, exhaustive.cv_psnr)
    assert coarse.n_evaluated <= 10 + 4 < exhaustive.n_evaluated == len(LAM_GRID)
    monkeypatch.setitem(tuning.BASELINES, "tikhonov",
                        dataclasses.replace(tuning.BASELINES["tikhonov"], grid=(0.01,)))
    single = tune_strongest(blur, X, y, methods=["tikhonov"])[0]["tikhonov"]
    assert (single.value, single.n_evaluated) == (0.01, 1)


# --- bad inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, params", [
    (WienerRegressor, dict(balance=0.0)), (WienerRegressor, dict(balance=-1.0)),
    (WienerRegressor, dict(balance=np.nan)), (WienerRegressor, dict(balance=np.inf)),
    (WienerRegressor, dict(regularizer="tv")),
    (TotalVariationRegressor, dict(weight=-1e-3)), (TotalVariationRegressor, dict(weight=0.0)),
    (TotalVariationRegressor, dict(weight=np.nan)), (TotalVariationRegressor, dict(rho=0.0)),
    (TotalVariationRegressor, dict(rho=np.inf)), (TotalVariationRegressor, dict(n_iter=0)),
    (TotalVariationRegressor, dict(n_iter=1.5)), (TotalVariationRegressor, dict(tv_iter=0)),
    (TotalVariationRegressor, dict(tv_tol=-1.0)), (TotalVariationRegressor, dict(tv_tol=np.nan)),
    (TotalVariationRegressor, dict(n_threads=0)),
], ids=repr)
def test_bad_hyperparameters_name_the_argument(cls, params, blurred):
    X, y = blurred
    (name, _), = params.items()
    with pytest.raises(ValueError, match=f"'{name}' parameter of {cls.__name__}"):
        cls(Identity(), **params).fit(X, y)
