"""The model recipe: ``ModelSpec`` and ``build_model``, shared by fit, from_pretrained,
calibration and model files."""

import dataclasses

import numpy as np
import pytest
import torch

from implicit_inverse import ImplicitDeblurRegressor, ImplicitRegressor
from implicit_inverse.equilibrium import Anderson, GradientStep, ProximalStep
from implicit_inverse.operators import Blur, gaussian_kernel
from implicit_inverse.training.calibration import calibrate_prior, calibration_crops
from implicit_inverse.training.recipe import ModelSpec, build_model, build_prior

BLUR = Blur(gaussian_kernel(5, 1.0))


def test_a_spec_is_frozen_and_replace_gives_a_copy():
    spec = ModelSpec(BLUR, regularizer="dncnn:2x4", channels=1, lam=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lam = 0.1
    other = spec.replace(lam=0.1)
    assert other.lam == 0.1 and spec.lam == 0.01 and other.operator is spec.operator


def test_build_model_builds_the_map_the_spec_names():
    spec = ModelSpec(BLUR, regularizer="dncnn:2x4", channels=1, lam=0.01, eta=0.5,
                     precondition=False, learn_step=False, solver=Anderson(memory=3),
                     max_iter=7, tol=1e-3, train_max_iter=5, train_tol=1e-2)
    layer = build_model(spec)
    assert isinstance(layer.map, GradientStep) and layer.map.initializer == "tikhonov"
    assert (layer.map.eta, layer.map.precondition, layer.map.lam) == (0.5, False, 0.01)
    assert not layer.map.learn_step
    assert isinstance(layer.solver, Anderson) and layer.solver is not spec.solver
    assert (layer.max_iter, layer.tol, layer.train_max_iter, layer.train_tol) == (7, 1e-3, 5,
                                                                                  1e-2)
    again = build_model(spec)  # seeded: the same initial weights
    for first, second in zip(layer.parameters(), again.parameters()):
        torch.testing.assert_close(first, second, rtol=0, atol=0)

    proximal = build_model(spec.replace(regularizer="pretrained", sigma=0.05))
    assert isinstance(proximal.map, ProximalStep)
    assert float(proximal.map.sigma) == pytest.approx(0.05)
    assert (proximal.map.eta, proximal.map.precondition) == (0.5, False)


def test_build_model_needs_the_fitted_numbers():
    with pytest.raises(ValueError, match="lam"):
        build_model(ModelSpec(BLUR, regularizer="dncnn:2x4", channels=1, lam=None))
    with pytest.raises(ValueError, match="sigma"):
        build_model(ModelSpec(BLUR, regularizer="pretrained", channels=1, lam=0.1))


def test_fit_builds_its_model_from_spec_(blurred, blur):
    X, y = blurred
    est = ImplicitDeblurRegressor(blur, regularizer="dncnn:2x4", eta=0.8, max_epochs=1,
                                  max_iter=20, random_state=0, n_threads=1).fit(X[:8], y[:8])
    spec = est.spec_
    assert (spec.lam, spec.eta, spec.max_iter, spec.channels) == (est.lam_, 0.8, 20, 1)
    assert spec.operator is est.operator_
    untrained = build_model(spec)
    assert type(untrained.map) is type(est.net_.module_.layer.map)
    assert untrained.map.eta == est.net_.module_.layer.map.eta


def test_calibration_solves_the_map_the_model_runs():
    """The same prior calibrated for two step sizes: the scores differ, as the maps do (the
    calibration used to solve a map of its own, eta=1, whatever the estimator's eta)."""
    clean = calibration_crops(n=2, size=32)
    measurements = BLUR(clean)
    spec = ModelSpec(BLUR, regularizer="pretrained", channels=1, lam=None)
    prior = build_prior(spec)
    scores = [calibrate_prior(spec.replace(eta=eta), prior, measurements, clean, 0.0,
                              factors=(2.0,))[2] for eta in (1.0, 0.3)]
    assert scores[0][2.0] != scores[1][2.0]


def test_spec_is_saved_with_the_model(blurred, blur, tmp_path):
    X, y = blurred
    est = ImplicitDeblurRegressor(blur, regularizer="dncnn:2x4", max_epochs=1, max_iter=20,
                                  random_state=0, n_threads=1).fit(X[:8], y[:8])
    est.save(tmp_path / "model.pt")
    loaded = ImplicitRegressor.load(tmp_path / "model.pt")
    assert dataclasses.asdict(loaded.spec_).keys() == dataclasses.asdict(est.spec_).keys()
    assert loaded.spec_.replace(operator=None) == est.spec_.replace(operator=None)
    assert loaded.spec_.operator is loaded.operator_
    np.testing.assert_array_equal(loaded.predict(X[8:12]), est.predict(X[8:12]))


def test_calibration_crops_come_from_training_photos_only():
    from implicit_inverse.data.photos import (CALIBRATION_PHOTOS, HELD_OUT_PHOTOS,
                                              TRAINING_PHOTOS)

    assert set(CALIBRATION_PHOTOS) <= set(TRAINING_PHOTOS)
    assert not set(CALIBRATION_PHOTOS) & set(HELD_OUT_PHOTOS)
