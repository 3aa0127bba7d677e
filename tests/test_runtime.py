"""Tests for ``implicit_inverse._runtime``: scoped torch settings and device resolution (CPU).

The TF32 switches can be set and read without a GPU, so the context managers are tested here:
they change the settings inside their block only and restore the caller's settings after it,
also after an exception. What the settings do to CUDA kernels is tested in ``test_gpu.py``.
"""

import numpy as np
import pytest
import torch

from implicit_inverse._runtime import (TF32_SAFE_TOL, SeedStream, exact_float32, float32_default,
                                       resolve_device, solve_precision, torch_threads)
from implicit_inverse.cli._common import CommandError, check_device
from implicit_inverse.equilibrium import Anderson, ForwardIteration

PER_OPERATION = hasattr(torch.backends.cudnn, "conv")  # torch >= 2.9


def tf32_settings():
    """Every readable TF32 setting, legacy and per operation (None where torch refuses)."""
    readers = {
        "cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
    }
    if PER_OPERATION:
        readers.update({
            "cudnn.conv": lambda: torch.backends.cudnn.conv.fp32_precision,
            "cudnn.rnn": lambda: torch.backends.cudnn.rnn.fp32_precision,
            "cuda.matmul": lambda: torch.backends.cuda.matmul.fp32_precision,
            "mkldnn.matmul": lambda: torch.backends.mkldnn.matmul.fp32_precision,
        })
    settings = {}
    for name, read in readers.items():
        try:
            settings[name] = read()
        except RuntimeError:  # torch >= 2.9 after mixed legacy and per-operation settings
            settings[name] = None
    return settings


@pytest.fixture(autouse=True)
def default_tf32_settings():
    """Every test starts from torch's defaults and leaves them behind, whatever it does."""
    def reset():
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("highest")
        if PER_OPERATION:
            torch.backends.mkldnn.matmul.fp32_precision = "none"
            torch.backends.cuda.matmul.fp32_precision = "none"

    reset()
    yield
    reset()


def assert_exact_inside():
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    if PER_OPERATION:
        assert torch.backends.cudnn.conv.fp32_precision != "tf32"
        assert torch.backends.cuda.matmul.fp32_precision != "tf32"


# -- exact_float32 ---------------------------------------------------------------------------


@pytest.mark.parametrize("caller", [
    "defaults", "cudnn off", "matmul high", "matmul medium", "legacy matmul switch on"])
def test_exact_float32_turns_tf32_off_and_restores_the_callers_settings(caller):
    if caller == "cudnn off":
        torch.backends.cudnn.allow_tf32 = False
    elif caller == "matmul high":
        torch.set_float32_matmul_precision("high")
    elif caller == "matmul medium":
        torch.set_float32_matmul_precision("medium")
    elif caller == "legacy matmul switch on":
        torch.backends.cuda.matmul.allow_tf32 = True
    before = tf32_settings()
    with exact_float32():
        assert_exact_inside()
    assert tf32_settings() == before


def test_exact_float32_restores_after_an_exception():
    torch.set_float32_matmul_precision("high")
    before = tf32_settings()
    with pytest.raises(KeyError, match="inside"):
        with exact_float32():
            assert_exact_inside()
            raise KeyError("inside")
    assert tf32_settings() == before
    assert torch.backends.cudnn.allow_tf32 is True and torch.backends.cuda.matmul.allow_tf32


def test_exact_float32_nests():
    before = tf32_settings()
    with exact_float32():
        inside = tf32_settings()
        with exact_float32("cuda:0"):
            assert tf32_settings() == inside
        assert tf32_settings() == inside
    assert tf32_settings() == before


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_exact_float32_does_nothing_off_cuda(device):
    torch.set_float32_matmul_precision("high")
    before = tf32_settings()
    with exact_float32(device):
        assert tf32_settings() == before
    assert tf32_settings() == before


@pytest.mark.skipif(not PER_OPERATION, reason="per-operation TF32 settings need torch >= 2.9")
def test_exact_float32_with_mixed_legacy_and_per_operation_settings():
    # conv and rnn disagree: torch refuses to read the legacy cuDNN switch
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    try:
        with pytest.raises(RuntimeError):
            torch.backends.cudnn.allow_tf32  # noqa: B018 - reading raises
        before = tf32_settings()
        with exact_float32():
            assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert tf32_settings() == before
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        torch.backends.cudnn.rnn.fp32_precision = "tf32"


