"""Pluggable regularizers R_theta: any torch.nn.Module mapping images to images of the same shape."""

from .dncnn import DnCNN, TikhonovPlusNetwork

__all__ = ["DnCNN", "TikhonovPlusNetwork"]
