"""Warm starts of the training solves: each training sample's last learned correction."""

from __future__ import annotations

import torch
from torch import nn

from .measurements import dihedral


class FixedPointCache(nn.Module):
    """Warm starts: each training sample's last learned correction ``x* - x0``.

    The next solve of the sample starts at its default starting point (the Tikhonov solution of
    the new, freshly noised measurement) plus the stored correction: the part of the fixed point
    that the learned regularizer adds, which changes little from one epoch to the next, while
    the noise-dependent part is recomputed exactly. Corrections are stored in the sample's own
    orientation (the augmentation is undone) and restored in the orientation of the next draw.
    Only converged solves are stored; the cache is dropped with the estimator's net (a new
    ``fit``), replaced when continued training gets other images (see :meth:`matches`), and
    holds one image per training sample. It is a module with buffers, saved with the weights.

    Parameters
    ----------
    n_samples : int
    image_shape : tuple (C, H, W)
    device : torch device
    """

    def __init__(self, n_samples, image_shape, device=None):
        super().__init__()
        # buffers: saved with the module's weights (checkpoints, resume) and moved with it
        self.register_buffer("points", torch.zeros((n_samples, *image_shape), device=device))
        self.register_buffer("valid", torch.zeros(n_samples, dtype=torch.bool, device=device))
        # fingerprint of the training images: continued training on other images starts afresh
        self.register_buffer("signature", torch.zeros(3, dtype=torch.float64, device=device))

    @classmethod
    def for_data(cls, clean, device=None):
        """An empty cache for the training images ``clean`` (n, C, H, W)."""
        cache = cls(len(clean), tuple(clean.shape[1:]), device=device)
        cache.signature.copy_(data_signature(clean))
        return cache

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # a checkpoint's warm starts belong to the images (the process's shard) they were made
        # for: written for other images or another shard (e.g. by another process of a
        # distributed run), they are not loaded and this cache stays as it is
        points, signature = state_dict.get(prefix + "points"), state_dict.get(prefix + "signature")
        if points is not None and signature is not None and (
                tuple(points.shape) != tuple(self.points.shape)
                or not torch.equal(signature.cpu(), self.signature.cpu())):
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def matches(self, clean):
        """Whether ``clean`` (n, C, H, W) are the images this cache was made for."""
        return (tuple(clean.shape) == tuple(self.points.shape)
                and torch.equal(data_signature(clean), self.signature.cpu()))

    def start(self, index, codes, default):
        """Starting points: ``default`` (N, C, H, W) plus the cached correction where valid."""
        valid = self.valid[index]
        if not bool(valid.any()):
            return default
        correction = dihedral(self.points[index], codes) * valid.reshape(-1, 1, 1, 1)
        return default + correction

    def store(self, index, codes, solutions, starts, converged):
        """Remember ``solutions - starts`` (N, C, H, W) of the converged samples ``index``."""
        keep = converged.to(index.device)
        if bool(keep.any()):
            chosen = index[keep]
            self.points[chosen] = dihedral(solutions[keep] - starts[keep], codes[keep],
                                           inverse=True)
            self.valid[chosen] = True


def data_signature(images):
    """Order-sensitive fingerprint (3 float64 values) of training images (n, C, H, W)."""
    values = images.detach().to("cpu", torch.float64).flatten(1)
    sums = values.sum(1)
    weights = torch.arange(1, len(values) + 1, dtype=torch.float64)
    return torch.stack([sums.sum(), (weights * sums).sum(), values.square().sum()])