@pytest.mark.skipif(not PER_OPERATION, reason="per-operation TF32 settings need torch >= 2.9")
def test_exact_float32_overrides_tf32_inherited_from_a_parent_setting():
    previous = torch.backends.fp32_precision
    torch.backends.fp32_precision = "tf32"
    try:
        before = tf32_settings()
        with exact_float32():
            assert torch.backends.cudnn.allow_tf32 is False
            assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert tf32_settings() == before
    finally:
        torch.backends.fp32_precision = previous


@pytest.mark.parametrize("tol, exact", [(0.0, True), (1e-4, True), (1e-3, True),
                                        (TF32_SAFE_TOL, False), (0.1, False)])
def test_solve_precision_is_exact_below_the_safe_tolerance(tol, exact):
    before = tf32_settings()
    with solve_precision(tol, "cuda"):
        if exact:
            assert_exact_inside()
        else:
            assert tf32_settings() == before
    with solve_precision(tol, "cpu"):
        assert tf32_settings() == before
    assert tf32_settings() == before


@pytest.mark.parametrize("solver", [ForwardIteration(), Anderson()])
def test_cpu_solves_leave_the_settings_alone(solver):
    seen = []

    def f(x, index):
        seen.append(tf32_settings())
        return 0.5 * x + 1.0

    before = tf32_settings()
    x, stats = solver.solve(f, torch.ones(2, 1, 4, 4), max_iter=50, tol=1e-6)
    assert bool(stats.converged.all())
    torch.testing.assert_close(x, torch.full_like(x, 2.0), rtol=1e-5, atol=0)
    assert seen and all(settings == before for settings in seen)
    assert tf32_settings() == before


# -- threads and default dtype ---------------------------------------------------------------


def test_torch_threads_restores_after_an_exception():
    previous = torch.get_num_threads()
    target = 2 if previous != 2 else 1
    with pytest.raises(KeyError):
        with torch_threads(target):
            assert torch.get_num_threads() == target
            raise KeyError("inside")
    assert torch.get_num_threads() == previous
    with torch_threads(None):
        assert torch.get_num_threads() == previous


def test_float32_default_restores_after_an_exception():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(KeyError):
            with float32_default():
                assert torch.get_default_dtype() == torch.float32
                raise KeyError("inside")
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)


# -- device resolution -----------------------------------------------------------------------


def test_resolve_device_names():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert check_device("cpu") == "cpu"
    assert check_device("auto") == resolve_device("auto")


@pytest.mark.parametrize("device", ["tpu", "gpu", ""])
def test_resolve_device_refuses_unknown_names(device):
    with pytest.raises(ValueError) as error:
        resolve_device(device)
    assert str(error.value) == ("device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got "
                                f"{device!r}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("device, name", [("cuda", "cuda"), ("cuda:1", "cuda:1"),
                                          (torch.device("cuda", 0), "cuda:0")])
def test_cuda_without_cuda_messages_are_unchanged(device, name):
    with pytest.raises(ValueError) as error:
        resolve_device(device)
    assert str(error.value) == (
        f"device={name!r} was requested but CUDA is not available "
        "(torch.cuda.is_available() is False); use device='cpu' or 'auto'")
    with pytest.raises(CommandError) as error:
        check_device("cuda")
    assert str(error.value) == (
        "--device cuda was requested but CUDA is not available "
        "(torch.cuda.is_available() is False); use --device cpu or auto")


def test_seed_stream_keeps_the_seeds_of_earlier_releases():
    """The streams are those the training derived before they met in ``SeedStream``: seeded
    runs give the results they gave."""
    stream = SeedStream(12345)
    assert stream.epoch(3) == (12345 * 1_000_003 + 3 * 7_919) % (2 ** 63 - 1)
    assert stream.shuffle(3) == stream.epoch(3) + 1
    assert stream.pretraining_shuffle() == 12345 + 2
    assert [SeedStream.pretraining_epoch(i) for i in range(3)] == [-1, -2, -3]
    assert SeedStream.tuning(7) == 7 and SeedStream.tuning(None) == 0
    assert SeedStream.tuning(np.random.RandomState(0)) == 0
    assert SeedStream.of(0) == SeedStream.of(0) == SeedStream(
        int(np.random.RandomState(0).randint(2 ** 31 - 1)))
