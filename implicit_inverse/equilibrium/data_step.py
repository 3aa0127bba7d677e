"""The data step both fixed-point maps share: ``P (A^T (A x - d) + g)``, with its one Fourier
fast path.

``P`` is the identity or the preconditioner ``(A^T A + lam I)^{-1}``; ``g`` is the gradient
of a prior (DE-GRAD adds ``R(x)``; the proximal map adds nothing and applies its denoiser
after the step). For an operator diagonal in the Fourier basis (circular blur), ``A``,
``A^T`` and ``P`` are multipliers of one spectrum: the direction then takes a real FFT of
``x``, ``d`` (and ``g``) and one inverse, instead of a forward and an inverse FFT for each.
"""

from __future__ import annotations

import torch


def data_direction(operator, x, d, lam, precondition, prior_gradient=None):
    """``P (A^T (A x - d) + prior_gradient)``, shaped like ``x``.

    Parameters
    ----------
    operator : LinearOperator
        ``A``.
    x : torch.Tensor of shape (N, C, H, W)
        Current iterate.
    d : torch.Tensor of shape (N, C, H', W')
        Measurements.
    lam : float or None
        Weight of the preconditioner (needed when ``precondition``).
    precondition : bool
        Apply ``P = (A^T A + lam I)^{-1}``.
    prior_gradient : torch.Tensor of shape (N, C, H, W) or None, default None
        Added to the data gradient before preconditioning.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W)
    """
    multiplier = operator.fourier_multiplier(x.shape, x.dtype, x.device)
    if multiplier is None:
        direction = operator.adjoint(operator(x) - d)
        if prior_gradient is not None:
            direction = direction + prior_gradient
        return operator.solve_normal(direction, lam) if precondition else direction
    if d.shape != x.shape:
        raise ValueError(f"d must have the image's shape {tuple(x.shape)} for this "
                         f"operator, got {tuple(d.shape)}")
    power = multiplier.abs().square()
    spectrum = power * torch.fft.rfft2(x) - multiplier.conj() * torch.fft.rfft2(d)
    if prior_gradient is not None:
        spectrum = spectrum + torch.fft.rfft2(prior_gradient.to(x.dtype))
    if precondition:
        spectrum = spectrum / (power + lam)
    return torch.fft.irfft2(spectrum, s=x.shape[-2:])
