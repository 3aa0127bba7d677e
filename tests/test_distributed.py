"""Data-parallel training of an implicit layer with DistributedDataParallel (2 CPU processes).

Two processes (gloo backend, ``torch.multiprocessing`` with the spawn method) each train on half
of every batch; DDP averages their gradients, which for a mean loss over equal halves is the
gradient of the whole batch. The result must match one process trained on the whole batches.
The fixed-point solve treats every sample independently (per-sample stopping and Anderson
weights), so splitting a batch across processes does not change any sample's fixed point, and in
float64 both runs end with the same parameters to rounding. (In float32 they agree to about 1e-7
after one step, but these few aggressive steps amplify rounding differences to about 1e-4: the
same happens in one process between a whole batch and two accumulated halves.)
"""

import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from implicit_inverse.datasets import load_faces
from implicit_inverse.equilibrium import GradientStep, ImplicitLayer
from implicit_inverse.metrics import psnr
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

WORLD_SIZE = 2
STEPS = 15
LR = 0.5

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")


def _operator():
    return Blur(gaussian_kernel(5, 1.0))


def _layer(seed=0):
    torch.manual_seed(seed)
    regularizer = TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.05)
    step = GradientStep(_operator(), regularizer, eta=1.0, precondition=True, lam=0.05,
                        initializer="tikhonov")
    layer = ImplicitLayer(step, solver="anderson", gradient="jfb", max_iter=30, tol=1e-5,
                          warn=False)
    return layer.double()


def _data():
    """16 training and 8 test faces (16x16) with their measurements, as (N, 1, H, W) tensors."""
    faces = load_faces(size=16, n=24)[:, None]
    measurements = make_measurements(faces, _operator(), 0.01, random_state=0)
    clean, measured = torch.from_numpy(faces).double(), torch.from_numpy(measurements).double()
    return measured[:16], clean[:16], measured[16:], clean[16:]


def _train(model, measured, clean, rank=0, world_size=1):
    """``STEPS`` SGD steps on the whole training set, this process taking its share of it.

    (SGD rather than Adam: Adam's first steps move every parameter by about ``lr`` whatever the
    size of its gradient, so rounding differences in near-zero gradients, e.g. those of the
    layers behind the zero-initialised output layer, would become differences of ``lr``.)
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    share = slice(rank, None, world_size)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(measured[share]), clean[share])
        loss.backward()
        optimizer.step()


def _worker(rank, world_size, store, result):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    try:
        layer = _layer()
        model = DistributedDataParallel(layer)
        measured, clean, _, _ = _data()
        _train(model, measured, clean, rank, world_size)
        if rank == 0:
            torch.save(layer.state_dict(), result)
        dist.barrier()  # no rank tears gloo down while another still talks to it (SIGABRT)
    finally:
        dist.destroy_process_group()


def _run_processes(worker, args, what, timeout=120):
    """Run ``worker(rank, *args)`` in ``WORLD_SIZE`` spawned processes; fail after ``timeout``."""
    context = mp.start_processes(worker, args=args, nprocs=WORLD_SIZE, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {WORLD_SIZE} {what} processes did not finish within {timeout} s")


def _spawn(tmp_path):
    _run_processes(_worker, (WORLD_SIZE, str(tmp_path / "store"), str(tmp_path / "ddp.pt")),
                   "DDP")
    return torch.load(tmp_path / "ddp.pt")


def _test_psnr(state):
    layer = _layer()
    layer.load_state_dict(state)
    _, _, measured, clean = _data()
    with torch.no_grad():
        return psnr(clean.numpy(), layer(measured).numpy())


@pytest.mark.slow
def test_ddp_two_processes_matches_one_process(tmp_path):
    """Same parameters (float64, to rounding) and test PSNR as one process on whole batches."""
    ddp_state = _spawn(tmp_path)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _layer()
        measured, clean, _, _ = _data()
        initial_psnr = _test_psnr(single.state_dict())
        _train(single, measured, clean)
    finally:
        torch.set_num_threads(threads)
    single_state = single.state_dict()

    assert ddp_state.keys() == single_state.keys()
    for name, value in single_state.items():
        np.testing.assert_allclose(ddp_state[name].numpy(), value.numpy(), rtol=1e-7,
                                   atol=1e-9, err_msg=name)
    single_psnr, ddp_psnr = _test_psnr(single_state), _test_psnr(ddp_state)
    assert abs(single_psnr - ddp_psnr) < 0.1
    # training did something (about 23.1 -> 24.0 dB): the network's output layer left zero
    assert single_psnr > initial_psnr + 0.3
    assert float(single_state["map.regularizer.network.body.4.weight"].abs().max()) > 0


# -- the estimators under torch.distributed ----------------------------------------------------
# ``ImplicitRegressor.fit`` finds the process group (see implicit_inverse.training.distributed):
# each process trains on its shard, gradients are averaged with one all_reduce per batch, and
# only rank 0 writes checkpoints and models. The estimators compute in float32, so 2 processes
# agree with 1 process to float32 rounding (amplified a little by the solves' stopping
# decisions), not to float64 rounding as the bare layer above.
ESTIMATOR_TOLERANCE = 1e-6
"""Largest parameter difference allowed between 1 and 2 processes (measured: see README)."""


def _faces(n=16):
    clean = load_faces(size=16, n=n)
    return make_measurements(clean, _operator(), 0.01, random_state=0), clean


def _deterministic_estimator(**params):
    """Training that depends on the global batch only: no fresh noise, augmentation or
    Hutchinson probes (each process draws its own), whole training set in every batch.

    ``noise_std=0`` trains on noiseless measurements ``A y``, on which ``lam="auto"`` would pick
    the grid's floor (1e-5): the preconditioner ``(A^T A + lam I)^{-1}`` then amplifies float32
    rounding about 1e5-fold, and Adam turns the rounding-sized gradients of some parameters into
    steps of about ``lr``, so that even one process trained on the same set in another order
    ends 1e-3 away. ``lam`` is therefore fixed at 0.01, the weight ``"auto"`` picks for these
    faces' 0.01 noise."""
    from implicit_inverse import ImplicitDeblurRegressor
    settings = dict(operator=_operator(), noise_std=0.0, lam=0.01, augment=False,
                    jacobian_penalty=0.0, batch_size=16, max_epochs=2, lr=1e-3,
                    lr_schedule="constant", train_tol=1e-4, train_max_iter=60, random_state=0,
                    n_threads=1)
    return ImplicitDeblurRegressor(**{**settings, **params})


