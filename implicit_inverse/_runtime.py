"""The one place for torch's process-wide runtime settings: device, threads, dtype, precision.

Every change made here is scoped to a ``with`` block and undone when the block ends, also when
it raises, so that the estimators never leave torch's global state changed:

- :func:`resolve_device`: the device a user asked for (``"auto"`` resolved, a clear error when
  CUDA is requested but missing), for the estimators' ``device=`` and the ``--device`` option.
- :func:`torch_threads`: torch's CPU thread count (the estimators' ``n_threads``).
- :func:`float32_default`: float32 as torch's default dtype.
- :class:`SeedStream`: the seeds of a training run's random streams (network initialisation,
  noise and augmentation per epoch, shuffling, pretraining, the ``lam`` tuning noise).
- :func:`exact_float32`: TF32 off for CUDA convolutions and matrix products. cuDNN runs float32
  convolutions in TF32 by default on Ampere and later GPUs (10 significant bits), which holds
  the relative residual of a fixed-point solve near 1e-3, above the default ``tol=1e-4``: the
  solvers run under :func:`solve_precision`, which uses this context for tight tolerances.

The settings are process-wide: another thread's torch work during a block sees them too.
"""

from __future__ import annotations

import contextlib
from numbers import Integral
from typing import NamedTuple

import torch
from sklearn.utils import check_random_state

TF32_SAFE_TOL = 1e-2
"""Smallest solver tolerance left to TF32 kernels (when the caller's settings allow them).

A map evaluated with TF32 convolutions is itself inexact: measured on an H200, the predict
solves of a trained model stalled at a relative residual near 1e-3 (``benchmarks/gpu.py``
reports this floor per network as "TF32 floor"). A solve whose tolerance is at least ten times
that floor converges as fast with TF32 as without, so it keeps the caller's (faster) settings;
tighter solves (the default ``tol=1e-4`` of ``predict`` and ``train_tol=1e-3`` of training)
run in exact float32.
"""


# -- device ----------------------------------------------------------------------------------
def resolve_device(device, option=None):
    """The torch device name for a requested device, ``"auto"`` resolved.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when available, else the CPU) or
        another name torch accepts.
    option : str or None, default None
        The command-line option that gave ``device`` (``"--device"``): the error messages then
        name it as typed on a command line. None names the estimators' ``device=`` parameter.

    Returns
    -------
    str
        The device name (``str(device)``, or ``"cuda"`` / ``"cpu"`` for ``"auto"``).

    Raises
    ------
    ValueError
        CUDA requested while ``torch.cuda.is_available()`` is False, or a name that is not a
        torch device.
    """
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        requested, alternatives = ((f"device={name!r}", "device='cpu' or 'auto'") if option is None
                                   else (f"{option} {name}", f"{option} cpu or auto"))
        raise ValueError(f"{requested} was requested but CUDA is not available "
                         f"(torch.cuda.is_available() is False); use {alternatives}")
    try:
        torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option or 'device'} must be 'cpu', 'cuda', 'cuda:N' or 'auto', got "
                         f"{device!r}") from None
    return name


# -- threads and default dtype ---------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(n_threads):
    """Set torch's CPU thread count for the duration of a block, then restore it.

    Parameters
    ----------
    n_threads : int or None
        None leaves torch's setting alone.
    """
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def float32_default():
    """Make float32 torch's default dtype for the duration of a block (modules built and tensors
    created inside are float32 like the data), then restore the caller's default."""
    previous = torch.get_default_dtype()
    if previous == torch.float32:
        yield
        return
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# -- float32 precision on CUDA ---------------------------------------------------------------
@contextlib.contextmanager
def exact_float32(device=None):
    """Run a block with TF32 off for CUDA convolutions and matrix products, then restore.

    Turns off ``torch.backends.cudnn.allow_tf32`` (cuDNN convolutions; on by default) and
    ``torch.backends.cuda.matmul.allow_tf32`` (cuBLAS float32 matrix products; off by default,
    on after ``torch.set_float32_matmul_precision("high")`` or ``"medium"``) for the block. A
    switch that is already off is not touched; one that was on is restored when the block
    ends, also when it raises (the matmul precision to its former ``"high"`` or ``"medium"``).
    Blocks nest. float16 and bfloat16 kernels (``torch.autocast``) are not affected.

    Parameters
    ----------
    device : str, torch.device or None, default None
        The device the block computes on: for a device other than CUDA the context does
        nothing (no cost, no setting read). None applies it whatever the device.

    Notes
    -----
    On torch 2.9 and later, which also has per-operation settings
    (``torch.backends.cudnn.conv.fp32_precision``), the convolutions' precision is turned to
    ``"ieee"`` when it still resolves to ``"tf32"`` through a parent setting; when the caller has
    mixed the legacy and the per-operation settings so that torch refuses to read the legacy
    switch, the per-operation setting alone is changed and restored. The settings are global to
    the process: torch work of other threads during the block runs without TF32 too.

    Examples
    --------
    >>> import torch
    >>> with exact_float32():
    ...     torch.backends.cudnn.allow_tf32
    False
    """
    if device is not None and torch.device(device).type != "cuda":
        yield
        return
    restores = []
    try:
        restores.append(_exact_convolutions())
        restores.append(_exact_matmuls())
        yield
    finally:
        for restore in reversed(restores):
            restore()


