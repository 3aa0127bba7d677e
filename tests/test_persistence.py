"""Model files: one data-only format (``est.save``), no warm-start cache inside, metadata,
resuming; crafted, damaged and old (pickled) files are refused without running code."""

import json
import numbers
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_inverse import (DirectInverseRegressor, ImplicitDeblurRegressor,
                              ImplicitInpaintingRegressor, ImplicitRegressor,
                              ImplicitSuperResolutionRegressor, TikhonovRegressor,
                              TotalVariationRegressor, WienerRegressor)
from implicit_inverse.equilibrium import Anderson, Exact
from implicit_inverse.estimators import persistence
from implicit_inverse.training.warm_start import FixedPointCache
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import LinearOperator, make_measurements

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


# -- the data-only format: crafted files never run code -------------------------------------------
class _Exploit:
    """Creates ``marker`` when unpickled (what a malicious model file would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _old_format_file(estimator, path, metadata):
    """A model file as implicit_inverse 0.1 wrote it: the pickled estimator (format 1)."""
    params = estimator.get_params(deep=False)
    torch.save({"format": persistence.FORMAT, "format_version": 1, "library_version": "0.1.0",
                "class": type(estimator), "params": params,
                "attributes": {name: value for name, value in vars(estimator).items()
                               if name not in params},
                "metadata": metadata}, path)


def _rewrite(source, target, change):
    """Copy the model file ``source`` to ``target`` with ``change(payload)`` applied."""
    payload = torch.load(source, weights_only=True)
    change(payload)
    torch.save(payload, target)


def _set_header(payload, change):
    header = json.loads(payload["header"])
    change(header)
    payload["header"] = json.dumps(header)


@pytest.mark.parametrize("kind", ["pickle", "torch archive", "format 1 archive"])
def test_a_crafted_file_runs_no_code(kind, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Exploit(marker)))
    elif kind == "torch archive":  # our payload, with an object where the header belongs
        torch.save({"format": persistence.FORMAT, "format_version": 2,
                    "header": _Exploit(marker), "tensors": {}}, path)
    else:  # looks like a file of implicit_inverse 0.1: refused unless allow_pickle=True
        torch.save({"format": persistence.FORMAT, "format_version": 1,
                    "class": _Exploit(marker)}, path)
    with pytest.raises(persistence.ModelFileError, match="model.pt") as caught:
        ImplicitRegressor.load(path)
    assert len(str(caught.value).splitlines()) == 1
    assert not marker.exists()
    if kind != "format 1 archive":  # allow_pickle reads only files marked as format 1
        with pytest.raises(persistence.ModelFileError, match="not a model file"):
            persistence.load(path, allow_pickle=True)
        assert not marker.exists()
    if kind == "pickle":  # the file is a real exploit: unpickled, it creates the marker
        pickle.loads(path.read_bytes()).close()
        assert marker.exists()


def test_a_crafted_file_runs_no_code_from_the_command_line(tmp_path, capsys):
    from PIL import Image

    from implicit_inverse.cli import main

    marker = tmp_path / "pwned"
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps(_Exploit(marker)))
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "photo.png")
    code = main(["restore", str(tmp_path / "photo.png"), "--model", str(model), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.pt" in err and "is not a model file" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_file_of_the_pickle_format_says_how_to_convert_it(fitted, blurred, tmp_path):
    X, _ = blurred
    old, new = tmp_path / "old.pkl", tmp_path / "new.pt"
    _old_format_file(fitted, old, {"seed": 3})
    with pytest.raises(persistence.ModelFileError) as caught:
        ImplicitRegressor.load(old)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and str(old) in message
    assert "allow_pickle=True" in message and ".save(" in message
    # the documented, unsafe opt-in for a trusted file, then a save in the data-only format
    persistence.read(old, allow_pickle=True).save(new)
    model = persistence.read(new)
    assert model.metadata == {"seed": 3}
    np.testing.assert_array_equal(model.estimator.predict(X[N:]), fitted.predict(X[N:]))


@pytest.mark.parametrize("version, message", [
    (4, "format version 4; this implicit_inverse reads versions 2 and 3: upgrade"),
    (0, "format version 0; this implicit_inverse reads versions 2 and 3$"),
    ("3", "format version '3'"),
    (1, "implicit_inverse 0.1"),
])
def test_another_format_version_is_refused(version, message, tmp_path):
    persistence.save(TikhonovRegressor(), tmp_path / "model.pt")
    _rewrite(tmp_path / "model.pt", tmp_path / "other.pt",
             lambda payload: payload.update(format_version=version))
    with pytest.raises(persistence.ModelFileError, match=message):
        persistence.load(tmp_path / "other.pt")


def _drop_a_tensor(payload):
    payload["tensors"].pop(next(iter(payload["tensors"])))


@pytest.mark.parametrize("damage, message", [
    ("truncated", "is not a model file written by implicit_inverse save"),
    ("zeroed", "is not a model file written by implicit_inverse save"),
    (lambda payload: payload.update(header="{not json"), "header is not JSON"),
    (lambda payload: payload.update(header=json.dumps([1, 2])), "header lacks"),
    (lambda payload: payload.update(tensors={"weights": "not a tensor"}), "no JSON header"),
    (_drop_a_tensor, "damaged model file: KeyError"),
    (lambda payload: _set_header(payload, lambda header: header["params"].update(
        eta={"$type": "pickle", "data": "gASV"})), "unknown type 'pickle'"),
    (lambda payload: _set_header(payload, lambda header: header["params"].update(
        no_such_param=1)), "damaged model file: TypeError"),
    (lambda payload: _set_header(payload, lambda header: header["net"]["prior"]["args"][
        "network"]["args"].update(width=[])), "damaged model file: ValueError"),
    (lambda payload: _set_header(payload, lambda header: header["net"].pop("history")),
     "its network entry lacks"),
    (lambda payload: payload.update(optimizer=None), "no optimizer state"),
])
def test_a_damaged_file_is_refused(damage, message, fitted, tmp_path):
    path, damaged = tmp_path / "model.pt", tmp_path / "damaged.pt"
    fitted.save(path)
    data = path.read_bytes()
    if damage == "truncated":
        damaged.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed":
        damaged.write_bytes(data[:200] + bytes(len(data) - 200))
    else:
        _rewrite(path, damaged, damage)
    with pytest.raises(persistence.ModelFileError, match=message) as caught:
        ImplicitRegressor.load(damaged)
    assert "damaged.pt" in str(caught.value) and len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("where, name", [
    ("class", "subprocess.Popen"),
    ("class", "ImplicitRegressorSubclass"),
    ("operator", "os.system"),
    ("optimizer", "builtins.eval"),
    ("module", "torch.nn.modules.module.Module"),
    ("callback", "skorch.callbacks.Checkpoint"),
])
def test_classes_outside_the_allow_list_are_refused(where, name, fitted, tmp_path):
    marker = tmp_path / "pwned"

    def change(header):
        if where == "class":
            header["class"] = name
        elif where == "operator":
            header["attributes"]["operator_"] = {"$type": "object", "class": name,
                                                 "args": {"command": f"touch {marker}"}}
        elif where == "optimizer":
            header["params"]["optimizer"] = {"$type": "class", "name": name}
        elif where == "callback":  # one that would write files where the file says
            header["params"]["callbacks"] = [{
                "$type": "object", "class": name, "args": {"dirname": str(tmp_path)}}]
        else:  # the prior of the fitted network
            header["net"]["prior"]["class"] = name

    fitted.save(tmp_path / "model.pt")
    _rewrite(tmp_path / "model.pt", tmp_path / "crafted.pt",
             lambda payload: _set_header(payload, change))
    with pytest.raises(persistence.ModelFileError, match=f"crafted.pt.*{name}"):
        ImplicitRegressor.load(tmp_path / "crafted.pt")
    assert not marker.exists()


def test_only_the_package_estimators_are_saved(tmp_path):
    class Subclass(TikhonovRegressor):
        pass

    with pytest.raises(TypeError, match="cannot save a .*Subclass: model files hold"):
        persistence.save(Subclass(), tmp_path / "model.pt")
    with pytest.raises(TypeError, match="metadata must hold JSON values"):
        persistence.save(TikhonovRegressor(), tmp_path / "model.pt", metadata={"x": object()})
    assert not (tmp_path / "model.pt").exists()


# -- round trips -----------------------------------------------------------------------------------
class ScaledIdentity(LinearOperator):
    """An operator of the user's own: 0.5 x."""

    def _forward(self, x):
        return 0.5 * x

    def _adjoint(self, y):
        return 0.5 * y


