"""Contraction diagnostics: Lipschitz estimates of a map and safe step sizes."""

from __future__ import annotations

import warnings

import torch
from torch.func import jvp

from ..operators import LinearOperator


def estimate_lipschitz(fixed_point_map, x, d, n_iter=20, seed=0):
    """Estimate the local Lipschitz constant ``||dT/dx||_2`` of each sample at ``x``.

    Power iteration on ``J^T J`` with Jacobian-vector and vector-Jacobian products.

    Parameters
    ----------
    fixed_point_map : FixedPointMap
    x : torch.Tensor of shape (N, C, H, W)
        Points at which the Jacobian is taken (e.g. the fixed points).
    d : torch.Tensor
        Measurements.
    n_iter : int, default 20
    seed : int, default 0

    Returns
    -------
    torch.Tensor of shape (N,)
        Largest singular value of each sample's Jacobian (a lower bound that converges to it).
    """
    generator = torch.Generator().manual_seed(seed)
    estimate, _ = _power_iteration(fixed_point_map, x.detach(), d, n_iter, generator)
    return estimate


def _power_iteration(fixed_point_map, x, d, n_iter, generator):
    """``n_iter`` power iterations on ``J^T J`` at ``x``: the estimates of ``||J||_2`` (N,)
    and the last left singular directions ``J v / ||J v||`` (N, C, H, W), both detached."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    tiny = torch.finfo(x.dtype).tiny

    def apply(z):
        return fixed_point_map(z, d)

    for _ in range(n_iter):
        z = x.clone().requires_grad_()
        with torch.enable_grad(), warnings.catch_warnings():
            # torch.func emits a deprecation notice about torch.jit.script on first use
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                    category=FutureWarning)
            out, jv = jvp(apply, (z,), (v,))
            jtjv = torch.autograd.grad(out, z, jv)[0]
        estimate = jv.flatten(1).norm(dim=1)
        left = (jv / estimate.clamp_min(tiny).reshape(-1, 1, 1, 1)).detach()
        norms = jtjv.flatten(1).norm(dim=1).clamp_min(tiny)
        v = (jtjv / norms.reshape(-1, 1, 1, 1)).detach()
    return estimate.detach(), left


def spectral_penalty(fixed_point_map, x, d, margin=0.9, n_iter=4, generator=None):
    """Hinge on the spectral norm of ``dT/dx`` at ``x``: ``mean(relu(||J||_2 - margin)^2)``.

    Where the mean squared singular value of :func:`jacobian_penalty` can be small while the
    largest one exceeds 1 (a map that contracts on average but not in every direction, whose
    solves then stall), this penalises the largest one only, and only above ``margin``: a
    mild constraint towards a contraction. ``n_iter`` power iterations (without a graph) find
    each sample's top left singular direction ``u``; ``||J^T u||``, differentiable in the
    map's parameters (double backpropagation), is the estimate penalised.

    Parameters
    ----------
    fixed_point_map : FixedPointMap
    x : torch.Tensor of shape (N, C, H, W)
        Points at which the Jacobian is taken (the fixed points; detached here).
    d : torch.Tensor of shape (N, C, H', W')
        Measurements.
    margin : float, default 0.9
        Spectral norm below which nothing is penalised.
    n_iter : int, default 4
    generator : torch.Generator or None, default None
        Source of the power iteration's start (on the CPU); None uses torch's global one.

    Returns
    -------
    torch.Tensor of shape ()
        Mean over the samples; its graph reaches the map's parameters.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter!r}")
    x = x.detach()
    _, left = _power_iteration(fixed_point_map, x, d, n_iter, generator)
    z = x.clone().requires_grad_(True)
    with torch.enable_grad():
        output = fixed_point_map(z, d)
        (product,) = torch.autograd.grad(output, z, left, create_graph=True)
    norms = product.flatten(1).norm(dim=1)
    return torch.relu(norms - margin).pow(2).mean()


