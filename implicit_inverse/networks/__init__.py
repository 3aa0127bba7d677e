"""Pluggable regularizers R_theta: any torch.nn.Module mapping images to same-shape images."""

from .dncnn import DnCNN, TikhonovPlusNetwork

__all__ = ["DnCNN", "TikhonovPlusNetwork"]