def _round_trip_cases(blur):
    small = dict(max_epochs=1, batch_size=6, max_iter=10, random_state=0, n_threads=1)
    mask = np.random.default_rng(0).random((16, 16)) < 0.7
    return {
        "tikhonov": (TikhonovRegressor(blur, lam=0.01), {}),
        "wiener": (WienerRegressor(blur), {}),
        "total variation": (TotalVariationRegressor(blur, n_iter=5, tv_iter=20), {}),
        "direct inverse": (DirectInverseRegressor(blur), {}),
        "custom operator": (TikhonovRegressor(ScaledIdentity()), {"operator": ScaledIdentity()}),
        "deblur spec": (ImplicitDeblurRegressor(blur, regularizer="dncnn:2x4",
                                                precision="bfloat16", solver=Anderson(memory=3),
                                                gradient=Exact(max_iter=5, warn=False), **small),
                        {}),
        "super-resolution": (ImplicitSuperResolutionRegressor(factor=2, regularizer="dncnn:2x4",
                                                              lr_schedule="constant", **small), {}),
        "pretrained map": (ImplicitDeblurRegressor(blur, regularizer="dncnn:2x4", pretrain_epochs=1,
                                                   **small), {}),
        "inpainting mask": (ImplicitInpaintingRegressor(mask=mask, regularizer="dncnn:2x4",
                                                        reuse_fixed_points=False, **small), {}),
        "custom regularizer": (ImplicitDeblurRegressor(blur, regularizer=Smoother(), **small),
                               {"regularizer": Smoother()}),
    }


