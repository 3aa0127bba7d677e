"""Reliability of the implicit estimators: divergence handling, non-convergence at prediction,
persistence (pickle, save/load, a GPU model on a CPU machine, atomic writes), checkpoints and
resumed training, determinism, and the global torch state."""

import contextlib
import copy
import os
import pickle
import random
import warnings

import numpy as np
import pytest
import skorch
import torch
from skorch.callbacks import Callback, Checkpoint, LoadInitState
from torch import nn

from implicit_inverse import (ImplicitDeblurRegressor, ImplicitRegressor,
                              ImplicitSuperResolutionRegressor)
from implicit_inverse._runtime import torch_threads
from implicit_inverse.equilibrium import ConvergenceWarning
from implicit_inverse.estimators import DivergenceError, persistence
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

N = 16


def tiny_regularizer():
    return TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.01)


REGULARIZER = None


def shared_regularizer():
    """One tiny regularizer for runs that must start from the same weights (fit copies it)."""
    global REGULARIZER
    if REGULARIZER is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            REGULARIZER = tiny_regularizer()
    return REGULARIZER


def deblur(blur, **params):
    defaults = dict(regularizer=shared_regularizer(), max_epochs=1, batch_size=8, max_iter=10,
                    random_state=0)
    return ImplicitDeblurRegressor(blur, **{**defaults, **params})


# convergence is what some tests provoke; where it is not asserted (pytest.warns) it is ignored
pytestmark = pytest.mark.filterwarnings(
    "ignore::implicit_inverse.equilibrium.ConvergenceWarning")


def weights(est):
    return {name: value.detach().clone() for name, value in est.net_.module_.state_dict().items()}


def without_cache(state):
    return {name: value for name, value in state.items() if not name.startswith("cache.")}


def assert_same_weights(first, second, atol=0.0):
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=atol, msg=name)


# -- divergence during training -----------------------------------------------------------------
class Poisoned(nn.Module):
    """A tiny regularizer that returns NaN during chosen training batches.

    Batches are counted by the one call with gradients that JFB makes per batch, so the solve of
    batch ``k`` (calls without gradients) sees the count ``k``; the estimators using it turn the
    Jacobian penalty (a second call with gradients) off.
    """

    def __init__(self, bad=(), from_batch=None, only_with_grad=False):
        super().__init__()
        self.inner = tiny_regularizer()
        self.bad = set(bad)
        self.from_batch = from_batch
        self.only_with_grad = only_with_grad  # the solve converges, the loss is NaN
        self.batch = 0

    def forward(self, x):
        output = self.inner(x)
        poisoned = self.batch in self.bad or (
            self.from_batch is not None and self.batch >= self.from_batch)
        poisoned &= torch.is_grad_enabled() or not self.only_with_grad
        if torch.is_grad_enabled():
            self.batch += 1
        return output * float("nan") if poisoned else output


class Snapshots(Callback):
    """Parameters and optimizer state after every training batch."""

    def initialize(self):
        self.taken = []
        return self

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        state = {id(p): {key: value.clone() for key, value in s.items()}
                 for p, s in net.optimizer_.state.items()}
        params = {name: p.detach().clone() for name, p in net.module_.named_parameters()}
        self.taken.append((params, state, net.history[-1, "batches", -1]["skipped"]))


@pytest.mark.parametrize("only_with_grad", [False, True], ids=["solve diverges", "loss is nan"])
def test_bad_batches_are_skipped_without_an_optimizer_step(only_with_grad, blurred, blur):
    X, y = blurred
    est = deblur(blur, regularizer=Poisoned(bad={1, 2, 5}, only_with_grad=only_with_grad),
                 jacobian_penalty=0.0, batch_size=4, max_epochs=2,
                 callbacks=[Snapshots()]).fit(X[:N], y[:N])
    assert est.history[:, "skipped"] == [2, 1]  # per epoch, 4 batches each
    diverged = [batch["fp_conv"] < 1 for epoch in est.history for batch in epoch["batches"]]
    assert any(diverged) != only_with_grad  # a NaN loss alone also skips the batch
    taken = dict(est.net_.callbacks_)["user_0"].taken
    assert [flag for _, _, flag in taken] == [0, 1, 1, 0, 0, 1, 0, 0]
    for k in range(1, len(taken)):
        params, state, skipped = taken[k]
        previous_params, previous_state, _ = taken[k - 1]
        if skipped:  # parameters untouched and Adam's moments and step count not advanced
            assert_same_weights(params, previous_params)
            assert previous_state.keys() == state.keys()
            for key in state:
                for name in state[key]:
                    assert torch.equal(state[key][name], previous_state[key][name]), name
        else:
            assert any(not torch.equal(params[name], previous_params[name]) for name in params)
    steps = [int(s["step"]) for s in taken[-1][1].values()]
    assert set(steps) == {8 - 3}  # one Adam step per good batch
    assert np.isfinite(est.predict(X[N:N + 4])).all()