def solve_precision(tol, device):
    """The context in which a fixed-point solve to ``tol`` on ``device`` evaluates its map.

    Parameters
    ----------
    tol : float
        The solve's relative-residual tolerance.
    device : str or torch.device
        Where the iterates live.

    Returns
    -------
    context manager
        :func:`exact_float32` for ``tol < TF32_SAFE_TOL`` (a no-op off CUDA), else a null
        context that keeps the caller's TF32 settings (see :data:`TF32_SAFE_TOL`).
    """
    if tol >= TF32_SAFE_TOL:
        return contextlib.nullcontext()
    return exact_float32(device)


def _leave_alone():
    """The restore step of a switch that was already off."""


def _exact_convolutions():
    """Turn TF32 off for cuDNN convolutions; return the function that restores the setting."""
    cudnn = torch.backends.cudnn
    per_operation = getattr(cudnn, "conv", None)  # torch >= 2.9
    try:
        allowed = cudnn.allow_tf32
    except RuntimeError:  # torch >= 2.9 refuses to read the legacy switch after mixed settings
        if per_operation is None or per_operation.fp32_precision != "tf32":
            return _leave_alone
        per_operation.fp32_precision = "ieee"
        return lambda: setattr(per_operation, "fp32_precision", "tf32")
    if not allowed:
        return _leave_alone
    cudnn.allow_tf32 = False
    if per_operation is not None and per_operation.fp32_precision == "tf32":
        # inherited from a parent per-operation setting: pin both cuDNN operations, so that the
        # legacy switch stays readable (it requires them to agree)
        per_operation.fp32_precision = cudnn.rnn.fp32_precision = "ieee"
    return lambda: setattr(cudnn, "allow_tf32", True)


def _exact_matmuls():
    """Turn TF32 off for float32 matrix products; return the function that restores it."""
    try:
        allowed = torch.backends.cuda.matmul.allow_tf32
        precision = torch.get_float32_matmul_precision()
    except RuntimeError:  # mixed legacy and per-operation settings: torch's own matmuls refuse
        return _leave_alone  # to run on CUDA then, so there is nothing to make exact
    if not allowed:
        return _leave_alone
    cpu = getattr(torch.backends.mkldnn, "matmul", None)  # torch >= 2.9
    cpu_precision = None if cpu is None else cpu.fp32_precision
    # the precision setter keeps the legacy and per-operation settings consistent
    torch.set_float32_matmul_precision("highest")

    def restore():
        torch.set_float32_matmul_precision(precision)
        if cpu is not None:  # the setter also changed the CPU's (oneDNN) matmul precision
            cpu.fp32_precision = cpu_precision

    return restore


# -- random streams --------------------------------------------------------------------------
class SeedStream(NamedTuple):
    """The seeds of one training run's random streams, each a pure function of ``seed``.

    Every stream of a run is derived here, so that two never coincide and a run resumed at
    epoch ``k`` draws what an uninterrupted run draws there.

    Parameters
    ----------
    seed : int
        The run's seed, in ``[0, 2**31 - 1)`` (:meth:`of` draws it from a ``random_state``).

    Examples
    --------
    >>> stream = SeedStream(7)
    >>> stream.shuffle(3) == stream.epoch(3) + 1
    True
    >>> SeedStream.pretraining_epoch(0)
    -1
    """

    seed: int

    @classmethod
    def of(cls, random_state):
        """The stream of a run seeded by ``random_state`` (int, RandomState or None).

        A ``RandomState`` advances by one draw; None gives a fresh seed.
        """
        return cls(int(check_random_state(random_state).randint(2 ** 31 - 1)))

    def epoch(self, epoch):
        """Seed of the noise, augmentation and penalty probes of ``epoch`` (training epochs are
        0, 1, ...; pretraining epochs are negative, see :meth:`pretraining_epoch`)."""
        return (self.seed * 1_000_003 + epoch * 7_919) % (2 ** 63 - 1)

    def shuffle(self, epoch):
        """Seed of the order of the training batches of ``epoch``."""
        return self.epoch(epoch) + 1

    def pretraining_shuffle(self):
        """Seed of the order of the pretraining batches (one stream over its epochs)."""
        return self.seed + 2

    @staticmethod
    def pretraining_epoch(index):
        """The epoch whose noise pretraining epoch ``index`` (0-based) draws: -1, -2, ...,
        distinct from every training epoch."""
        return -1 - index

    @staticmethod
    def tuning(random_state):
        """Seed of the noise of the measurements on which ``lam="auto"`` is tuned: an int
        ``random_state`` itself, else 0 (the same measurements on every call)."""
        return int(random_state) if isinstance(random_state, Integral) else 0