class Smoother(torch.nn.Module):
    """A regularizer of the user's own class: ``weight * x`` with a learned ``weight``."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.01))

    def forward(self, x):
        return self.weight * x


def _measurements(estimator, faces):
    """Noisy measurements of ``faces`` through the estimator's operator."""
    operator = estimator._make_operator() if isinstance(estimator, ImplicitRegressor) \
        else estimator.operator
    return np.asarray(make_measurements(faces, operator, noise_std=0.01, random_state=0),
                      np.float32)


@pytest.mark.parametrize("case", ["tikhonov", "wiener", "total variation", "direct inverse",
                                  "custom operator", "deblur spec", "super-resolution",
                                  "pretrained map", "inpainting mask", "custom regularizer"])
def test_predictions_survive_a_round_trip(case, faces, blur, tmp_path):
    estimator, params = _round_trip_cases(blur)[case]
    X = _measurements(estimator, faces)
    estimator.fit(X[:N], faces[:N])
    path = tmp_path / "model.pt"
    persistence.save(estimator, path, metadata={"case": case})
    if params:
        with pytest.raises(persistence.ModelFileError, match=f"{next(iter(params))!r} \\(a "):
            persistence.load(path)
    model = persistence.read(path, params=params)
    loaded = model.estimator
    assert type(loaded) is type(estimator) and model.metadata == {"case": case}
    np.testing.assert_array_equal(loaded.predict(X[N:N + 4]), estimator.predict(X[N:N + 4]))
    original, restored = estimator.get_params(deep=False), loaded.get_params(deep=False)
    assert original.keys() == restored.keys()
    for name, value in original.items():
        if isinstance(value, (str, numbers.Number, bool, type(None), tuple, type)):
            assert restored[name] == value, name
    if isinstance(loaded, ImplicitRegressor):
        assert loaded.lam_ == estimator.lam_ and loaded.n_iter_ == estimator.n_iter_
        assert loaded.history[:, "train_loss"] == estimator.history[:, "train_loss"]
        assert type(loaded.history) is type(estimator.history)
    if getattr(estimator, "pretraining_history_", None) is not None:
        assert loaded.pretraining_history_[:, "train_loss"] == \
            estimator.pretraining_history_[:, "train_loss"]


def test_a_custom_regularizer_is_passed_again_and_gets_its_weights(faces, blur, tmp_path):
    regularizer = Smoother()
    with torch.no_grad():
        regularizer.weight.fill_(0.02)
    X = _measurements(ImplicitDeblurRegressor(blur), faces)
    estimator = ImplicitDeblurRegressor(blur, regularizer=regularizer, max_epochs=1,
                                        max_iter=10, random_state=0).fit(X[:N], faces[:N])
    estimator.save(tmp_path / "model.pt")
    passed = Smoother()
    loaded = persistence.load(tmp_path / "model.pt", params={"regularizer": passed})
    assert loaded.regularizer.weight.item() == pytest.approx(0.02)  # the saved parameter ...
    assert passed.weight.item() == pytest.approx(0.01)  # ... in a copy of the module passed
    assert loaded.regularizer_.weight.item() == estimator.regularizer_.weight.item()
    with pytest.raises(TypeError, match=r"params \['eta'\] are stored"):
        persistence.load(tmp_path / "model.pt", params={"regularizer": Smoother(), "eta": 2.0})
    with pytest.raises(persistence.ModelFileError, match="does not match the saved"):
        persistence.load(tmp_path / "model.pt", params={"regularizer": DnCNN(depth=2, width=2)})