class NaNGradient(nn.Module):
    """Finite outputs whose parameter gradient is NaN: ``0 * sqrt(p)`` at ``p = 0``."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_regularizer()
        self.zero = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.inner(x) + 0.0 * torch.sqrt(self.zero)


def test_a_batch_with_non_finite_gradients_moves_no_parameter(blurred, blur):
    X, y = blurred
    regularizer = NaNGradient()
    before = copy.deepcopy(regularizer.state_dict())
    est = deblur(blur, regularizer=regularizer, jacobian_penalty=0.0, batch_size=2)
    with pytest.raises(DivergenceError, match="loss or its gradient was not finite"):
        est.fit(X[:N + 4], y[:N + 4])
    assert np.isfinite(est.history[-1, "batches"][0]["train_loss"])  # the loss was finite
    assert [batch["skipped"] for batch in est.history[-1, "batches"]] == [1] * 10
    trained = est.net_.module_.layer.map.regularizer.state_dict()
    assert_same_weights(dict(trained), before)
    assert len(est.net_.optimizer_.state) == 0


def test_a_run_that_keeps_diverging_stops_with_the_last_good_parameters(blurred, blur):
    X, y = blurred
    regularizer = Poisoned(from_batch=0)
    before = copy.deepcopy(regularizer.state_dict())
    threads = torch.get_num_threads()
    est = deblur(blur, regularizer=regularizer, batch_size=1, n_threads=1)
    with pytest.raises(DivergenceError, match=r"diverged \(or the loss or its gradient was not "
                                              r"finite\) on 10 "
                                              r"consecutive batches\. eta=1\.0: the linear part "
                                              r"of the map contracts for eta in \(0, [0-9.]+\)"):
        est.fit(X[:N], y[:N])
    assert torch.get_num_threads() == threads
    # nothing was learned: the weights are the initial ones, the optimizer never stepped
    trained = est.net_.module_.layer.map.regularizer.state_dict()
    assert_same_weights({k: v for k, v in trained.items()}, before)
    assert float(est.net_.module_.layer.map.step_logit.detach()) == 0.0
    assert len(est.net_.optimizer_.state) == 0
    assert [batch["skipped"] for batch in est.history[-1, "batches"]] == [1] * 10
    # the network still answers: every solve diverges, the Tikhonov start is returned
    d = torch.from_numpy(np.array(X[N:N + 3]))[:, None]
    with pytest.warns(ConvergenceWarning, match="3 of 3 samples did not reach tol"):
        images, stats = est.predict_with_stats(X[N:N + 3])
    with torch_threads(1):  # as predict ran (n_threads=1): FFT sums depend on the threads
        start = est.operator_.solve_normal(est.operator_.adjoint(d), est.lam_)
    np.testing.assert_allclose(images, start[:, 0].numpy(), rtol=0, atol=1e-6)
    assert stats.diverged.tolist() == [True] * 3


def test_step_size_outside_the_safe_range_warns_then_stops_with_divergence_error(blurred, blur):
    X, y = blurred
    est = deblur(blur, precondition=False, eta=50.0, learn_step=False, solver="forward", lam=0.1,
                 batch_size=1, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("default", ConvergenceWarning)
        with pytest.warns(ConvergenceWarning, match=r"eta=50\.0 is outside the safe range "
                                                    r"\(0, [0-9.]+\) for this operator"):
            with pytest.raises(DivergenceError, match=r"eta=50\.0: the linear part of the map "
                                                      r"contracts for eta in \(0, 1\.[0-9]+\)"):
                est.fit(X[:N], y[:N])


class StopTraining(Exception):
    pass


class StopsAtFirstStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = tiny_regularizer()

    def forward(self, x):
        if torch.is_grad_enabled():
            raise StopTraining
        return self.inner(x)


def test_step_size_outside_the_safe_range_warns_before_training(blurred, blur):
    X, y = blurred
    est = deblur(blur, regularizer=StopsAtFirstStep(), precondition=False, eta=5.0)
    with pytest.warns(ConvergenceWarning, match=r"eta=5\.0 is outside the safe range "
                                                r"\(0, [0-9.]+\) for this operator "
                                                r".*precondition=False"):
        with pytest.raises(StopTraining):  # the warning came before the first training step
            est.fit(X[:N], y[:N])


def test_safe_step_size_gives_no_contraction_warning(blurred, blur):
    X, y = blurred
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deblur(blur, max_epochs=1).fit(X[:N], y[:N])
    assert not [w for w in caught if "outside the safe range" in str(w.message)]


# -- non-convergence at prediction ---------------------------------------------------------------
@pytest.fixture(scope="module")
def non_contractive(blurred, blur):
    """A model whose map expands (plain step of 5 on a blur): every training batch is skipped."""
    X, y = blurred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deblur(blur, precondition=False, eta=5.0, learn_step=False, solver="forward",
                      lam=0.1, max_iter=40).fit(X[:N], y[:N])


def test_unconverged_predictions_warn_flag_and_stay_finite(non_contractive, blurred):
    X, y = blurred
    assert non_contractive.history[:, "skipped"] == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("default", ConvergenceWarning)
        with pytest.warns(ConvergenceWarning, match=r"8 of 8 samples did not reach tol=0\.0001 "
                                                    r"within max_iter=40 \(8 diverged"):
            images, stats = non_contractive.predict_with_stats(X[N:N + 8])
    assert images.shape == (8, 16, 16) and np.isfinite(images).all()
    assert stats.converged.shape == (8,) and stats.converged.dtype == torch.bool
    assert not stats.converged.any() and stats.diverged.all()
    assert int(stats.iterations.max()) < 40  # stopped at divergence, not run to the cap
    assert torch.isfinite(stats.residual).all()
    # the lowest-residual iterate is no worse than the starting point
    operator, lam = non_contractive.operator_, non_contractive.lam_
    d = torch.from_numpy(np.array(X[N:N + 8]))[:, None]
    start = operator.solve_normal(operator.adjoint(d), lam)[:, 0].numpy()
    error = np.abs(images - y[N:N + 8]).mean()
    assert error <= np.abs(start - y[N:N + 8]).mean() + 1e-6


def test_predict_works_in_chunks_of_four_batches(blurred, blur):
    X, y = blurred
    est = deblur(blur, batch_size=2).fit(X[:4], y[:4])
    sizes = []
    hook = est.net_.module_.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    try:
        images, stats = est.predict_with_stats(X[:26])
    finally:
        hook.remove()
    assert sizes == [8, 8, 8, 2]
    assert images.shape == (26, 16, 16) and len(stats.converged) == 26


# -- persistence ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(blurred, blur):
    X, y = blurred
    return deblur(blur, max_epochs=2).fit(X[:N], y[:N])


def assert_same_predictions(first, second, X):
    np.testing.assert_array_equal(first.predict(X), second.predict(X))


def test_pickle_round_trip_keeps_predictions_and_training_state(fitted, blurred):
    X, y = blurred
    copy_ = pickle.loads(pickle.dumps(fitted))
    assert_same_predictions(fitted, copy_, X[N:])
    assert copy_.net_.module is copy_.net_.module_  # one module, stored once
    original = copy.deepcopy(fitted)
    original.partial_fit(X[:N], y[:N])
    copy_.partial_fit(X[:N], y[:N])  # optimizer state, warm starts, RNG streams survived
    assert_same_weights(weights(original), weights(copy_))


def test_save_and_load_round_trip(fitted, blurred, tmp_path):
    X, y = blurred
    path = tmp_path / "model.pt"
    assert fitted.save(path) is None
    loaded = ImplicitDeblurRegressor.load(path)
    assert type(loaded) is ImplicitDeblurRegressor
    params, restored = fitted.get_params(deep=False), loaded.get_params(deep=False)
    assert params.keys() == restored.keys()
    for name in ("eta", "max_iter", "tol", "noise_std", "max_epochs", "batch_size", "lr",
                 "random_state", "kernel_size", "precondition", "gradient", "solver"):
        assert restored[name] == params[name], name
    # a saved model leaves the training warm starts out (checkpoints keep them)
    assert_same_weights(without_cache(weights(fitted)), without_cache(weights(loaded)))
    assert not bool(loaded.net_.module_.cache.valid.any())
    for name in ("lam_", "noise_std_", "n_channels_", "image_shape_", "n_features_in_", "n_iter_"):
        assert getattr(loaded, name) == getattr(fitted, name), name
    assert_same_predictions(fitted, loaded, X[N:])
    # the superclass loads its subclasses, another class is refused
    assert type(ImplicitRegressor.load(str(path))) is ImplicitDeblurRegressor
    with pytest.raises(TypeError, match="holds a ImplicitDeblurRegressor, not a "
                                        "ImplicitSuperResolutionRegressor"):
        ImplicitSuperResolutionRegressor.load(path)
    # loading continues training exactly as the saved model would without its warm starts
    original = copy.deepcopy(fitted)
    original.net_.module_.cache.valid.zero_()
    original.partial_fit(X[:N], y[:N])
    loaded.partial_fit(X[:N], y[:N])
    assert_same_weights(without_cache(weights(original)), without_cache(weights(loaded)))
    assert loaded.net_.module_.cache.matches(torch.tensor(np.array(y[:N]))[:, None])
    assert len(loaded.history) == 3


def test_save_and_load_an_unfitted_estimator(blur, tmp_path):
    est = deblur(blur, eta=0.5)
    est.save(tmp_path / "unfitted.pt")
    loaded = persistence.load(tmp_path / "unfitted.pt")
    assert loaded.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert loaded.eta == 0.5 and not hasattr(loaded, "net_")


def test_load_refuses_files_that_are_not_models(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a model file written by implicit_inverse"):
        ImplicitRegressor.load(junk)
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no format marker"):
        ImplicitRegressor.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        ImplicitRegressor.load(tmp_path / "missing.pt")


def test_a_failed_save_leaves_the_existing_file_intact(fitted, blur, blurred, tmp_path,
                                                        monkeypatch):
    path = tmp_path / "model.pt"
    fitted.save(path)
    before = path.read_bytes()
    real_save = torch.save

    def fails_midway(obj, handle, *args, **kwargs):
        handle.write(before[: len(before) // 3])  # part of a file is on disk ...
        raise OSError(28, "No space left on device")  # ... when the disk fills up

    monkeypatch.setattr(torch, "save", fails_midway)
    with pytest.raises(OSError, match="No space left"):
        deblur(blur, eta=0.25).save(path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left behind
    assert_same_predictions(fitted, ImplicitRegressor.load(path), blurred[0][N:N + 4])
    # an estimator that a model file cannot store fails before replacing anything either
    unstorable = deblur(blur)
    unstorable.note_ = lambda x: x  # an attribute holding code
    with pytest.raises(TypeError, match="note_ holds a builtins.function"):
        unstorable.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pt"]
    with pytest.raises(IsADirectoryError):
        fitted.save(tmp_path)


def _reachable_tensors(root, skip=()):
    """Storage pointers of the tensors reachable from ``root`` through attributes/containers."""
    seen, found, stack = {id(obj) for obj in skip}, set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.add(obj.untyped_storage().data_ptr())
            if obj.grad is not None:
                stack.append(obj.grad)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    found.discard(0)
    return found


@contextlib.contextmanager
def saved_as_if_on_cuda(monkeypatch, pointers):
    """Serialise the given storages with the location tag a GPU run would give them."""
    real_tag = torch.serialization.location_tag

    def tag(storage):
        return "cuda:0" if storage.data_ptr() in pointers else real_tag(storage)

    monkeypatch.setattr(torch.serialization, "location_tag", tag)
    try:
        yield
    finally:
        monkeypatch.setattr(torch.serialization, "location_tag", real_tag)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_a_model_trained_on_a_gpu_loads_on_a_cpu_only_machine(fitted, blurred, tmp_path,
                                                              monkeypatch):
    X, y = blurred
    # the sanity of the simulation: a tensor tagged CUDA does not load here without mapping
    probe = torch.ones(3)
    with saved_as_if_on_cuda(monkeypatch, {probe.untyped_storage().data_ptr()}):
        torch.save(probe, tmp_path / "probe.pt")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "probe.pt")

    # a GPU run holds every tensor of its net on the device (weights, buffers, warm starts,
    # solver memory, optimizer state, ...) except the operator's, which stay on the CPU (the
    # per-device caches of the operator are not saved)
    gpu = copy.deepcopy(fitted)
    gpu.device = "cuda"
    gpu.net_.device = "cuda"
    on_device = _reachable_tensors(gpu.net_, skip=[gpu.operator_])
    assert on_device
    with saved_as_if_on_cuda(monkeypatch, on_device):
        gpu.save(tmp_path / "gpu.pt")
        blob = pickle.dumps(gpu)

    # the pickle really holds CUDA tensors: without skorch's mapping it does not load here
    with monkeypatch.context() as patched:
        patched.setattr(skorch.net, "get_map_location", lambda device: None)
        patched.setattr(skorch.NeuralNet, "_check_device", lambda self, requested, mapped:
                        requested)
        with pytest.raises(RuntimeError, match="CUDA"):
            pickle.loads(blob)

    for load in (lambda: ImplicitDeblurRegressor.load(tmp_path / "gpu.pt"),
                 lambda: pickle.loads(blob)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load()
        messages = " ".join(str(w.message) for w in caught)
        assert "device='cuda' but CUDA is not available" in messages
        assert loaded.device == "cpu" and str(loaded.net_.device) == "cpu"
        assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
        assert_same_predictions(fitted, loaded, X[N:])
        loaded.partial_fit(X[:N], y[:N])  # training continues on the CPU
        assert len(loaded.history) == len(fitted.history) + 1


# -- checkpoints, resume, warm start, partial_fit ------------------------------------------------
def resumable(blur, **params):
    """Every random stream in use: augmentation, fresh noise, shuffling, learned step, warm
    starts of the solves."""
    # a cosine schedule spans the max_epochs of each fit call, so a run split over several
    # calls follows another schedule: resume equivalence is tested with a constant rate
    defaults = dict(augment=True, noise_std="auto", learn_step=True, reuse_fixed_points=True,
                    max_epochs=3, lr=5e-3, lr_schedule="constant")
    return deblur(blur, **{**defaults, **params})


@pytest.fixture(scope="module")
def uninterrupted(blurred, blur):
    X, y = blurred
    return resumable(blur).fit(X[:N], y[:N])


def test_checkpoint_and_resume_match_an_uninterrupted_run(uninterrupted, blurred, blur,
                                                          tmp_path, monkeypatch):
    X, y = blurred
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    checkpoint = Checkpoint(dirname=str(tmp_path / "checkpoints"), monitor=None)
    first = resumable(blur, max_epochs=2, callbacks=[checkpoint, LoadInitState(checkpoint)])
    first.fit(X[:N], y[:N])  # "interrupted" after 2 of 3 epochs
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "criterion.pt", "history.json", "optimizer.pt", "params.pt"]
    resumed = resumable(blur, max_epochs=1, callbacks=[checkpoint, LoadInitState(checkpoint)])
    resumed.fit(X[:N], y[:N])  # a new process would do the same
    assert len(resumed.history) == 3
    assert_same_weights(weights(uninterrupted), weights(resumed), atol=1e-6)
    np.testing.assert_allclose(resumed.history[:, "train_loss"],
                               uninterrupted.history[:, "train_loss"], rtol=1e-6)
    assert os.listdir(workdir) == []  # nothing written to the working directory


def test_fit_writes_nothing_to_the_working_directory(blurred, blur, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deblur(blur).fit(blurred[0][:N], blurred[1][:N])
    assert os.listdir(tmp_path) == []


def test_warm_start_continues_like_an_uninterrupted_run(uninterrupted, blurred, blur):
    X, y = blurred
    est = resumable(blur, max_epochs=2).fit(X[:N], y[:N])
    est.set_params(warm_start=True, max_epochs=1).fit(X[:N], y[:N])
    assert len(est.history) == est.n_iter_ == 3
    assert_same_weights(weights(uninterrupted), weights(est), atol=1e-6)
    # without warm_start a refit starts over
    est.set_params(warm_start=False, max_epochs=2).fit(X[:N], y[:N])
    assert len(est.history) == 2
    assert_same_weights(weights(resumable(blur, max_epochs=2).fit(X[:N], y[:N])), weights(est))


def test_partial_fit_adds_exactly_one_epoch(uninterrupted, blurred, blur):
    X, y = blurred
    est = resumable(blur, max_epochs=2).fit(X[:N], y[:N])
    est.partial_fit(X[:N], y[:N])
    assert len(est.history) == est.n_iter_ == 3
    assert_same_weights(weights(uninterrupted), weights(est), atol=1e-6)
    first = resumable(blur).partial_fit(X[:N], y[:N])  # partial_fit alone initialises
    assert len(first.history) == 1


def test_continued_training_on_other_images_starts_fresh_warm_starts(blurred, blur):
    X, y = blurred
    est = resumable(blur, max_epochs=1).fit(X[:8], y[:8])
    est.partial_fit(X[:N], y[:N])  # more images than the warm-start cache was made for
    est.partial_fit(X[:N, :12, :12], y[:N, :12, :12])  # other image size (a blur takes any)
    est.partial_fit(X[N:2 * N], y[N:2 * N])  # same count, other images
    assert len(est.history) == 4
    assert np.isfinite(est.predict(X[:4])).all()


# -- determinism and the global torch state ------------------------------------------------------
def test_fixed_random_state_gives_identical_runs(blurred, blur):
    X, y = blurred
    runs = [deblur(blur, regularizer=None, max_epochs=1, random_state=3).fit(X[:N], y[:N])
            for _ in range(2)]
    assert_same_weights(weights(runs[0]), weights(runs[1]))
    assert_same_predictions(runs[0], runs[1], X[N:])
    other = deblur(blur, regularizer=None, max_epochs=1, random_state=4).fit(X[:N], y[:N])
    assert runs[0].history[:, "train_loss"] != other.history[:, "train_loss"]


def test_inputs_are_never_modified(blurred, blur):
    X = np.array(blurred[0][:N])
    y = np.array(blurred[1][:N])
    X_t, y_t = torch.from_numpy(X.copy()), torch.from_numpy(y.copy())
    copies = X.copy(), y.copy(), X_t.clone(), y_t.clone()
    est = deblur(blur, max_epochs=1).fit(X, y)
    est.partial_fit(X_t, y_t)
    est.predict(X)
    est.predict(X_t)
    est.score(X, y)
    np.testing.assert_array_equal(X, copies[0])
    np.testing.assert_array_equal(y, copies[1])
    assert torch.equal(X_t, copies[2]) and torch.equal(y_t, copies[3])


def _global_state():
    return (torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled(),
            torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())


def _assert_same_state(before, after):
    assert before[:3] == after[:3]
    assert torch.equal(before[3], after[3]), "the global torch RNG was consumed"
    assert np.array_equal(before[4], after[4]), "the global numpy RNG was consumed"
    assert before[5] == after[5]


def test_fit_and_predict_leave_the_global_torch_state_alone(blurred, blur):
    X, y = blurred
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        before = _global_state()
        est = deblur(blur, regularizer=None, n_threads=1, random_state=0)
        est.fit(X[:N], y[:N])  # builds and initialises the default network
        est.predict(X[N:])
        est.partial_fit(X[:N], y[:N])
        est.score(X[N:], y[N:])
        pickle.loads(pickle.dumps(est)).predict(X[N:N + 2])
        _assert_same_state(before, _global_state())
    finally:
        torch.set_num_threads(previous_threads)


def test_fit_and_predict_under_another_default_dtype_and_grad_mode(blurred, blur):
    X, y = blurred
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        est = deblur(blur, regularizer=None)
        est.fit(X[:N], y[:N])
        images = est.predict(X[N:])
        assert torch.get_default_dtype() == torch.float64
        assert images.dtype == np.float32 and np.isfinite(images).all()
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        est = deblur(blur).fit(X[:N], y[:N])  # trains although the caller disabled gradients
        assert not torch.is_grad_enabled()
    trained = est.net_.module_.layer.map.regularizer.state_dict()
    initial = shared_regularizer().state_dict()
    assert any(not torch.equal(trained[name], initial[name]) for name in initial)
    with torch.enable_grad():
        est.predict(X[N:])
        assert torch.is_grad_enabled()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_a_model_saved_on_a_gpu_loads_in_a_process_without_cuda(blurred, blur, tmp_path):
    import subprocess
    import sys

    X, y = blurred
    est = deblur(blur, device="cuda", max_epochs=1).fit(X[:N], y[:N])
    assert all(p.is_cuda for p in est.net_.module_.parameters())
    est.save(tmp_path / "gpu.pt")
    np.save(tmp_path / "X.npy", X[N:])
    np.save(tmp_path / "expected.npy", est.predict(X[N:]))
    script = (
        "import warnings, numpy as np, torch\n"
        "from implicit_inverse import ImplicitRegressor\n"
        "assert not torch.cuda.is_available()\n"
        "warnings.simplefilter('ignore')\n"
        f"est = ImplicitRegressor.load({str(tmp_path / 'gpu.pt')!r})\n"
        "assert est.device == 'cpu' and str(est.net_.device) == 'cpu'\n"
        f"got = est.predict(np.load({str(tmp_path / 'X.npy')!r}))\n"
        f"np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), "
        "atol=1e-4)\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
