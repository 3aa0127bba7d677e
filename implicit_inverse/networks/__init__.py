"""Regularizers ``R_theta`` and denoising priors: any torch.nn.Module mapping images to images."""

from .denoiser import NoiseLevelDenoiser
from .dncnn import DnCNN, TikhonovPlusNetwork
from .precision import MixedPrecision
from .unet import NoiseLevelUNet

__all__ = ["DnCNN", "MixedPrecision", "NoiseLevelDenoiser", "NoiseLevelUNet",
           "TikhonovPlusNetwork"]
