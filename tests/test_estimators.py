"""ImplicitRegressor and its task subclasses: the scikit-learn contract, layouts, statistics,
noise handling, bad input, composition with scikit-learn tools, and a small training run."""

import copy
import pickle
import time

import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from implicit_inverse import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                              ImplicitRegressor, ImplicitSuperResolutionRegressor,
                              TikhonovRegressor)
from implicit_inverse.datasets import load_faces
from implicit_inverse.equilibrium import SolverStats
from implicit_inverse.metrics import psnr, psnr_scorer
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import (Blur, Downsample, Identity, Mask, gaussian_kernel,
                                        make_measurements)

pytestmark = pytest.mark.filterwarnings("error::implicit_inverse.equilibrium.ConvergenceWarning")

FITTED = ("net_", "operator_", "n_channels_", "image_shape_", "lam_", "noise_std_",
          "n_features_in_", "n_iter_")


def tiny_regularizer(seed=0):
    """A 3-layer, 8-channel DnCNN behind a Tikhonov term (alpha 0.01): trains in milliseconds.

    Seeded (without touching torch's global generator), so two calls give equal modules.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.01)


def tiny(cls=ImplicitDeblurRegressor, **params):
    """An estimator that fits in well under a second on 16 images of 16 x 16."""
    defaults = dict(regularizer=tiny_regularizer(), max_epochs=1, batch_size=16, max_iter=20,
                    random_state=0)
    return cls(**{**defaults, **params})


def deblur(blur, **params):
    return tiny(ImplicitDeblurRegressor, operator=blur, **params)


# -- the scikit-learn contract ------------------------------------------------------------------
def test_fit_returns_self_and_sets_fitted_attributes(blurred, blur):
    X, y = blurred
    est = deblur(blur, max_epochs=2)
    assert not [name for name in vars(est) if name.endswith("_")]
    assert est.fit(X[:16], y[:16]) is est
    for name in FITTED:
        assert hasattr(est, name), name
    assert est.n_channels_ == 1
    assert est.image_shape_ == (1, 16, 16)
    assert est.n_features_in_ == 256
    assert est.n_iter_ == 2 == len(est.history)
    assert est.lam_ > 0 and est.noise_std_ >= 0
    # fit never adds public attributes that do not end in "_"
    assert set(name for name in vars(est) if not name.endswith("_")) == set(est.get_params())


@pytest.mark.parametrize("est", [ImplicitDeblurRegressor(), ImplicitSuperResolutionRegressor(),
                                 ImplicitInpaintingRegressor(), ImplicitRegressor(Identity())],
                         ids=lambda est: type(est).__name__)
def test_predict_score_history_before_fit_raise_not_fitted(est, blurred):
    X, y = blurred
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(NotFittedError):
        est.score(X, y)
    with pytest.raises(NotFittedError):
        est.history  # noqa: B018


def test_fixed_random_state_gives_identical_predictions(blurred, blur):
    X, y = blurred
    first = deblur(blur, regularizer=None, max_epochs=2, batch_size=8).fit(X[:16], y[:16])
    second = deblur(blur, regularizer=None, max_epochs=2, batch_size=8).fit(X[:16], y[:16])
    other = deblur(blur, regularizer=None, max_epochs=2, batch_size=8,
                   random_state=1).fit(X[:16], y[:16])
    np.testing.assert_array_equal(first.predict(X[16:]), second.predict(X[16:]))
    assert not np.array_equal(first.predict(X[16:]), other.predict(X[16:]))
    # predict adds no noise and keeps no state between calls
    np.testing.assert_array_equal(first.predict(X[16:]), first.predict(X[16:]))


def test_clone_gives_unfitted_copy_that_refits_identically(blurred, blur):
    X, y = blurred
    est = deblur(blur).fit(X[:16], y[:16])
    twin = clone(est)
    assert not hasattr(twin, "net_")
    assert twin.get_params().keys() == est.get_params().keys()
    assert twin.eta == est.eta and twin.noise_std == est.noise_std
    np.testing.assert_array_equal(twin.fit(X[:16], y[:16]).predict(X[16:]), est.predict(X[16:]))


@pytest.mark.parametrize("make", [
    lambda blur: deblur(blur),
    lambda blur: tiny(ImplicitInpaintingRegressor, fraction=0.6, lam=0.01),
    lambda blur: tiny(ImplicitRegressor, operator=Identity(), gradient="exact"),
], ids=["deblur", "inpainting", "identity-exact"])
def test_pickle_round_trip_keeps_predictions(make, faces, blur):
    est = make(blur)
    X = make_measurements(faces, est._make_operator(), noise_std=0.01, random_state=0)
    est.fit(X[:16], faces[:16])
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X[16:]), est.predict(X[16:]))
    assert restored.score(X[16:], faces[16:]) == est.score(X[16:], faces[16:])


def test_get_params_set_params_round_trip(blur):
    est = ImplicitDeblurRegressor(operator=blur, eta=0.7, noise_std=0.02, gradient="exact")
    params = est.get_params()
    assert {"operator", "regularizer", "eta", "noise_std", "gradient", "solver", "max_iter",
            "tol", "device", "kernel_size", "kernel_sigma"} <= params.keys()
    twin = ImplicitDeblurRegressor().set_params(**params)
    assert twin.get_params() == params
    assert est.set_params(eta=0.3, noise_std=0.0, max_iter=7) is est
    assert (est.eta, est.noise_std, est.max_iter) == (0.3, 0.0, 7)
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(not_a_parameter=1)


def test_fit_never_modifies_the_regularizer_passed_in(blurred, blur):
    X, y = blurred
    regularizer = tiny_regularizer()
    before = copy.deepcopy(regularizer.state_dict())
    est = deblur(blur, regularizer=regularizer, max_epochs=2).fit(X[:16], y[:16])
    after = regularizer.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert est.regularizer is regularizer  # the parameter is kept as given
    trained = est.net_.module_.layer.map.regularizer
    assert trained is not regularizer
    changed = [key for key, value in trained.state_dict().items()
               if not torch.equal(value, before[key])]
    assert changed, "training should have moved the copy's parameters"


def test_fit_and_predict_do_not_modify_inputs(blurred, blur):
    X, y = blurred
    X_torch, y_torch = torch.tensor(X[:16]), torch.tensor(y[:16])
    X_copy, y_copy = X_torch.clone(), y_torch.clone()
    est = deblur(blur).fit(X_torch, y_torch)
    est.predict(X_torch)
    assert torch.equal(X_torch, X_copy) and torch.equal(y_torch, y_copy)


# -- layouts, dtypes and array kinds ------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(blurred, blur):
    X, y = blurred
    return deblur(blur, max_epochs=2).fit(X[:16], y[:16])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_output_keeps_layout_and_dtype(fitted, blurred, dtype):
    X, _ = blurred
    out3 = fitted.predict(X[16:].astype(dtype))
    assert isinstance(out3, np.ndarray) and out3.shape == (16, 16, 16) and out3.dtype == dtype
    out4 = fitted.predict(X[16:, None].astype(dtype))
    assert out4.shape == (16, 1, 16, 16) and out4.dtype == dtype
    np.testing.assert_allclose(out4[:, 0], out3, atol=1e-6)
    assert np.isfinite(out3).all()


def test_float64_training_data_accepted(blurred, blur):
    X, y = blurred
    est32 = deblur(blur).fit(X[:16], y[:16])
    est64 = deblur(blur).fit(X[:16].astype(np.float64), y[:16].astype(np.float64))
    out = est64.predict(X[16:].astype(np.float64))
    assert out.dtype == np.float64
    # the computation runs in float32 either way: float32 data in float64 gives the same model
    np.testing.assert_array_equal(out.astype(np.float32), est32.predict(X[16:]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_input_gives_torch_output(fitted, blurred, dtype):
    X, y = blurred
    out = fitted.predict(torch.tensor(X[16:], dtype=dtype))
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (16, 16, 16)
    np.testing.assert_allclose(out.numpy(), fitted.predict(X[16:]), atol=1e-6)
    assert fitted.score(torch.tensor(X[16:]), torch.tensor(y[16:])) == pytest.approx(
        fitted.score(X[16:], y[16:]))


def test_score_is_mean_psnr(fitted, blurred):
    X, y = blurred
    assert fitted.score(X[16:], y[16:]) == pytest.approx(psnr(y[16:], fitted.predict(X[16:])))
    assert psnr_scorer(fitted, X[16:], y[16:]) == pytest.approx(fitted.score(X[16:], y[16:]))


def test_flattened_square_images_match_the_image_layout(blurred, blur):
    X, y = blurred
    flat = deblur(blur).fit(X[:16].reshape(16, -1), y[:16].reshape(16, -1))
    images = deblur(blur).fit(X[:16], y[:16])
    assert flat.image_shape_ == (1, 16, 16) and flat.n_features_in_ == 256
    out = flat.predict(X[16:].reshape(16, -1))
    assert out.shape == (16, 256)
    np.testing.assert_allclose(out.reshape(16, 16, 16), images.predict(X[16:]), atol=1e-6)
    with pytest.raises(ValueError, match="X has 100 features, but ImplicitDeblurRegressor is "
                                         "expecting 256 features"):
        flat.predict(np.zeros((2, 100), dtype=np.float32))


def test_flattened_rectangular_images_need_image_shape(blur):
    clean = load_faces(size=20, n=16)[:, 4:16, :]  # 12 x 20
    X = make_measurements(clean, blur, noise_std=0.01, random_state=0)
    X2, y2 = X.reshape(16, -1), clean.reshape(16, -1)
    with pytest.raises(ValueError, match=r"X of shape \(1, 1, 240\) cannot be handled"):
        deblur(blur).fit(X2, y2)  # inferred as one row of 240 pixels: the 5 x 5 kernel is taller
    est = deblur(blur, image_shape=(1, 12, 20)).fit(X2, y2)
    assert est.image_shape_ == (1, 12, 20)
    out = est.predict(X2)
    assert out.shape == (16, 240)
    with pytest.raises(ValueError, match="image_shape"):
        deblur(blur, image_shape=(12, 20)).fit(X2, y2)


def test_multichannel_images_with_default_regularizer(faces, blur):
    clean = np.stack([faces, faces[:, ::-1]], axis=1)  # (32, 2, 16, 16)
    X = make_measurements(clean, blur, noise_std=0.01, random_state=0)
    est = deblur(blur, regularizer=None).fit(X[:16], clean[:16])
    assert est.n_channels_ == 2 and est.image_shape_ == (2, 16, 16)
    assert est.predict(X[16:]).shape == (16, 2, 16, 16)
    with pytest.raises(ValueError, match="X has 1 channels but the model was fitted on 2"):
        est.predict(X[16:, :1])


# -- solver statistics --------------------------------------------------------------------------
@pytest.mark.parametrize("gradient", ["jfb", "exact"])
def test_history_records_solver_statistics(blurred, blur, gradient):
    X, y = blurred
    est = deblur(blur, gradient=gradient, max_epochs=2, batch_size=8).fit(X[:16], y[:16])
    keys = {"fp_iter", "fp_iter_max", "fp_conv", "fp_res", "skipped"}
    if gradient == "exact":
        keys |= {"bw_iter", "bw_iter_max", "bw_conv"}
    for epoch in est.history:
        assert keys <= epoch.keys(), keys - epoch.keys()
        assert 1 <= epoch["fp_iter"] <= epoch["fp_iter_max"] <= est.max_iter
        assert 0 <= epoch["fp_conv"] <= 1 and epoch["fp_res"] >= 0
        assert epoch["skipped"] == 0
        assert np.isfinite(epoch["train_loss"])
        assert len(epoch["batches"]) == 2
    if gradient == "jfb":
        assert "bw_iter" not in est.history[-1]


def test_predict_with_stats_returns_per_sample_stats(fitted, blurred):
    X, _ = blurred
    images, stats = fitted.predict_with_stats(X[16:])
    np.testing.assert_array_equal(images, fitted.predict(X[16:]))
    assert isinstance(stats, SolverStats)
    assert stats.converged.shape == (16,) and stats.converged.dtype == torch.bool
    assert stats.iterations.shape == (16,) and stats.residual.shape == (16,)
    assert bool(stats.converged.all()) and (stats.iterations <= fitted.max_iter).all()


def test_predict_return_stats_still_works_with_a_future_warning(fitted, blurred):
    X, _ = blurred
    with pytest.warns(FutureWarning, match="use predict_with_stats"):
        images, stats = fitted.predict(X[16:], return_stats=True)
    expected, expected_stats = fitted.predict_with_stats(X[16:])
    np.testing.assert_array_equal(images, expected)
    torch.testing.assert_close(stats.iterations, expected_stats.iterations)


def test_predict_in_chunks_reports_stats_for_every_sample(blurred, blur):
    X, y = blurred
    est = deblur(blur, batch_size=2).fit(X[:16], y[:16])  # predict chunks of 8 images
    images, stats = est.predict_with_stats(X)
    assert images.shape == (32, 16, 16) and stats.converged.shape == (32,)


# -- noise_std semantics --------------------------------------------------------------------------
def test_noise_std_auto_estimates_the_measurement_noise(faces, blur):
    for true_std in (0.01, 0.05):
        X = make_measurements(faces, blur, noise_std=true_std, random_state=1)
        est = deblur(blur, noise_std="auto").fit(X, faces)
        assert est.noise_std_ == pytest.approx(true_std, rel=0.05)


def test_noise_std_zero_trains_on_noiseless_measurements(blurred, blur):
    X, y = blurred
    est = deblur(blur, noise_std=0.0, augment=False).fit(X[:16], y[:16])
    assert est.noise_std_ == 0.0
    sampler = est.net_.training_measurements
    measured, clean = sampler(torch.tensor(y[:16, None]))[:2]
    torch.testing.assert_close(clean, torch.tensor(y[:16, None]), rtol=0, atol=0)
    torch.testing.assert_close(measured, blur(torch.tensor(y[:16, None])), rtol=0, atol=1e-6)


def test_noise_std_float_is_the_noise_of_every_fresh_batch(blurred, blur):
    X, y = blurred  # X carries noise of std 0.01: replaced, not added to
    est = deblur(blur, noise_std=0.05, augment=False).fit(X[:16], y[:16])
    assert est.noise_std_ == 0.05
    sampler = est.net_.training_measurements
    clean = torch.tensor(y[:16, None])
    first, second = sampler(clean)[0], sampler(clean)[0]
    assert float((first - blur(clean)).std()) == pytest.approx(0.05, rel=0.1)
    assert not torch.equal(first, second)


# -- the task estimators -------------------------------------------------------------------------
def test_super_resolution_from_8x8_to_16x16(faces):
    X = make_measurements(faces, Downsample(2), noise_std=0.01, random_state=0)
    assert X.shape == (32, 8, 8)
    # the default regularizer starts at alpha = lam_ ("auto"); the tiny one (alpha 0.01) needs
    # lam=0.01, as for a mask: "auto" picks a small lam here and the map would amplify alpha / lam
    est = tiny(ImplicitSuperResolutionRegressor, factor=2, regularizer=None).fit(X[:16],
                                                                                  faces[:16])
    assert est.image_shape_ == (1, 8, 8) and est.n_features_in_ == 64
    out = est.predict(X[16:])
    assert out.shape == (16, 16, 16)
    assert est.score(X[16:], faces[16:]) > psnr(faces[16:], np.kron(X[16:], np.ones((2, 2))))
    flat = tiny(ImplicitSuperResolutionRegressor, factor=2, lam=0.01).fit(X[:16].reshape(16, 64),
                                                                faces[:16].reshape(16, 256))
    assert flat.predict(X[16:].reshape(16, 64)).shape == (16, 256)
    with pytest.raises(ValueError, match="X and y do not match through the operator"):
        tiny(ImplicitSuperResolutionRegressor, factor=4).fit(X[:16], faces[:16])


def test_inpainting_with_a_drawn_mask(faces):
    operator = Mask(fraction=0.6, random_state=3)
    X = make_measurements(faces, operator, noise_std=0.01, random_state=0)
    # lam = the tiny regularizer's alpha: "auto" would pick a tiny lam for a mask (unobserved
    # pixels are 0 whatever lam), and the preconditioned map would amplify alpha / lam
    est = tiny(ImplicitInpaintingRegressor, fraction=0.6, mask_seed=3, lam=0.01)
    est.fit(X[:16], faces[:16])
    assert est.predict(X[16:]).shape == (16, 16, 16)
    assert est.score(X[16:], faces[16:]) > psnr(faces[16:], X[16:])
    # a drawn mask adapts to the image size: other sizes are accepted
    small = load_faces(size=12, n=4)
    assert est.predict(make_measurements(small, operator)).shape == (4, 12, 12)


def test_inpainting_with_a_fixed_mask_refuses_other_sizes(faces):
    mask = np.random.default_rng(0).random((16, 16)) < 0.6
    X = make_measurements(faces, Mask(mask), noise_std=0.01, random_state=0)
    est = tiny(ImplicitInpaintingRegressor, mask=mask, lam=0.01).fit(X[:16], faces[:16])
    assert est.predict(X[16:]).shape == (16, 16, 16)
    small = load_faces(size=12, n=4)
    with pytest.raises(ValueError, match=r"mask of shape \(16, 16\) does not match"):
        est.predict(small)
    with pytest.raises(ValueError, match=r"mask of shape \(16, 16\) does not match"):
        tiny(ImplicitInpaintingRegressor, mask=mask, lam=0.01).fit(small, small)


def test_deblur_builds_its_default_operator(faces):
    X = make_measurements(faces, Blur(gaussian_kernel(3, 0.8)), noise_std=0.01, random_state=0)
    est = tiny(ImplicitDeblurRegressor, kernel_size=3, kernel_sigma=0.8).fit(X[:16], faces[:16])
    assert isinstance(est.operator_, Blur) and est.operator_.kernel.shape == (3, 3)
    assert est.operator is None


def test_partial_fit_adds_one_epoch(blurred, blur):
    X, y = blurred
    est = deblur(blur)
    est.partial_fit(X[:16], y[:16])
    est.partial_fit(X[:16], y[:16])
    assert est.n_iter_ == 2


def test_failed_refit_does_not_leave_a_mixed_model(blurred, blur):
    X, y = blurred
    est = deblur(blur).fit(X[:16], y[:16])
    est.set_params(regularizer=nn.Conv2d(1, 1, 3))  # shrinks the image: refused in fit
    with pytest.raises(ValueError, match="regularizer"):
        est.fit(X[:16], y[:16])
    with pytest.raises(NotFittedError):
        est.predict(X[16:])


# -- composition with scikit-learn tools ---------------------------------------------------------
def test_pipeline_with_identity_transformer(blurred, blur):
    X, y = blurred
    pipe = Pipeline([("identity", FunctionTransformer()), ("model", deblur(blur))])
    pipe.fit(X[:16], y[:16])
    assert pipe.predict(X[16:]).shape == (16, 16, 16)
    assert pipe.score(X[16:], y[16:]) == pytest.approx(pipe[-1].score(X[16:], y[16:]))


def test_cross_val_score_with_psnr_scorer(blurred, blur):
    X, y = blurred
    scores = cross_val_score(deblur(blur), X[:16], y[:16], cv=2, scoring=psnr_scorer)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert (scores > psnr(y[:16], X[:16])).all()


def test_grid_search_over_eta_and_noise_std(blurred, blur):
    X, y = blurred
    # noise_std is the noise of the training measurements: 0 would train a model for noiseless
    # data (lam near 0), which the noisy test folds then break; search over noisy levels
    grid = {"eta": [0.5, 1.0], "noise_std": [0.005, 0.02]}
    search = GridSearchCV(deblur(blur), grid, scoring=psnr_scorer, cv=2)
    search.fit(X[:16], y[:16])
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["eta"] in grid["eta"]
    assert search.best_params_["noise_std"] in grid["noise_std"]
    best = search.best_estimator_
    assert best.noise_std_ == search.best_params_["noise_std"]
    assert search.predict(X[16:]).shape == (16, 16, 16)


def test_documented_user_example(blurred):
    # as in the issue: Blur(gaussian_kernel(9, 1.5)) and GridSearchCV(cv=3)
    X, y = blurred
    operator = Blur(gaussian_kernel(9, 1.5))
    measured = make_measurements(y, operator, noise_std=0.01, random_state=0)
    est = ImplicitDeblurRegressor(operator=operator, eta=1.0, noise_std=0.01, gradient="jfb",
                                  regularizer=tiny_regularizer(), max_epochs=1, random_state=0)
    assert est.fit(measured[:24], y[:24]) is est
    restored = est.predict(measured[24:])
    assert restored.shape == measured[24:].shape and restored.dtype == measured.dtype
    assert est.score(measured[24:], y[24:]) > psnr(y[24:], measured[24:])
    search = GridSearchCV(est, {"eta": [0.5, 1.0], "noise_std": [0.005, 0.01]},
                          scoring=psnr_scorer, cv=3)
    assert search.fit(measured[:24], y[:24]).best_estimator_.predict(measured[24:]).shape \
        == (8, 16, 16)


# -- bad input: a clear error naming the argument, before any training ----------------------------
def _with(values, index, value):
    values = np.array(values)
    values[index] = value
    return values


RESHAPED = "X must be images shaped"
BAD_DATA = {  # name: (make the bad pair from good (X, y), error, message)
    "nan in X": (lambda X, y: (_with(X, (3, 2, 5), np.nan), y), ValueError, "X contains NaN"),
    "inf in X": (lambda X, y: (_with(X, (0, 0, 0), np.inf), y), ValueError,
                 "X contains NaN or inf"),
    "nan in y": (lambda X, y: (X, _with(y, (15, 15, 15), np.nan)), ValueError,
                 "y contains NaN"),
    "-inf in y": (lambda X, y: (X, _with(y, (1, 1, 1), -np.inf)), ValueError,
                  "y contains NaN or inf"),
    "sample counts": (lambda X, y: (X, y[:-1]), ValueError,
                      "X and y have different numbers of samples"),
    "1-D X": (lambda X, y: (X.ravel(), y), ValueError, RESHAPED),
    "5-D X": (lambda X, y: (X[:, None, None], y), ValueError, RESHAPED),
    "1-D y": (lambda X, y: (X, y[:, 0, 0]), ValueError, "y must be images shaped"),
    "y shaped unlike X": (lambda X, y: (X, y[:, :12, :12]), ValueError, "X and y do not match"),
    "flat y too short": (lambda X, y: (X, y.reshape(16, -1)[:, :100]), ValueError,
                         "y has 100 features per row"),
    "string X": (lambda X, y: (np.full(X.shape, "a"), y), TypeError,
                 "X must be an array of real numbers"),
    "object y": (lambda X, y: (X, np.full(y.shape, "a", dtype=object)), TypeError,
                 "y must be an array of real numbers"),
    "None in y": (lambda X, y: (X, np.full(y.shape, None)), TypeError,
                  "y must be an array of real numbers"),
    "ragged X": (lambda X, y: ([[0.0, 1.0], [0.0]], y), TypeError,
                 "X must be an array of real numbers"),
    "integer X": (lambda X, y: ((X * 255).astype(np.uint8), y), TypeError,
                  "X must be floating point"),
    "bool y": (lambda X, y: (X, y > 0.5), TypeError, "y must be real floating"),
    "complex X": (lambda X, y: (X + 0j, y), ValueError, "Complex data not supported: X"),
    "empty X": (lambda X, y: (X[:0], y[:0]), ValueError, "X is empty"),
    "empty images": (lambda X, y: (X[:, :0], y), ValueError, "X is empty"),
    "single sample": (lambda X, y: (X[:1], y[:1]), ValueError, "X has n_samples = 1"),
    "y is None": (lambda X, y: (X, None), ValueError, "requires y to be passed"),
    "one value per sample": (lambda X, y: (X[:, :1, 0], y[:, :1, 0]), ValueError,
                             r"X has 1 feature\(s\)"),
    "sparse X": (lambda X, y: (scipy.sparse.csr_matrix(X.reshape(16, -1)), y), TypeError,
                 "X is a sparse matrix"),
}


@pytest.mark.parametrize("case", list(BAD_DATA), ids=list(BAD_DATA))
def test_bad_data_is_refused_before_training(case, blurred, blur):
    make_bad, error, match = BAD_DATA[case]
    X, y = make_bad(blurred[0][:16], blurred[1][:16])
    est = deblur(blur)
    with pytest.raises(error, match=match):
        est.fit(X, y)
    assert not hasattr(est, "net_")


@pytest.mark.parametrize("case", ["nan in X", "1-D X", "string X", "complex X", "empty X"])
def test_bad_data_is_refused_by_predict(case, fitted, blurred):
    make_bad, error, match = BAD_DATA[case]
    X, _ = make_bad(blurred[0][:16], blurred[1][:16])
    with pytest.raises(error, match=match):
        fitted.predict(X)


class ShapeChanging(nn.Module):
    def forward(self, x):
        return x[..., 1:, :]


class Failing(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


BAD_PARAMS = {
    "eta=0": (dict(eta=0.0), "eta"),
    "eta<0": (dict(eta=-1.0), "eta"),
    "eta=inf": (dict(eta=np.inf), "eta"),
    "noise_std<0": (dict(noise_std=-0.01), "noise_std"),
    "noise_std=nan": (dict(noise_std=np.nan), "noise_std"),
    "noise_std string": (dict(noise_std="high"), "noise_std"),
    "gradient": (dict(gradient="backprop"), "gradient"),
    "solver": (dict(solver="newton"), "solver"),
    "max_iter=0": (dict(max_iter=0), "max_iter"),
    "max_iter float": (dict(max_iter=2.5), "max_iter"),
    "tol<0": (dict(tol=-1e-3), "tol"),
    "train_tol<0": (dict(train_tol=-1e-3), "train_tol"),
    "train_tol=nan": (dict(train_tol=np.nan), "train_tol"),
    "train_max_iter=0": (dict(train_max_iter=0), "train_max_iter"),
    "train_max_iter bool": (dict(train_max_iter=True), "train_max_iter"),
    "lam=0": (dict(lam=0.0), "lam"),
    "lr=0": (dict(lr=0.0), "lr"),
    "batch_size=0": (dict(batch_size=0), "batch_size"),
    "max_epochs=0": (dict(max_epochs=0), "max_epochs"),
    "pretrain_epochs<0": (dict(pretrain_epochs=-1), "pretrain_epochs"),
    "pretrain_epochs bool": (dict(pretrain_epochs=True), "pretrain_epochs"),
    "device": (dict(device="tpu"), "device"),
    "image_shape": (dict(image_shape=(1, 0, 16)), "image_shape"),
    "regularizer type": (dict(regularizer="dncnn"), "regularizer"),
    "regularizer shape": (dict(regularizer=ShapeChanging()), "regularizer must return images"),
    "regularizer conv": (dict(regularizer=nn.Conv2d(1, 1, 3)), "regularizer must return images"),
    "regularizer fails": (dict(regularizer=Failing()), "regularizer failed"),
    "kernel_size": (dict(kernel_size=0, operator=None), "kernel_size"),
    "loss": (dict(loss="l1"), "loss"),
    "jacobian_penalty<0": (dict(jacobian_penalty=-1.0), "jacobian_penalty"),
    "jacobian_penalty=nan": (dict(jacobian_penalty=np.nan), "jacobian_penalty"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS), ids=list(BAD_PARAMS))
def test_bad_hyperparameters_are_refused_before_training(case, blurred, blur):
    params, match = BAD_PARAMS[case]
    X, y = blurred
    est = tiny(ImplicitDeblurRegressor, **{"operator": blur, **params})
    with pytest.raises(ValueError, match=match):
        est.fit(X[:16], y[:16])
    assert not hasattr(est, "net_")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error(blurred, blur):
    X, y = blurred
    with pytest.raises(ValueError, match="device='cuda' was requested but CUDA is not available"):
        deblur(blur, device="cuda").fit(X[:16], y[:16])


def test_operator_is_required():
    X = np.zeros((4, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="operator is required"):
        ImplicitRegressor().fit(X, X)
    with pytest.raises(ValueError, match="operator"):
        ImplicitRegressor(operator="blur").fit(X, X)


# -- a small training run on faces ----------------------------------------------------------------
@pytest.mark.slow
def test_training_on_faces_beats_the_measurements():
    faces = load_faces(size=24)
    train, test = faces[:60], faces[90:]
    operator = Blur(gaussian_kernel(5, 1.0))
    X_train = make_measurements(train, operator, noise_std=0.01, random_state=0)
    X_test = make_measurements(test, operator, noise_std=0.01, random_state=1)

    rows = {"measurement": (psnr(test, X_test), 0.0)}
    start = time.perf_counter()
    search = GridSearchCV(TikhonovRegressor(operator), {"lam": np.logspace(-4, 0, 9)},
                          scoring=psnr_scorer, cv=3).fit(X_train, train)
    rows[f"Tikhonov (lam={search.best_params_['lam']:.2g})"] = (
        search.score(X_test, test), time.perf_counter() - start)
    models = {}
    for gradient in ("jfb", "exact"):
        start = time.perf_counter()
        est = ImplicitDeblurRegressor(operator=operator, noise_std=0.01, gradient=gradient,
                                      max_epochs=4, batch_size=20, random_state=0)
        est.fit(X_train, train)
        models[gradient] = est
        rows[f"implicit, {gradient} (lam_={est.lam_:.2g})"] = (
            est.score(X_test, test), time.perf_counter() - start)
    print("\nheld-out faces (10 of 24 x 24, blur 5x5 sigma 1, noise 0.01; shown with -s)")
    print(f"{'method':<32}{'PSNR (dB)':>10}{'time (s)':>10}")
    for name, (value, seconds) in rows.items():
        print(f"{name:<32}{value:>10.2f}{seconds:>10.1f}")
    measured = rows["measurement"][0]
    tikhonov = search.score(X_test, test)
    for gradient, est in models.items():
        losses = est.history[:, "train_loss"]
        assert np.isfinite(losses).all(), gradient
        assert sum(est.history[:, "skipped"]) == 0, gradient
        assert np.isfinite(est.predict(X_test)).all()
        score = est.score(X_test, test)
        assert score > measured + 1.0, gradient
        assert score > tikhonov - 0.5, gradient  # starts at Tikhonov and must not fall far below
    assert tikhonov > measured


# -- operators named by a kernel spec ------------------------------------------------------------
def test_operator_spec_gives_the_blur_it_names(blurred, blur):
    X, y = blurred
    named = deblur("gaussian:5,1").fit(X[:16], y[:16])
    given = deblur(blur).fit(X[:16], y[:16])
    assert named.get_params()["operator"] == "gaussian:5,1"
    assert isinstance(named.operator_, Blur)
    np.testing.assert_array_equal(named.predict(X[16:]), given.predict(X[16:]))
    assert clone(named).get_params()["operator"] == "gaussian:5,1"


@pytest.mark.parametrize("cls", [ImplicitRegressor, ImplicitDeblurRegressor, TikhonovRegressor])
def test_bad_operator_spec_is_a_clear_error(cls, blurred):
    X, y = blurred
    with pytest.raises(ValueError, match="operator='gaussian:5' is neither a LinearOperator nor "
                                         "a kernel spec: .*expected 2 number"):
        cls("gaussian:5").fit(X[:4], y[:4])
