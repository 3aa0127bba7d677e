"""Total-variation deconvolution by ADMM, with a batched torch TV denoiser (Chambolle).

The denoiser is scikit-image's :func:`~skimage.restoration.denoise_tv_chambolle` (same
algorithm, step, stopping rule and boundary handling, equal results to rounding) run on a whole
batch at once: every image and every channel is denoised independently, as
``denoise_tv_chambolle(..., channel_axis=...)`` does, with device-agnostic torch operations.

Why torch rather than a loop of scikit-image calls: ADMM calls the denoiser once per iteration
and a loop pays Python overhead per image and per call, while the batch drops each channel as
soon as it stops. CPU seconds of the whole reconstruction with the defaults (60 ADMM
iterations, one thread, float64, both variants agreeing to 2e-14), scikit-image loop against
torch: 20 images of 32 x 32, 0.30 against 0.14; 200 images, 2.70 against 1.14; one 256 x 256 RGB
image, 1.71 against 1.66 (a tie: large arrays amortise the overhead).
"""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from .._runtime import torch_threads
from ..operators import LinearOperator
from .classical import _ClassicalRegressor


def _gradient(images, rows, cols):
    """Forward differences along H and W written into ``rows`` and ``cols``, whose last row
    and last column stay zero (Neumann boundary)."""
    torch.sub(images[..., 1:, :], images[..., :-1, :], out=rows[..., :-1, :])
    torch.sub(images[..., :, 1:], images[..., :, :-1], out=cols[..., :, :-1])


def _negative_divergence(rows, cols):
    """Minus the divergence of the dual field (the adjoint of ``-_gradient``)."""
    out = torch.add(rows, cols).neg_()
    out[..., 1:, :] += rows[..., :-1, :]
    out[..., :, 1:] += cols[..., :, :-1]
    return out


def denoise_tv(images, weight, max_iter=200, tol=2e-4):
    r"""Isotropic total-variation denoising of every image and channel, batched.

    Approximately solves, for each image ``f`` and channel independently,

    .. math:: \min_u \; \tfrac12 \|u - f\|^2 + \mathrm{weight} \sum_i |\nabla u_i|

    by Chambolle's projection algorithm, exactly as
    ``skimage.restoration.denoise_tv_chambolle(f, weight, eps=tol, max_num_iter=max_iter)``:
    step 1/4, forward differences with a Neumann boundary, and each channel stops once its
    energy changes by less than ``tol`` times its initial energy. Channels that have stopped
    leave the batch, so the cost is that of their mean iteration count, not the largest.

    Parameters
    ----------
    images : torch.Tensor of shape (N, C, H, W)
    weight : float
        TV weight, > 0; larger smooths more.
    max_iter : int, default 200
        Cap on the iterations of each channel.
    tol : float, default 2e-4
        Relative energy change at which a channel stops (0 runs ``max_iter`` iterations).

    Returns
    -------
    torch.Tensor of shape (N, C, H, W)
    """
    step = 0.25
    shape = images.shape
    source = images.reshape(-1, *shape[-2:])
    result = torch.empty_like(source)
    index = torch.arange(source.shape[0], device=images.device)
    rows, cols, grad_rows, grad_cols = (torch.zeros_like(source) for _ in range(4))
    size = shape[-2] * shape[-1]
    initial = previous = None  # energies (per channel) at the first and the previous iteration
    for iteration in range(max_iter):
        change = _negative_divergence(rows, cols)
        _gradient(source + change, grad_rows, grad_cols)
        norm = torch.addcmul(grad_rows * grad_rows, grad_cols, grad_cols).sqrt_()
        energy = (torch.linalg.vector_norm(change, dim=(-2, -1)) ** 2
                  + weight * norm.sum((-2, -1))) / size
        done = torch.full_like(energy, iteration == max_iter - 1, dtype=torch.bool)
        if iteration == 0:
            initial = energy
        else:
            done |= (previous - energy).abs() < tol * initial
        previous = energy
        if bool(done.any()):
            result[index[done]] = source[done] + change[done]
            keep = ~done
            if not bool(keep.any()):
                break
            index, source, rows, cols = index[keep], source[keep], rows[keep], cols[keep]
            grad_rows, grad_cols, norm = grad_rows[keep], grad_cols[keep], norm[keep]
            initial, previous = initial[keep], previous[keep]
        scale = norm.mul_(step / weight).add_(1.0)
        rows.sub_(grad_rows, alpha=step).div_(scale)
        cols.sub_(grad_cols, alpha=step).div_(scale)
    return result.reshape(shape)


