"""Synthetic measurements: ``d = A x + noise``."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .base import LinearOperator


def make_measurements(clean, operator, noise_std=0.0, random_state=None):
    """Measure clean images through ``operator`` and add white Gaussian noise.

    Parameters
    ----------
    clean : numpy.ndarray or torch.Tensor of shape (N, H, W) or (N, C, H, W)
        Clean images, real floating dtype.
    operator : LinearOperator
        The forward model ``A``.
    noise_std : float, default 0.0
        Standard deviation of the added noise, >= 0.
    random_state : int, numpy.random.Generator or None
        Seed of the noise; the same seed gives the same noise on every device.

    Returns
    -------
    Same kind (numpy or torch), dtype and layout as ``clean``, with the measurement's size
    (``operator.output_shape``).
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    if isinstance(noise_std, bool) or not isinstance(noise_std, numbers.Real) \
            or not np.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    is_numpy = isinstance(clean, np.ndarray)
    if not is_numpy and not isinstance(clean, torch.Tensor):
        raise TypeError(f"clean must be a numpy array or torch tensor, got {type(clean).__name__}")
    if is_numpy and not np.issubdtype(clean.dtype, np.floating):
        raise TypeError(f"clean must have a real floating dtype, got {clean.dtype}")
    tensor = torch.from_numpy(np.array(clean)) if is_numpy else clean
    if not tensor.is_floating_point():
        raise TypeError(f"clean must have a real floating dtype, got {tensor.dtype}")
    if tensor.ndim not in (3, 4):
        raise ValueError(
            f"clean must be shaped (N, H, W) or (N, C, H, W), got {tuple(tensor.shape)}")
    batch = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor
    with torch.no_grad():
        measured = operator(batch)
        if noise_std > 0:
            rng = random_state if isinstance(random_state, np.random.Generator) \
                else np.random.default_rng(random_state)
            noise = rng.standard_normal(tuple(measured.shape))
            measured = measured + noise_std * torch.as_tensor(noise, dtype=measured.dtype,
                                                              device=measured.device)
    if tensor.ndim == 3:
        measured = measured.squeeze(1)
    return measured.numpy() if is_numpy else measured
