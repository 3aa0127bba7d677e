"""Closed-form classical baselines with one fit/predict/score contract: Tikhonov, Wiener and the
direct inverse (total variation, which iterates, is in ``total_variation.py``; their grids and
tuning are in ``tuning.py``)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._image_regressor import (ImageRegressorMixin, validate_measurements,
                                validate_training_pair)
from ..operators import LinearOperator, conjugate_gradient
from ..operators.specs import resolve_operator


def tikhonov(operator, measurements, lam):
    """Tikhonov reconstruction ``(A^T A + lam I)^{-1} A^T d``.

    Parameters
    ----------
    operator : LinearOperator
    measurements : torch.Tensor of shape (n, C, H', W')
    lam : float > 0

    Returns
    -------
    torch.Tensor of shape (n, C, H, W)
    """
    return operator.tikhonov(measurements, lam)


def laplacian_power(height, width, dtype=torch.float64, device="cpu"):
    """``|L|^2``, the squared transfer function of the circular 5-point Laplacian.

    ``L x = 4 x`` minus the four neighbours (periodic), the default regulariser of
    ``skimage.restoration.wiener``.

    Parameters
    ----------
    height, width : int
    dtype : torch real dtype
    device : torch device

    Returns
    -------
    torch.Tensor of shape (height, width // 2 + 1), real: on the ``torch.fft.rfft2`` grid
    """
    rows = torch.fft.fftfreq(height, dtype=dtype, device=device)[:, None]
    cols = torch.fft.rfftfreq(width, dtype=dtype, device=device)[None, :]
    return (4 - 2 * torch.cos(2 * math.pi * rows) - 2 * torch.cos(2 * math.pi * cols)) ** 2


def _laplacian(images):
    """The circular 5-point Laplacian of images shaped (N, C, H, W) (self-adjoint)."""
    return 4 * images - sum(torch.roll(images, shift, dim) for shift in (1, -1)
                            for dim in (-2, -1))


def wiener(operator, measurements, balance, regularizer="laplacian"):
    """Wiener (generalised Tikhonov) reconstruction ``(A^T A + balance L^T L)^{-1} A^T d``.

    ``L`` is the circular Laplacian (``regularizer="laplacian"``) or the identity, which makes
    this :func:`tikhonov` with ``lam = balance``. For an operator diagonal in the Fourier basis
    (its :meth:`~implicit_inverse.operators.LinearOperator.fourier_multiplier` ``K`` is not None:
    circular blur) it is the Fourier filter ``conj(K) D / (|K|^2 + balance |L|^2)`` of
    ``skimage.restoration.wiener(d, kernel, balance, clip=False)`` (with
    ``reg=np.ones((1, 1))`` for the identity); for other operators the Laplacian version is
    solved by conjugate gradients.

    Parameters
    ----------
    operator : LinearOperator
    measurements : torch.Tensor of shape (n, C, H', W')
    balance : float > 0
    regularizer : {"laplacian", "identity"}

    Returns
    -------
    torch.Tensor of shape (n, C, H, W)
    """
    if regularizer == "identity":
        return tikhonov(operator, measurements, balance)
    back_projected = operator.adjoint(measurements)
    dtype, device = back_projected.dtype, back_projected.device
    multiplier = operator.fourier_multiplier(back_projected.shape, dtype, device)
    if multiplier is None:
        return conjugate_gradient(
            lambda x: operator.adjoint(operator(x)) + balance * _laplacian(_laplacian(x)),
            back_projected)
    height, width = back_projected.shape[-2:]
    denominator = multiplier.abs() ** 2 + balance * laplacian_power(height, width, dtype, device)
    if bool((denominator <= 0).any()):
        raise ValueError("the blur kernel sums to zero, so the Laplacian prior leaves the image "
                         "mean undetermined: use regularizer='identity'")
    return torch.fft.irfft2(torch.fft.rfft2(back_projected) / denominator, s=(height, width))


class _ClassicalRegressor(ImageRegressorMixin, BaseEstimator):
    """Shared fit/predict/score of the classical baselines (nothing is learned in ``fit``)."""

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Check the data and record the image shape (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F)
            Measurements.
        y : array-like of shape (n, H, W), (n, C, H, W) or (n, F')
            Clean images.

        Returns
        -------
        self
        """
        if self.operator is None:
            raise ValueError(f"operator is required for {type(self).__name__}")
        for name in ("lam", "floor"):
            value = getattr(self, name, None)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        operator = resolve_operator(self.operator)
        measurements, _ = validate_training_pair(X, y, operator, self.image_shape)
        self.operator_ = operator
        self.image_shape_ = tuple(measurements.shape[1:])
        self.n_channels_ = measurements.shape[1]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def predict(self, X):
        """Reconstruct images from measurements ``X`` (layout, kind and dtype of ``X``).

        Parameters
        ----------
        X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F)

        Returns
        -------
        array of shape (n, H, W), (n, C, H, W) or (n, F_out)
        """
        check_is_fitted(self, "operator_")
        measurements, layout = validate_measurements(X, self)
        with torch.no_grad():
            images = torch.cat([self._reconstruct(chunk.double()).float()
                                for chunk in measurements.split(1024)])
        return layout.restore(images)


class TikhonovRegressor(_ClassicalRegressor):
    """Tikhonov (ridge) reconstruction ``(A^T A + lam I)^{-1} A^T d``.

    Closed form through the FFT for circular blur, masks and downsampling; conjugate gradients
    otherwise. Tune ``lam`` with ``GridSearchCV(..., scoring=psnr_scorer)`` over
    :data:`~implicit_inverse.baselines.tuning.LAM_GRID` (as
    :func:`~implicit_inverse.baselines.tuning.tune_strongest` does).

    Parameters
    ----------
    operator : LinearOperator or str
        A kernel spec such as ``"gaussian:9,1.6"`` names the circular ``Blur`` of that kernel.
    lam : float, default 1e-2
        Regularisation weight, > 0.
    image_shape : tuple (C, H, W) or None
        Shape of one measurement for 2-D ``X`` (see ``ImplicitRegressor``).
    """

    _parameter_constraints = {
        "operator": [LinearOperator, str, None],
        "lam": [Interval(Real, 0, None, closed="neither")],
        "image_shape": [tuple, None],
    }

    def __init__(self, operator=None, *, lam=1e-2, image_shape=None):
        self.operator = operator
        self.lam = lam
        self.image_shape = image_shape

    def _reconstruct(self, measurements):
        if not math.isfinite(self.lam):
            raise ValueError(f"lam must be finite, got {self.lam!r}")
        return tikhonov(self.operator_, measurements, self.lam)


class WienerRegressor(_ClassicalRegressor):
    """Wiener filter ``(A^T A + balance L^T L)^{-1} A^T d`` with a Laplacian (or identity) prior.

    For an operator diagonal in the Fourier basis (``operator.fourier_multiplier`` returns its
    multiplier ``K``: circular :class:`~implicit_inverse.operators.Blur`) this is the
    Fourier-domain filter ``x = F^{-1}[ conj(K) D / (|K|^2 + balance |L|^2) ]`` of
    ``skimage.restoration.wiener`` (same ``balance``, same default Laplacian regulariser; the
    kernel centre convention is the operator's own because ``conj(K) D`` is computed as
    ``A^T d``). For other operators the same
    normal equations (with the circular Laplacian) are solved by conjugate gradients. With
    ``regularizer="identity"`` it is exactly :class:`TikhonovRegressor` with ``lam = balance``,
    for every operator.

    Tune ``balance`` with ``GridSearchCV(..., scoring=psnr_scorer)`` over
    :data:`~implicit_inverse.baselines.tuning.BALANCE_GRID` (as
    :func:`~implicit_inverse.baselines.tuning.tune_strongest` does).

    Parameters
    ----------
    operator : LinearOperator or str
        A kernel spec such as ``"gaussian:9,1.6"`` names the circular ``Blur`` of that kernel.
    balance : float, default 1e-3
        Regularisation weight, > 0.
    regularizer : {"laplacian", "identity"}, default "laplacian"
        ``L``: the circular 5-point Laplacian, which penalises high frequencies, or the
        identity. The Laplacian is the stronger baseline: on the quality benchmark (32 x 32
        faces, 9 x 9 Gaussian blur of sigma 1.5, noise 0.01) each at its best balance scores
        26.75 against 26.62 dB on the test faces (+0.12 dB on the training faces, +0.30 dB on
        the natural patches), and tuned by ``GridSearchCV`` on 120 training pairs 26.73
        against 26.62 dB. Tuned on all 680 pairs, mostly patches, the Laplacian's pick
        over-smooths the faces: 26.35 against 26.42 dB.
    image_shape : tuple (C, H, W) or None
        Shape of one measurement for 2-D ``X`` (see ``ImplicitRegressor``).
    """

    _parameter_constraints = {
        "operator": [LinearOperator, str, None],
        "balance": [Interval(Real, 0, None, closed="neither")],
        "regularizer": [StrOptions({"laplacian", "identity"})],
        "image_shape": [tuple, None],
    }

    def __init__(self, operator=None, *, balance=1e-3, regularizer="laplacian",
                 image_shape=None):
        self.operator = operator
        self.balance = balance
        self.regularizer = regularizer
        self.image_shape = image_shape

    def _reconstruct(self, measurements):
        return wiener(self.operator_, measurements, self.balance, self.regularizer)


class DirectInverseRegressor(_ClassicalRegressor):
    """Naive inverse: Fourier division by the blur's transfer function, floored.

    For an operator diagonal in the Fourier basis (``operator.fourier_multiplier`` returns its
    multiplier ``K``: circular :class:`~implicit_inverse.operators.Blur`):
    ``x = F^{-1}[ conj(K) D / max(|K|^2, floor) ]``; for other operators
    ``(A^T A + floor I)^{-1} A^T d``. It amplifies noise: the first baseline to beat.

    Parameters
    ----------
    operator : LinearOperator or str
        A kernel spec such as ``"gaussian:9,1.6"`` names the circular ``Blur`` of that kernel.
    floor : float, default 1e-3
        Smallest ``|K|^2`` divided by, > 0.
    image_shape : tuple (C, H, W) or None
    """

    _parameter_constraints = {
        "operator": [LinearOperator, str, None],
        "floor": [Interval(Real, 0, None, closed="neither")],
        "image_shape": [tuple, None],
    }

    def __init__(self, operator=None, *, floor=1e-3, image_shape=None):
        self.operator = operator
        self.floor = floor
        self.image_shape = image_shape

    def _reconstruct(self, measurements):
        operator = self.operator_
        transfer = operator.fourier_multiplier(measurements.shape, measurements.dtype,
                                               measurements.device)
        if transfer is None:
            return tikhonov(operator, measurements, self.floor)
        spectrum = torch.fft.rfft2(measurements) * transfer.conj()
        spectrum = spectrum / (transfer.abs() ** 2).clamp_min(self.floor)
        return torch.fft.irfft2(spectrum, s=measurements.shape[-2:])
