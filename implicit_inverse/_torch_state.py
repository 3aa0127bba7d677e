"""Scoped changes of torch's global state, always restored (threads, default dtype)."""

from __future__ import annotations

import contextlib

import torch


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