def test_callbacks_are_passed_again_or_left_out_with_a_warning(blurred, blur, tmp_path):
    from skorch.callbacks import Checkpoint

    X, y = blurred
    checkpoint = Checkpoint(dirname=str(tmp_path / "checkpoints"), monitor=None)
    estimator = ImplicitDeblurRegressor(blur, regularizer="dncnn:2x4", callbacks=[checkpoint],
                                        max_epochs=1, max_iter=10, random_state=0)
    estimator.fit(X[:N], y[:N]).save(tmp_path / "model.pt")
    with pytest.warns(UserWarning, match="saved with callbacks .*Checkpoint.* callbacks=None"):
        loaded = ImplicitRegressor.load(tmp_path / "model.pt")
    assert loaded.callbacks is None and "user_0" not in dict(loaded.net_.callbacks)
    np.testing.assert_array_equal(loaded.predict(X[N:]), estimator.predict(X[N:]))
    again = persistence.load(tmp_path / "model.pt", params={"callbacks": [checkpoint]})
    assert isinstance(dict(again.net_.callbacks)["user_0"], Checkpoint)
    (tmp_path / "checkpoints" / "params.pt").unlink()
    again.partial_fit(X[:N], y[:N])  # the checkpoint passed again is written
    assert len(again.history) == 2 and (tmp_path / "checkpoints" / "params.pt").exists()


def test_a_model_from_a_pretrained_prior_survives_a_round_trip(blurred, blur, tmp_path):
    X, _ = blurred
    estimator = ImplicitDeblurRegressor.from_pretrained(blur, noise_std=0.01, lam=0.01,
                                                        max_iter=30, n_threads=1)
    estimator.save(tmp_path / "model.pt")
    loaded = ImplicitRegressor.load(tmp_path / "model.pt")
    np.testing.assert_array_equal(loaded.predict(X[:2]), estimator.predict(X[:2]))
    assert loaded.net_.module_.layer.map.sigma.item() == \
        estimator.net_.module_.layer.map.sigma.item()


def test_a_failed_save_replaces_nothing(fitted, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    fitted.save(path)
    before = path.read_bytes()
    fitted.note_ = object()  # a fitted attribute that a model file cannot store as data
    try:
        with pytest.raises(TypeError, match="note_ holds a builtins.object"):
            fitted.save(path)
    finally:
        del fitted.note_

    def interrupted(payload, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted.save(path)
    assert path.read_bytes() == before  # nothing a user saved is replaced by a failed save
    assert list(tmp_path.iterdir()) == [path]  # and nothing is left beside it


def test_a_model_file_is_a_header_and_the_state_dict(fitted, tmp_path):
    fitted.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["format_version"] == persistence.FORMAT_VERSION == 3
    header = json.loads(payload["header"])
    assert header["attributes"]["spec_"]["$type"] == "spec"
    assert header["net"]["prior"]["class"] == "TikhonovPlusNetwork"  # its architecture()
    state = {name.removeprefix("net.state."): value for name, value in payload["tensors"].items()
             if name.startswith("net.state.")}
    trained = {name: value for name, value in fitted.net_.module_.state_dict().items()
               if not name.startswith("cache.")}
    assert state.keys() == trained.keys()
    assert payload["optimizer"]["param_groups"] == fitted.net_.optimizer_.state_dict()[
        "param_groups"]


def test_a_format_2_file_still_loads_and_predicts_the_same_images(tmp_path):
    """A model saved by the code before model files became header + state (see
    ``tests/data/make_format2_model.py``) loads and gives the images it gave then; saved again,
    it is a file of the current format."""
    data = Path(__file__).parent / "data"
    expected = np.load(data / "format2_model_expected.npz")
    loaded = ImplicitRegressor.load(data / "format2_model.pt")
    assert type(loaded) is ImplicitDeblurRegressor and loaded.n_iter_ == 2
    np.testing.assert_allclose(loaded.predict(expected["X"]), expected["images"], rtol=0,
                               atol=1e-6)
    loaded.save(tmp_path / "model.pt")
    again = ImplicitRegressor.load(tmp_path / "model.pt")
    np.testing.assert_array_equal(again.predict(expected["X"]), loaded.predict(expected["X"]))
    assert again.history[:, "train_loss"] == loaded.history[:, "train_loss"]
