"""Automatic mixed precision of a regularizer: its forward under ``torch.autocast``.

Only the learned term runs in reduced precision: the operators' FFTs, the data term, the
preconditioner, the fixed-point residuals and the solver's bookkeeping stay in float32, because
the wrapper's output is cast back to the dtype of its input.

A reduced-precision regularizer makes the fixed-point map itself inexact: its output is rounded
to 8 (bfloat16) or 11 (float16) significant bits, which puts a floor of a few 1e-3 (bfloat16,
measured on faces) under the relative residual a solve can reach. Training tolerates that
(with ``train_tol=5e-3``: JFB needs only an approximate fixed point); the final solves should
not inherit it, so by default (``inference=False``) the wrapper autocasts in training mode only and
runs in float32 in evaluation mode (``predict``).
"""

from __future__ import annotations

import torch
from torch import nn

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Names accepted by :func:`with_precision` and the reduced dtype each one means."""


class MixedPrecision(nn.Module):
    """Run ``module`` under ``torch.autocast`` and return its output in the input's dtype.

    Parameters
    ----------
    module : torch.nn.Module
        Image -> image of the same shape (a regularizer). Its parameters stay float32;
        autocast runs its convolutions and matrix products in ``dtype``.
    dtype : torch.dtype, default torch.bfloat16
        ``torch.bfloat16`` (CPU and GPU) or ``torch.float16`` (GPU only: float16 on the CPU is
        refused).
    inference : bool, default False
        Also autocast in evaluation mode (``module.eval()``); by default evaluation runs in
        float32.

    Examples
    --------
    >>> import torch
    >>> from implicit_inverse.networks import DnCNN
    >>> net = MixedPrecision(DnCNN(depth=3, width=8))
    >>> net(torch.rand(2, 1, 8, 8)).dtype
    torch.float32
    """

    def __init__(self, module, dtype=torch.bfloat16, inference=False):
        super().__init__()
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
        self.module = module
        self.dtype = dtype
        self.inference = inference

    def forward(self, x, *args):
        """``module(x, *args)`` computed under autocast, returned with ``x``'s dtype.

        Parameters
        ----------
        x : torch.Tensor of shape (N, C, H, W)
        *args
            Further inputs of the module (a denoiser's noise level).

        Returns
        -------
        torch.Tensor of shape (N, C, H, W), dtype of ``x``
        """
        if not (self.training or self.inference):
            return self.module(x, *args)
        device_type = x.device.type
        if self.dtype == torch.float16 and device_type != "cuda":
            raise ValueError("float16 autocast needs a CUDA device; use bfloat16 on the CPU")
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            output = self.module(x, *args)
        return output.to(x.dtype)

    def extra_repr(self):
        return f"dtype={self.dtype}, inference={self.inference}"


def with_precision(module, precision, device="cpu"):
    """``module`` itself for "float32", else wrapped in :class:`MixedPrecision`.

    Parameters
    ----------
    module : torch.nn.Module
    precision : {"float32", "bfloat16", "float16"}
    device : str or torch.device, default "cpu"
        Where the module will run: "float16" is refused on a device other than CUDA.

    Returns
    -------
    torch.nn.Module
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "float16" and torch.device(device).type != "cuda":
        raise ValueError(f"precision='float16' needs a CUDA device (device={str(device)!r}); "
                         "use precision='bfloat16' on the CPU")
    dtype = PRECISIONS[precision]
    return module if dtype is None else MixedPrecision(module, dtype)
