"""DnCNN-style convolutional regularizers ``R_theta`` (image -> residual image)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class DnCNN(nn.Module):
    """A DnCNN stack: conv-ReLU layers that output a residual image of the input's shape.

    Parameters
    ----------
    depth : int, default 6
        Number of convolutions (>= 2): one input layer, ``depth - 2`` hidden layers, one output
        layer.
    width : int, default 24
        Feature channels of the hidden layers (24 runs much faster than 32 on small CPUs).
    channels : int, default 1
        Image channels C.
    extra_inputs : int, default 0
        Additional input channels concatenated to the image by the caller (for example a noise
        level map); the output keeps ``channels`` channels.
    kernel_size : int, default 3
        Odd convolution size.
    spectral_norm : bool, default False
        Constrain every convolution's reshaped weight matrix to spectral norm 1
        (``torch.nn.utils.parametrizations.spectral_norm``), which bounds the Lipschitz constant
        (see :meth:`lipschitz_bound`) and helps the fixed-point map stay contractive. With
        ``zero_output=True`` the zero-initialised output layer is left unnormalised (a zero
        matrix cannot be scaled to norm 1); :meth:`lipschitz_bound` still counts its weights.
    zero_output : bool, default True
        Initialise the output layer at zero, so the untrained network returns zeros: the implicit
        model then starts exactly at its classical (Tikhonov) counterpart.

    Notes
    -----
    Input is shaped (N, channels + extra_inputs, H, W), output (N, channels, H, W).
    """

    def __init__(self, depth=6, width=24, channels=1, kernel_size=3, spectral_norm=False,
                 zero_output=True, extra_inputs=0):
        super().__init__()
        _check_positive_int(depth, "depth")
        _check_positive_int(width, "width")
        _check_positive_int(channels, "channels")
        _check_positive_int(kernel_size, "kernel_size")
        if isinstance(extra_inputs, bool) or not isinstance(extra_inputs, numbers.Integral) \
                or extra_inputs < 0:
            raise ValueError(f"extra_inputs must be an integer >= 0, got {extra_inputs!r}")
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.channels = channels
        self._architecture = {"depth": depth, "width": width, "channels": channels,
                              "kernel_size": kernel_size, "spectral_norm": bool(spectral_norm),
                              "zero_output": bool(zero_output), "extra_inputs": extra_inputs}
        sizes = [channels + extra_inputs] + [width] * (depth - 1) + [channels]
        layers = []
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            conv = nn.Conv2d(n_in, n_out, kernel_size, padding=kernel_size // 2,
                             padding_mode="circular")
            zero_layer = zero_output and index == depth - 1
            if zero_layer:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            if spectral_norm and not zero_layer:
                # a zero weight has no spectral direction: normalising it divides 0 by 0 (NaN)
                conv = _spectral_norm(conv)
            layers.append(conv)
            if index < depth - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def architecture(self):
        """The constructor's arguments, plain values (stored beside the weights).

        Returns
        -------
        dict
        """
        return dict(self._architecture)

    def forward(self, x):
        """Residual image R(x), shaped (N, channels, H, W)."""
        return self.body(x)

    def lipschitz_bound(self):
        """An upper bound of the Lipschitz constant of the network (as a map of images).

        Uses ``||conv|| <= sqrt(kh * kw) * ||W||_2`` for each convolution (``W`` reshaped to
        (out, in * kh * kw)) and 1 for ReLU.

        Returns
        -------
        float
        """
        bound = 1.0
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                weight = module.weight.detach()
                kh, kw = weight.shape[-2:]
                sigma = torch.linalg.matrix_norm(weight.flatten(1), ord=2)
                bound *= math.sqrt(kh * kw) * float(sigma)
        return bound


class TikhonovPlusNetwork(nn.Module):
    """The regularizer ``R(x) = alpha * x + scale * network(x)`` with a learnable ``alpha > 0``.

    With ``network`` returning zeros at initialisation (``DnCNN(zero_output=True)``) the
    implicit model's fixed point is exactly the Tikhonov solution with weight ``alpha``, and
    training can only move away from that baseline when it lowers the loss.

    In a step preconditioned by ``(A^T A + lam I)^{-1}`` the network's output is amplified by up
    to ``scale / lam`` at the frequencies the operator removes. The estimators use
    ``scale = 100 * lam``, so that this gain (100) and hence the learning rate that keeps the map
    contractive while it learns do not depend on the noise level through ``lam``.

    Parameters
    ----------
    network : torch.nn.Module
        Image -> image of the same shape.
    alpha : float, default 1e-2
        Initial Tikhonov weight, > 0 (kept positive through a softplus).
    learn_alpha : bool, default True
        Train ``alpha`` with the network.
    scale : float, default 1.0
        Fixed factor of the network's output, > 0.
    """

    def __init__(self, network, alpha=1e-2, learn_alpha=True, scale=1.0):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) \
                or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) \
                or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.network = network
        self.scale = float(scale)
        # softplus^{-1}(alpha), stable for small alpha
        raw = torch.tensor(float(alpha)).expm1().log() if alpha < 20 else torch.tensor(float(alpha))
        self.raw_alpha = nn.Parameter(raw.reshape(()), requires_grad=learn_alpha)

    def architecture(self):
        """The constructor's arguments (``alpha`` is a weight: the state dict holds it).

        Returns
        -------
        dict
            ``network`` (the module itself), ``alpha`` (1.0, replaced by the weights loaded),
            ``learn_alpha`` and ``scale``.
        """
        return {"network": self.network, "alpha": 1.0,
                "learn_alpha": self.raw_alpha.requires_grad, "scale": self.scale}

    @property
    def alpha(self):
        """The current Tikhonov weight (a 0-d tensor)."""
        return nn.functional.softplus(self.raw_alpha)

    def forward(self, x):
        """``alpha * x + scale * network(x)``, shaped like ``x`` (N, C, H, W)."""
        return self.alpha.to(x.dtype) * x + self.scale * self.network(x)
