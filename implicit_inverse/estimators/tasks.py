"""Task estimators: thin subclasses of :class:`ImplicitRegressor` that choose the operator."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from ..networks.specs import DEFAULT_REGULARIZER
from ..operators import Blur, Downsample, Mask, gaussian_kernel
from ._parameters import SHARED_PARAMETERS_DOC
from .base import ImplicitRegressor


class ImplicitDeblurRegressor(ImplicitRegressor):
    __doc__ = (
        """Implicit deblurring: ``X`` are blurred, noisy images, ``y`` the sharp ones.

    Parameters
    ----------
    operator : Blur, LinearOperator or str, optional
        The blur, or a kernel spec such as ``"disk:2"`` naming it. None builds
        ``Blur(gaussian_kernel(kernel_size, kernel_sigma))`` (circular).
    kernel_size : int, default 9
        Side of the default Gaussian kernel (used only when ``operator`` is None).
    kernel_sigma : float, default 1.5
        Standard deviation of the default Gaussian kernel.
    """
        + SHARED_PARAMETERS_DOC
    )

    default_prior = "unet-gray-kernels"
    """Zero-shot deblurring uses the U-Net trained inside its fixed point across random blurs
    (1.7-2.0 dB above the denoiser prior on kernels it never saw: ``docs/priors.rst``)."""
    _parameter_constraints = {
        **ImplicitRegressor._parameter_constraints,
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "kernel_sigma": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        operator=None,
        *,
        kernel_size=9,
        kernel_sigma=1.5,
        regularizer=DEFAULT_REGULARIZER,
        eta=1.0,
        noise_std="auto",
        gradient="jfb",
        solver="anderson",
        max_iter=100,
        tol=1e-4,
        train_max_iter=30,
        train_tol=1e-3,
        lam="auto",
        precondition=True,
        learn_step=True,
        augment=True,
        reuse_fixed_points=True,
        loss="psnr",
        jacobian_penalty=2.0,
        pretrain_epochs=0,
        max_epochs=40,
        batch_size=32,
        lr=5e-4,
        lr_schedule="cosine",
        optimizer=torch.optim.Adam,
        device="cpu",
        random_state=None,
        verbose=0,
        callbacks=None,
        warm_start=False,
        image_shape=None,
        n_threads=None,
        precision="float32",
    ):
        super().__init__(
            operator,
            regularizer=regularizer,
            eta=eta,
            noise_std=noise_std,
            gradient=gradient,
            solver=solver,
            max_iter=max_iter,
            tol=tol,
            train_max_iter=train_max_iter,
            train_tol=train_tol,
            lam=lam,
            precondition=precondition,
            learn_step=learn_step,
            augment=augment,
            reuse_fixed_points=reuse_fixed_points,
            loss=loss,
            jacobian_penalty=jacobian_penalty,
            pretrain_epochs=pretrain_epochs,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            device=device,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
            warm_start=warm_start,
            image_shape=image_shape,
            n_threads=n_threads,
            precision=precision,
        )
        self.kernel_size = kernel_size
        self.kernel_sigma = kernel_sigma

    def _default_operator(self):
        return Blur(gaussian_kernel(self.kernel_size, self.kernel_sigma))


class ImplicitSuperResolutionRegressor(ImplicitRegressor):
    __doc__ = (
        """Implicit super-resolution: ``X`` are low-resolution images, ``y`` high-resolution ones.

    Parameters
    ----------
    operator : LinearOperator, optional
        The downsampling model. None builds ``Downsample(factor)`` (block averaging).
    factor : int, default 2
        Resolution factor (used only when ``operator`` is None); ``y`` is ``factor`` times
        larger than ``X`` in each direction.
    """
        + SHARED_PARAMETERS_DOC
    )

    _parameter_constraints = {
        **ImplicitRegressor._parameter_constraints,
        "factor": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        operator=None,
        *,
        factor=2,
        regularizer=DEFAULT_REGULARIZER,
        eta=1.0,
        noise_std="auto",
        gradient="jfb",
        solver="anderson",
        max_iter=100,
        tol=1e-4,
        train_max_iter=30,
        train_tol=1e-3,
        lam="auto",
        precondition=True,
        learn_step=True,
        augment=True,
        reuse_fixed_points=True,
        loss="psnr",
        jacobian_penalty=2.0,
        pretrain_epochs=0,
        max_epochs=40,
        batch_size=32,
        lr=5e-4,
        lr_schedule="cosine",
        optimizer=torch.optim.Adam,
        device="cpu",
        random_state=None,
        verbose=0,
        callbacks=None,
        warm_start=False,
        image_shape=None,
        n_threads=None,
        precision="float32",
    ):
        super().__init__(
            operator,
            regularizer=regularizer,
            eta=eta,
            noise_std=noise_std,
            gradient=gradient,
            solver=solver,
            max_iter=max_iter,
            tol=tol,
            train_max_iter=train_max_iter,
            train_tol=train_tol,
            lam=lam,
            precondition=precondition,
            learn_step=learn_step,
            augment=augment,
            reuse_fixed_points=reuse_fixed_points,
            loss=loss,
            jacobian_penalty=jacobian_penalty,
            pretrain_epochs=pretrain_epochs,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            device=device,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
            warm_start=warm_start,
            image_shape=image_shape,
            n_threads=n_threads,
            precision=precision,
        )
        self.factor = factor

    def _default_operator(self):
        return Downsample(self.factor)


class ImplicitInpaintingRegressor(ImplicitRegressor):
    __doc__ = (
        """Implicit inpainting: ``X`` are images with missing pixels (zeros), ``y`` complete ones.

    Parameters
    ----------
    operator : Mask or LinearOperator, optional
        The masking model. None builds ``Mask(mask)`` when ``mask`` is given, else
        ``Mask(fraction=fraction, random_state=mask_seed)``.
    fraction : float in (0, 1], default 0.5
        Share of observed pixels of the drawn mask.
    mask : array-like of shape (H, W) or None, default None
        A fixed mask of observed pixels (then only images of that size are accepted).
    mask_seed : int, default 0
        Seed of the drawn mask; measurements must be made with the same mask.
    """
        + SHARED_PARAMETERS_DOC
    )

    _parameter_constraints = {
        **ImplicitRegressor._parameter_constraints,
        "fraction": [Interval(Real, 0, 1, closed="right")],
        "mask": ["array-like", None],
        "mask_seed": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        operator=None,
        *,
        fraction=0.5,
        mask=None,
        mask_seed=0,
        regularizer=DEFAULT_REGULARIZER,
        eta=1.0,
        noise_std="auto",
        gradient="jfb",
        solver="anderson",
        max_iter=100,
        tol=1e-4,
        train_max_iter=30,
        train_tol=1e-3,
        lam="auto",
        precondition=True,
        learn_step=True,
        augment=True,
        reuse_fixed_points=True,
        loss="psnr",
        jacobian_penalty=2.0,
        pretrain_epochs=0,
        max_epochs=40,
        batch_size=32,
        lr=5e-4,
        lr_schedule="cosine",
        optimizer=torch.optim.Adam,
        device="cpu",
        random_state=None,
        verbose=0,
        callbacks=None,
        warm_start=False,
        image_shape=None,
        n_threads=None,
        precision="float32",
    ):
        super().__init__(
            operator,
            regularizer=regularizer,
            eta=eta,
            noise_std=noise_std,
            gradient=gradient,
            solver=solver,
            max_iter=max_iter,
            tol=tol,
            train_max_iter=train_max_iter,
            train_tol=train_tol,
            lam=lam,
            precondition=precondition,
            learn_step=learn_step,
            augment=augment,
            reuse_fixed_points=reuse_fixed_points,
            loss=loss,
            jacobian_penalty=jacobian_penalty,
            pretrain_epochs=pretrain_epochs,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            device=device,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
            warm_start=warm_start,
            image_shape=image_shape,
            n_threads=n_threads,
            precision=precision,
        )
        self.fraction = fraction
        self.mask = mask
        self.mask_seed = mask_seed

    def _default_operator(self):
        if self.mask is not None:
            return Mask(mask=self.mask)
        return Mask(fraction=self.fraction, random_state=self.mask_seed)
