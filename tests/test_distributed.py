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
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, timeout=120):
    context = mp.start_processes(_worker, args=(WORLD_SIZE, str(tmp_path / "store"),
                                                str(tmp_path / "ddp.pt")),
                                 nprocs=WORLD_SIZE, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {WORLD_SIZE} DDP processes did not finish within {timeout} s")
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
