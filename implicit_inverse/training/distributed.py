"""Data-parallel training of the implicit estimators over ``torch.distributed``.

Launched with ``torchrun --nproc_per_node N script.py`` (or any launcher that sets torch's
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``), the script that runs alone
trains one model on N processes: ``fit`` finds the process group (it initialises it from
those variables when the script has not: ``gloo`` on the CPU, ``nccl`` on CUDA) and

- gives each process its shard of the training set: samples ``rank, rank + N, ...``, padded
  by wrapping around so that every shard has ``ceil(n / N)`` samples and every process runs
  the same number of batches of ``ceil(batch_size / N)`` samples (``batch_size`` is the
  global batch);
- agrees on what every process must share: the seed (network initialisation), ``lam_`` and
  ``noise_std_`` are those of rank 0, and the initial parameters are broadcast from it;
- seeds each process's noise, augmentation, probes and shuffling with its own stream
  (:func:`rank_seed`), so that no two processes draw the same;
- keeps the warm-start cache of the process's own shard only (``ceil(n / N)`` images);
- skips a batch on every process when it is skipped on one (a diverged solve or a non-finite
  loss), and otherwise averages the gradients (and the recorded loss) over the processes with
  one ``all_reduce`` after ``backward``;
- writes checkpoints (skorch ``Checkpoint``) and models (``save``) on rank 0 only: the
  other processes return without writing.

Why not ``DistributedDataParallel`` or skorch's ``AccelerateMixin`` (which prepares the module
with DDP): DDP reduces gradients in hooks that fire during ``backward``, so a batch that one
process skips (its solve diverged) and the others do not would leave them waiting forever,
and the training step asks the module for more than its forward (its warm-start ``cache``,
``last_stats``, the Jacobian penalty at its fixed points), which a DDP wrapper hides. The models are
small (a DnCNN of ~20k parameters) and their time goes into the fixed-point solves, so DDP's
overlap of communication with backward buys nothing: one flat ``all_reduce`` per batch,
after an agreed skip decision, is all the estimator needs.

Nothing here launches processes or communicates by itself: the collectives are torch's.
"""

from __future__ import annotations

import math
import os

import torch
import torch.distributed as dist

ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""Variables a torch launcher sets (``torchrun``, ``accelerate launch``, SLURM scripts)."""


def setup(device):
    """Join the launcher's process group if there is one, and return this process's device.

    Parameters
    ----------
    device : str
        The resolved device ("cpu", "cuda", "cuda:N").

    Returns
    -------
    str
        ``device``, with plain "cuda" replaced by ``"cuda:LOCAL_RANK"`` when several processes
        share a machine.

    Notes
    -----
    The group is initialised once per process (``gloo`` for the CPU, ``nccl`` for CUDA) when
    the launcher's variables are set and ``WORLD_SIZE`` is above 1; it is left initialised for
    the rest of the process, as a script's own ``init_process_group`` would be.
    """
    if (dist.is_available() and not dist.is_initialized()
            and all(name in os.environ for name in ENVIRONMENT)
            and int(os.environ["WORLD_SIZE"]) > 1):
        cuda = str(device).startswith("cuda") and dist.is_nccl_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    if str(device) == "cuda" and world()[1] > 1 and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def world():
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process():
    """True on rank 0, and in a process that is not part of a process group."""
    return world()[0] == 0


def shard(n_samples):
    """Indices of this process's training samples.

    Parameters
    ----------
    n_samples : int

    Returns
    -------
    torch.Tensor of shape (ceil(n_samples / world_size),), int64
        ``rank, rank + world_size, ...`` wrapping around past the end, so that every process
        gets as many samples (``torch.arange(n_samples)`` in a single process).
    """
    rank, size = world()
    padded = math.ceil(n_samples / size) * size
    return torch.arange(rank, padded, size) % n_samples


def own(samples):
    """This process's shard of ``samples`` (a tensor whose first axis holds the samples)."""
    if world()[1] == 1:
        return samples
    return samples[shard(len(samples))]


def local_batch_size(batch_size):
    """Per-process batch size for a global ``batch_size``: ``ceil(batch_size / world_size)``."""
    return math.ceil(batch_size / world()[1])


def rank_seed(seed):
    """This process's seed of its noise, augmentation, probes and shuffling.

    ``seed`` itself on rank 0 (and in a single process); a different stream on every other
    rank.
    """
    rank = world()[0]
    return seed if rank == 0 else (seed + 104_729 * rank) % (2 ** 31 - 1)


def agree(values, device="cpu"):
    """Rank 0's ``values`` (a sequence of ints and floats) on every process, same types."""
    if world()[1] == 1:
        return list(values)
    tensor = torch.tensor([float(value) for value in values], dtype=torch.float64,
                          device=device)
    dist.broadcast(tensor, src=0)
    return [type(value)(item) for value, item in zip(values, tensor.tolist())]


def broadcast_parameters(module):
    """Copy rank 0's parameters into ``module`` on every process (buffers are left alone: the
    warm-start cache is each process's own)."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for parameter in module.parameters():
            dist.broadcast(parameter.data, src=0)


def any_process(flag, device="cpu"):
    """Whether ``flag`` (a bool) is True on at least one process."""
    if world()[1] == 1:
        return bool(flag)
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def average(loss):
    """Mean of the scalar tensor ``loss`` over the processes (detached)."""
    if world()[1] == 1:
        return loss
    tensor = loss.detach().reshape(1).clone()
    dist.all_reduce(tensor)
    return tensor[0] / world()[1]


def average_gradients(module, loss):
    """Replace the gradients of ``module``'s parameters by their mean over the processes.

    One ``all_reduce`` of a flat tensor holding every gradient and ``loss``. Every process
    must call it with the same parameters holding gradients (they run the same graph).

    Parameters
    ----------
    module : torch.nn.Module
    loss : torch.Tensor of shape ()
        This process's loss of the batch.

    Returns
    -------
    torch.Tensor of shape ()
        The mean loss over the processes (detached).
    """
    size = world()[1]
    if size == 1:
        return loss
    gradients = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in gradients]
                     + [loss.detach().reshape(1).to(gradients[0].dtype if gradients
                                                    else loss.dtype)])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for gradient in gradients:
        gradient.copy_(flat[offset:offset + gradient.numel()].view_as(gradient))
        offset += gradient.numel()
    return flat[-1].to(loss.dtype)
