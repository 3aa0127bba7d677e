"""A denoiser conditioned on the noise level: the prior of plug-and-play and RED maps."""

from __future__ import annotations

import torch
from torch import nn

from .dncnn import DnCNN


class NoiseLevelPrior(nn.Module):
    """Base of the denoisers told the noise level: ``D(x, sigma) = x - residual([x, sigma_map])``.

    The noise level enters as one constant input channel (as in FFDNet and DRUNet), so one
    network denoises at any level in its training range and a plug-and-play solver can set the
    strength of the prior through ``sigma``. Subclasses set :attr:`KIND` (the name in prior
    files), provide ``residual`` (inputs (N, C + 1, H, W) -> noise estimate (N, C, H, W)) and
    ``architecture()`` (their constructor's arguments).

    Parameters
    ----------
    channels : int
        Image channels C. A grayscale denoiser (``channels=1``) given a colour image (C > 1)
        denoises each channel as a grayscale image.

    Notes
    -----
    ``x`` is shaped (N, C, H, W); ``sigma`` is a float or a tensor shaped (N,) of noise standard
    deviations on the [0, 1] intensity scale.
    """

    KIND = None
    SIGMA_SCALE = 10.0
    """Factor of the noise level map: levels of 0.01-0.1 enter as 0.1-1, the images' scale."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def noise_map(self, x, sigma):
        """The noise level channel, shaped (N, 1, H, W), in ``x``'s dtype and device."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return (self.SIGMA_SCALE * sigma).expand(x.shape[0], 1, *x.shape[-2:])

    def forward(self, x, sigma):
        """Denoised image, shaped like ``x`` (N, C, H, W)."""
        n, c = x.shape[:2]
        if c != self.channels and self.channels == 1:
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
            sigma = sigma.expand(n).repeat_interleave(c)
            return self.forward(x.reshape(n * c, 1, *x.shape[-2:]), sigma).reshape(x.shape)
        if c != self.channels:
            raise ValueError(f"x has {c} channels; this denoiser takes {self.channels} "
                             "(or any number, channel by channel, when it takes 1)")
        return x - self.residual(torch.cat([x, self.noise_map(x, sigma)], dim=1))


class NoiseLevelDenoiser(NoiseLevelPrior):
    """``D(x, sigma) = x - DnCNN([x, sigma_map])``: a residual DnCNN told the noise level.

    Hidden convolutions start with He (Kaiming) normal weights and the output layer near zero,
    so the untrained denoiser is close to the identity while every layer gets a gradient from
    the first step (a zero output layer and torch's default initialisation left a 12-layer stack
    stuck at the identity for hundreds of steps).

    Parameters
    ----------
    depth : int, default 12
        Convolutions of the DnCNN body.
    width : int, default 32
        Feature channels of its hidden layers.
    channels : int, default 1
        Image channels C (a grayscale prior has 1).

    Notes
    -----
    Shapes as in :class:`NoiseLevelPrior`.
    """

    KIND = "dncnn"

    def __init__(self, depth=12, width=32, channels=1):
        super().__init__(channels)
        self.depth, self.width = depth, width
        self.residual = DnCNN(depth, width, channels=channels, extra_inputs=1, zero_output=False)
        convolutions = [layer for layer in self.residual.body if isinstance(layer, nn.Conv2d)]
        for layer in convolutions[:-1]:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(convolutions[-1].weight, std=1e-3)
        nn.init.zeros_(convolutions[-1].bias)

    def architecture(self):
        """The constructor's arguments, a dict of ints (stored beside the weights)."""
        return {"depth": self.depth, "width": self.width, "channels": self.channels}


class DenoiserGradient(nn.Module):
    """The RED gradient of a denoiser, ``R(x) = weight * (x - D(x, sigma))``.

    Regularization by denoising (Romano et al., 2017) uses a denoiser's residual as the gradient
    of a prior, so a denoising prior can serve as the regularizer ``R`` of the DE-GRAD step
    :class:`~implicit_inverse.equilibrium.GradientStep`, whose fixed points then solve
    ``A^T (A x - d) + weight (x - D(x, sigma)) = 0``.

    Parameters
    ----------
    denoiser : NoiseLevelPrior
        ``D(x, sigma)``.
    sigma : float
        Noise level handed to the denoiser, > 0.
    weight : float
        Strength of the prior, > 0 (the ``lam`` of half-quadratic splitting plays this part).

    Notes
    -----
    ``x`` and the output are shaped (N, C, H, W).
    """

    def __init__(self, denoiser, sigma, weight):
        super().__init__()
        for value, name in ((sigma, "sigma"), (weight, "weight")):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        self.denoiser, self.sigma, self.weight = denoiser, float(sigma), float(weight)

    def forward(self, x):
        return self.weight * (x - self.denoiser(x, self.sigma))
