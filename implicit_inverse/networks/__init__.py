"""Pluggable regularizers R_theta: any torch.nn.Module mapping images to same-shape images."""

from .dncnn import DnCNN, TikhonovPlusNetwork
from .precision import MixedPrecision

__all__ = ["DnCNN", "MixedPrecision", "TikhonovPlusNetwork"]