def tv_deconvolve(operator, measurements, weight, rho=0.2, n_iter=60, tv_iter=200,
                  tv_tol=2e-4):
    r"""Total-variation reconstruction by ADMM (scaled form, splitting ``x = z``).

    Runs ``n_iter`` iterations on

    .. math:: \min_x \; \tfrac12 \|A x - d\|^2 + \mathrm{weight}\, \mathrm{TV}(x)

    starting from the Tikhonov solution ``z = (A^T A + rho I)^{-1} A^T d`` with ``u = 0``::

        x = (A^T A + rho I)^{-1} (A^T d + rho (z - u))     # operator.solve_normal
        z = denoise_tv(x + u, weight / rho, tv_iter, tv_tol)
        u = u + x - z

    and returns ``z``.

    Parameters
    ----------
    operator : LinearOperator
    measurements : torch.Tensor of shape (N, C, H', W')
    weight : float > 0
    rho : float > 0, default 0.2
        ADMM penalty.
    n_iter : int >= 1, default 60
    tv_iter, tv_tol : int >= 1 and float >= 0
        ``max_iter`` and ``tol`` of each :func:`denoise_tv` call.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W)
    """
    back_projected = operator.adjoint(measurements)
    z = operator.solve_normal(back_projected, rho)
    u = torch.zeros_like(z)
    for _ in range(n_iter):
        x = operator.solve_normal(back_projected + rho * (z - u), rho)
        z = denoise_tv(x + u, weight / rho, max_iter=tv_iter, tol=tv_tol)
        u = u + x - z
    return z


class TotalVariationRegressor(_ClassicalRegressor):
    r"""Total-variation reconstruction ``argmin 1/2 ||A x - d||^2 + weight TV(x)`` by ADMM.

    Isotropic TV of each channel (colour channels are regularised independently). The x-step
    uses ``operator.solve_normal`` (closed forms for circular blur, masks and downsampling,
    conjugate gradients otherwise); the z-step is the batched :func:`denoise_tv`. Tune
    ``weight`` with ``GridSearchCV(..., scoring=psnr_scorer)`` over
    :data:`~implicit_inverse.baselines.tuning.TV_WEIGHT_GRID`, or cheaply, coarse to fine, with
    :func:`~implicit_inverse.baselines.tuning.tune_strongest`.

    Parameters
    ----------
    operator : LinearOperator or str
        A kernel spec such as ``"gaussian:9,1.6"`` names the circular ``Blur`` of that kernel.
    weight : float, default 5e-4
        TV weight, > 0 (suits noise of std 0.01 on images in [0, 1]; grows with the noise).
    rho : float, default 0.2
        ADMM penalty, > 0.
    n_iter : int, default 60
        ADMM iterations, >= 1.
    tv_iter : int, default 200
        Cap on the iterations of each TV denoising step, >= 1.
    tv_tol : float, default 2e-4
        Relative energy change that stops a TV denoising step, >= 0.
    image_shape : tuple (C, H, W) or None
        Shape of one measurement for 2-D ``X`` (see ``ImplicitRegressor``).
    n_threads : int or None, default None
        torch CPU threads while predicting (None leaves torch's setting); 1 with
        ``GridSearchCV(n_jobs=...)`` keeps parallel folds from competing for cores.

    Notes
    -----
    ``n_iter`` is an iteration budget, not a convergence test: with the defaults the result is
    not the exact minimiser, and stopping early (with inexact TV steps) regularises further.
    Measured on the quality benchmark (32 x 32 faces, 9 x 9 Gaussian blur of sigma 1.5, noise
    0.01, ``weight`` tuned by ``GridSearchCV`` on 120 training pairs, 20 test faces): the
    defaults reach 27.65 dB (``weight=6.3e-4``), ``rho=0.05`` 27.38 dB, and the minimiser
    itself (300 iterations with exact TV steps) about 27.0 dB at its best weight. Of ``rho``
    in 0.02 ... 1, 0.2 scored best on the training pairs, hence the default: the strongest
    baseline.
    """

    _parameter_constraints = {
        "operator": [LinearOperator, str, None],
        "weight": [Interval(Real, 0, None, closed="neither")],
        "rho": [Interval(Real, 0, None, closed="neither")],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "tv_iter": [Interval(Integral, 1, None, closed="left")],
        "tv_tol": [Interval(Real, 0, None, closed="left")],
        "image_shape": [tuple, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, operator=None, *, weight=5e-4, rho=0.2, n_iter=60, tv_iter=200,
                 tv_tol=2e-4, image_shape=None, n_threads=None):
        self.operator = operator
        self.weight = weight
        self.rho = rho
        self.n_iter = n_iter
        self.tv_iter = tv_iter
        self.tv_tol = tv_tol
        self.image_shape = image_shape
        self.n_threads = n_threads

    def _reconstruct(self, measurements):
        with torch_threads(self.n_threads):
            return tv_deconvolve(self.operator_, measurements, self.weight, rho=self.rho,
                                 n_iter=self.n_iter, tv_iter=self.tv_iter, tv_tol=self.tv_tol)