def _parameters(estimator):
    return {name: value.detach().clone()
            for name, value in estimator.net_.module_.named_parameters()}


def _estimator_worker(rank, world_size, folder):
    from pathlib import Path

    from skorch.callbacks import Checkpoint

    from implicit_inverse import ImplicitDeblurRegressor

    folder = Path(folder)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=rank,
                            world_size=world_size)
    try:
        X, y = _faces()
        checkpoint = Checkpoint(dirname=str(folder / f"checkpoint_{rank}"), monitor=None)
        estimator = _deterministic_estimator(callbacks=[checkpoint]).fit(X, y)
        estimator.save(folder / f"model_{rank}.pt")
        # the defaults: random_state=None (the seed comes from rank 0), lam and noise "auto",
        # augmentation, Jacobian penalty probes; each process its own streams
        defaults = ImplicitDeblurRegressor(operator=_operator(), max_epochs=1, batch_size=8,
                                           n_threads=1).fit(X, y)
        sampler = defaults.net_.training_measurements
        sampler.start_epoch(0)
        torch.save({
            "parameters": _parameters(estimator),
            "train_loss": [float(v) for v in estimator.history[:, "train_loss"]],
            "cache_size": len(estimator.net_.module_.cache.points),
            "default_parameters": _parameters(defaults),
            "default_lam": float(defaults.lam_), "default_noise": float(defaults.noise_std_),
            "default_seed": sampler.seed,
            "default_noise_draw": torch.randn(5, generator=sampler.generator("cpu")),
            "default_jac": [float(v) for v in defaults.history[-1, "batches", :, "jac"]],
        }, folder / f"rank_{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn_estimators(folder):
    _run_processes(_estimator_worker, (WORLD_SIZE, str(folder)), "training")
    return [torch.load(folder / f"rank_{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("estimator_ddp")
    return folder, _spawn_estimators(folder)


def _single_process(**params):
    threads = torch.get_num_threads()
    try:
        return _deterministic_estimator(**params).fit(*_faces())
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_estimator_two_processes_match_one_process(two_process_run):
    """Same parameters as one process with the same global batch, on every rank."""
    folder, (first, second) = two_process_run
    for name, value in first["parameters"].items():  # every rank holds the same model
        torch.testing.assert_close(second["parameters"][name], value, rtol=0, atol=0)
    assert first["train_loss"] == second["train_loss"]  # the loss recorded is the global mean
    single = _single_process()
    reference = _parameters(single)
    assert reference.keys() == first["parameters"].keys()
    difference = max(float((first["parameters"][name] - value).abs().max())
                     for name, value in reference.items())
    assert difference < ESTIMATOR_TOLERANCE, difference
    np.testing.assert_allclose(first["train_loss"], single.history[:, "train_loss"], rtol=1e-5)
    moved = max(float((value - _parameters(_deterministic_estimator(max_epochs=1).fit(
        *_faces()))[name]).abs().max()) for name, value in reference.items())
    assert moved > 100 * ESTIMATOR_TOLERANCE  # training moved the parameters far beyond that
    assert first["cache_size"] == second["cache_size"] == 8  # each process: its 8 samples


@pytest.mark.slow
def test_estimator_processes_share_the_model_but_not_the_random_streams(two_process_run):
    _, (first, second) = two_process_run
    assert first["default_lam"] == second["default_lam"]
    assert first["default_noise"] == second["default_noise"]
    for name, value in first["default_parameters"].items():
        torch.testing.assert_close(second["default_parameters"][name], value, rtol=0, atol=0)
    assert first["default_seed"] != second["default_seed"]
    assert not torch.equal(first["default_noise_draw"], second["default_noise_draw"])
    assert first["default_jac"] != second["default_jac"]  # probes and batches of its own


@pytest.mark.slow
def test_only_rank_0_writes_and_its_checkpoint_resumes_in_one_process(two_process_run):
    from skorch.callbacks import Checkpoint, LoadInitState

    from implicit_inverse import ImplicitDeblurRegressor

    folder, (first, _) = two_process_run
    assert (folder / "model_0.pt").exists() and not (folder / "model_1.pt").exists()
    assert (folder / "checkpoint_0" / "params.pt").exists()
    assert not (folder / "checkpoint_1").exists() or not any((folder / "checkpoint_1").iterdir())
    saved = ImplicitDeblurRegressor.load(folder / "model_0.pt")
    for name, value in _parameters(saved).items():
        torch.testing.assert_close(value, first["parameters"][name], rtol=0, atol=0)

    # resume in one process: the checkpoint's warm starts (rank 0's 8 samples) are not those of
    # the 16 samples here and are left out; the weights, optimizer and history are loaded
    checkpoint = Checkpoint(dirname=str(folder / "checkpoint_0"), monitor=None)
    resumed = _single_process(max_epochs=1, callbacks=[checkpoint, LoadInitState(checkpoint)])
    assert len(resumed.history) == 3
    assert resumed.history[:2, "train_loss"] == first["train_loss"]
    # the third epoch starts its solves afresh instead of from the warm starts: its fixed points
    # differ within train_tol, and so does the last step (measured: 4.2e-4 = 0.42 lr); the loss
    # of that epoch is the uninterrupted one's to 1e-3 dB
    uninterrupted = _single_process(max_epochs=3)
    assert abs(resumed.history[-1, "train_loss"] - uninterrupted.history[-1, "train_loss"]) < 1e-3
    reference = _parameters(uninterrupted)
    difference = max(float((value - reference[name]).abs().max())
                     for name, value in _parameters(resumed).items())
    assert difference < 1e-3, difference  # one Adam step (lr) at most
    fresh = _parameters(_single_process(max_epochs=1))  # not restarted from scratch
    assert max(float((value - fresh[name]).abs().max())
               for name, value in _parameters(resumed).items()) > 1e-3


@pytest.mark.slow
def test_command_line_trains_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node 2 implicit-inverse train``: one data-parallel training, one
    model file, written by rank 0."""
    import subprocess
    import sys

    from implicit_inverse import ImplicitRegressor

    model = tmp_path / "model.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(WORLD_SIZE), "-m", "implicit_inverse.cli", "train",
               "--data", "faces", "--size", "16", "--n-images", "24", "--epochs", "1",
               "--batch-size", "8", "--max-iter", "10", "--threads", "1", "--model", str(model)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("Saved the model") == 1
    estimator = ImplicitRegressor.load(model)
    # each process trained on half of the global batch of 8; the network loaded in one process
    # is rebuilt from the recipe with the whole batch
    assert estimator.history[-1, "batches", 0, "train_batch_size"] == 4
    assert estimator.net_.batch_size == 8
    assert [path.name for path in tmp_path.iterdir()] == ["model.pt"]
