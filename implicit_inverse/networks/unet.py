"""A small multi-scale denoiser told the noise level (DRUNet-style U-Net, no batch norm)."""

from __future__ import annotations

import numbers

from torch import nn
from torch.nn import functional as F

from .denoiser import NoiseLevelPrior


class _ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` at a fixed width; the second convolution starts small, so a
    deep stack of blocks starts near the identity instead of amplifying its input."""

    def __init__(self, width):
        super().__init__()
        self.first = nn.Conv2d(width, width, 3, padding=1)
        self.second = nn.Conv2d(width, width, 3, padding=1)
        nn.init.kaiming_normal_(self.first.weight, nonlinearity="relu")
        nn.init.zeros_(self.first.bias)
        nn.init.kaiming_normal_(self.second.weight, nonlinearity="linear")
        self.second.weight.data.mul_(0.1)
        nn.init.zeros_(self.second.bias)

    def forward(self, x):
        return x + self.second(F.relu(self.first(x)))


class NoiseLevelUNet(NoiseLevelPrior):
    """``D(x, sigma) = x - U([x, sigma_map])`` with ``U`` a U-Net over ``len(widths)`` scales.

    Each scale has ``blocks`` residual blocks on the way down and up; 2x2 strided convolutions
    halve the resolution and 2x2 transposed convolutions restore it, and skip connections add
    (as in DRUNet) rather than concatenate. No batch normalisation, so the denoiser is the same
    function in training and evaluation. Four scales give a receptive field of over 100 pixels
    at a cost per pixel close to that of a DnCNN 12x32 (most of the work is at low resolution).

    Parameters
    ----------
    widths : sequence of int, default (16, 32, 64, 128)
        Feature channels at each scale, finest first (at least 1 scale).
    blocks : int, default 1
        Residual blocks (two 3x3 convolutions each) per scale and direction.
    channels : int, default 1
        Image channels C (a grayscale prior has 1; it then denoises colour images channel by
        channel).

    Notes
    -----
    ``x`` is shaped (N, C, H, W) with any H, W: inputs are padded by reflection to a multiple of
    ``2 ** (len(widths) - 1)`` and the output is cropped back. ``sigma`` is a float or a tensor
    shaped (N,) of noise standard deviations on the [0, 1] scale.
    """

    KIND = "unet"

    def __init__(self, widths=(16, 32, 64, 128), blocks=1, channels=1):
        super().__init__(channels)
        widths = tuple(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1
                             for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of integers >= 1, "
                             f"got {widths!r}")
        if isinstance(blocks, bool) or not isinstance(blocks, numbers.Integral) or blocks < 1:
            raise ValueError(f"blocks must be an integer >= 1, got {blocks!r}")
        self.widths, self.blocks = tuple(int(w) for w in widths), int(blocks)
        self.head = nn.Conv2d(channels + 1, widths[0], 3, padding=1)
        self.down = nn.ModuleList(self._stage(w) for w in widths[:-1])
        self.pool = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths, widths[1:]))
        self.bottom = self._stage(widths[-1])
        self.unpool = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2)
                                    for a, b in zip(widths, widths[1:]))
        self.up = nn.ModuleList(self._stage(w) for w in widths[:-1])
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)
        nn.init.zeros_(self.tail.bias)

    def _stage(self, width):
        return nn.Sequential(*(_ResidualBlock(width) for _ in range(self.blocks)))

    def architecture(self):
        """The constructor's arguments, plain values (stored beside the weights)."""
        return {"widths": list(self.widths), "blocks": self.blocks, "channels": self.channels}

    def residual(self, inputs):
        """The estimated noise, (N, C, H, W), of ``inputs`` = image and noise map (N, C+1, H, W)."""
        height, width = inputs.shape[-2:]
        multiple = 2 ** (len(self.widths) - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h), mode=mode)
        features = self.head(inputs)
        skips = []
        for stage, pool in zip(self.down, self.pool):
            features = stage(features)
            skips.append(features)
            features = pool(features)
        features = self.bottom(features)
        for stage, unpool, skip in zip(reversed(self.up), reversed(self.unpool), reversed(skips)):
            features = stage(unpool(features) + skip)
        return self.tail(features)[..., :height, :width]
