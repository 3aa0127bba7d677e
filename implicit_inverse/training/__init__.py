"""The training engine (skorch): denoising priors for now; see :mod:`.denoiser`."""

from .denoiser import NoisyCrops, pretrain_denoiser

__all__ = ["NoisyCrops", "pretrain_denoiser"]
