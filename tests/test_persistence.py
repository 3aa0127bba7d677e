"""Model files: one format (``est.save``), no warm-start cache inside, metadata, resuming."""

import numpy as np
import pytest
import torch

from implicit_inverse import ImplicitDeblurRegressor, ImplicitRegressor
from implicit_inverse.estimators import persistence
from implicit_inverse.estimators.training import FixedPointCache
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

N = 12


@pytest.fixture(scope="module")
def fitted(blurred, blur):
    X, y = blurred
    est = ImplicitDeblurRegressor(blur, regularizer=TikhonovPlusNetwork(DnCNN(depth=2, width=8)),
                                  max_epochs=1, batch_size=6, max_iter=10, random_state=0,
                                  n_threads=1)
    return est.fit(X[:N], y[:N])


def cache_of(est):
    return est.net_.module_.cache


def test_saved_file_has_no_warm_start_cache(fitted, blurred, tmp_path):
    X, _ = blurred
    cache = cache_of(fitted)
    assert cache.points.shape[0] == N and bool(cache.valid.any())
    fitted.save(tmp_path / "model.pt")
    assert cache_of(fitted) is cache  # the fitted estimator keeps its warm starts

    loaded = ImplicitRegressor.load(tmp_path / "model.pt")
    empty = cache_of(loaded)
    assert isinstance(empty, FixedPointCache) and empty.points.shape == (0, 1, 16, 16)
    np.testing.assert_array_equal(loaded.predict(X[N:]), fitted.predict(X[N:]))
    trained = {k: v for k, v in fitted.net_.module_.state_dict().items()
               if not k.startswith("cache.")}
    restored = loaded.net_.module_.state_dict()
    for name, value in trained.items():
        torch.testing.assert_close(restored[name], value, rtol=0, atol=0, msg=name)


def test_file_size_does_not_grow_with_the_training_set(blurred, blur, tmp_path):
    X, y = blurred
    sizes = []
    for n in (4, 32):
        est = ImplicitDeblurRegressor(blur, regularizer=TikhonovPlusNetwork(DnCNN(2, 8)),
                                      max_epochs=1, max_iter=5, random_state=0, n_threads=1)
        est.fit(X[:n], y[:n])
        est.save(tmp_path / f"{n}.pt")
        sizes.append((tmp_path / f"{n}.pt").stat().st_size)
    # 28 more cached 16 x 16 fixed points would add 28 kB; history grows a little
    assert sizes[1] - sizes[0] < 8_000, sizes


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_continued_training_after_loading_makes_a_fresh_cache(how, fitted, blurred, tmp_path):
    X, y = blurred
    fitted.save(tmp_path / "model.pt")
    loaded = ImplicitRegressor.load(tmp_path / "model.pt")
    if how == "partial_fit":
        loaded.partial_fit(X[:N], y[:N])
        assert len(loaded.history) == 2
    else:
        loaded.set_params(warm_start=True, max_epochs=2).fit(X[N:2 * N], y[N:2 * N])
        assert len(loaded.history) == 3
    cache = cache_of(loaded)
    assert cache.points.shape[0] == N and bool(cache.valid.any())  # warm starts work again
    assert np.isfinite(loaded.score(X[N:], y[N:]))


def test_checkpoints_keep_the_cache(fitted, tmp_path):
    fitted.net_.save_params(f_params=tmp_path / "params.pt")  # what skorch's Checkpoint does
    state = torch.load(tmp_path / "params.pt", weights_only=True)
    torch.testing.assert_close(state["cache.points"], cache_of(fitted).points)


def test_metadata_round_trip(fitted, tmp_path):
    path = tmp_path / "model.pt"
    persistence.save(fitted, path, metadata={"kernel": "disk:2", "seed": 3, "sizes": [1, 2]})
    model = persistence.read(path)
    assert isinstance(model.estimator, ImplicitDeblurRegressor)
    assert model.metadata == {"kernel": "disk:2", "seed": 3, "sizes": [1, 2]}
    fitted.save(path)  # est.save stores none
    assert persistence.read(path).metadata == {}
    assert isinstance(persistence.load(path), ImplicitDeblurRegressor)