def jacobian_penalty(fixed_point_map, x, d, generator=None, *, output=None):
    """Hutchinson estimate of ``||dT/dx||_F^2 / n`` at ``x``, differentiable in the parameters.

    ``E_eps ||eps^T dT/dx||^2 / ||eps||^2`` with one Gaussian probe ``eps`` per sample: the mean
    squared singular value of the map's Jacobian. Added to the training loss it keeps the
    learned map contractive (Bai, Koltun and Kolter, "Stabilizing Equilibrium Models by
    Jacobian Regularization", ICML 2021), so that solves stay short and the JFB gradient, which
    neglects ``dT/dx``, stays close to the exact one.

    Parameters
    ----------
    fixed_point_map : FixedPointMap
    x : torch.Tensor of shape (N, C, H, W)
        Points at which the Jacobian is taken (the fixed points; detached here).
    d : torch.Tensor of shape (N, C, H', W')
        Measurements.
    generator : torch.Generator or None, default None
        Source of the probes (on ``x``'s device); None uses torch's global generator.
    output : torch.Tensor of shape (N, C, H, W) or None, default None
        ``T(x; d)`` already evaluated with a graph from ``x`` (then a tensor that requires
        grad, e.g. :attr:`JFB.last_input <implicit_inverse.equilibrium.gradients.JFB>` and the
        step JFB returned): its graph is reused instead of evaluating the map again (one
        forward pass of the regularizer less; same value, same probe). The graph is kept for a
        later ``backward`` through ``output``.

    Returns
    -------
    torch.Tensor of shape ()
        Mean over the samples; its graph reaches the map's parameters (double backpropagation).
    """
    if output is None:
        z = x.detach().requires_grad_(True)
    elif not x.requires_grad or output.grad_fn is None:
        raise ValueError("output= needs the map's output with a graph from x (x requires grad); "
                         "pass output=None to evaluate the map here")
    else:
        z = x
    with torch.enable_grad():
        if output is None:
            output = fixed_point_map(z, d)
        probe = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        (product,) = torch.autograd.grad(output, z, probe, create_graph=True)
    ratios = product.flatten(1).pow(2).sum(1) / probe.flatten(1).pow(2).sum(1)
    return ratios.mean()


def contraction_bound(operator, eta, image_shape, alpha=0.0, network_lipschitz=0.0,
                      precondition_lam=None):
    """Upper bound of the Lipschitz constant of the DE-GRAD map for ``R(x) = alpha x + N(x)``.

    Plain step: ``max(|1 - eta alpha|, |1 - eta (||A||^2 + alpha)|) + eta L_N``.
    Preconditioned by ``(A^T A + lam I)^{-1}``: the same with ``(s + alpha) / (s + lam)`` over
    ``s in {0, ||A||^2}`` and ``eta L_N / lam``.

    Parameters
    ----------
    operator : LinearOperator
    eta : float
    image_shape : tuple (N, C, H, W)
        Image shape on which ``||A||`` is estimated.
    alpha : float, default 0
    network_lipschitz : float, default 0
        Lipschitz bound ``L_N`` of the non-linear part of the regularizer.
    precondition_lam : float, optional

    Returns
    -------
    float
        The map contracts when the bound is below 1.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    top = operator.norm(shape=image_shape) ** 2
    if precondition_lam is None:
        gains = [alpha, top + alpha]
        network_gain = network_lipschitz
    else:
        gains = [alpha / precondition_lam, (top + alpha) / (top + precondition_lam)]
        network_gain = network_lipschitz / precondition_lam
    return max(abs(1.0 - eta * gain) for gain in gains) + eta * network_gain


def safe_step_size(operator, image_shape, alpha=0.0, precondition_lam=None):
    """Supremum of the step sizes ``eta`` for which the linear part of the map contracts.

    ``2 / (||A||^2 + alpha)`` for the plain step; ``2 / max(alpha / lam,
    (||A||^2 + alpha) / (||A||^2 + lam))`` when preconditioned. Steps in ``(0, bound)`` contract
    as long as the learned part of the regularizer stays small.

    Parameters
    ----------
    operator : LinearOperator
    image_shape : tuple (N, C, H, W)
    alpha : float, default 0
    precondition_lam : float, optional

    Returns
    -------
    float
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    top = operator.norm(shape=image_shape) ** 2
    if precondition_lam is None:
        largest = top + alpha
    else:
        largest = max(alpha / precondition_lam, (top + alpha) / (top + precondition_lam))
    return 2.0 / largest if largest > 0 else float("inf")
