"""Classical baselines with the same fit/predict/score contract: Tikhonov and direct inverse."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..operators import Blur, LinearOperator
from .inputs import ImageRegressorMixin, validate_measurements, validate_training_pair

LAM_GRID = tuple(float(v) for v in np.logspace(-5, 0, 26))


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
    return operator.solve_normal(operator.adjoint(measurements), lam)


def tune_lam(operator, measurements, clean, grid=LAM_GRID, max_samples=256):
    """The Tikhonov weight of ``grid`` with the best mean PSNR on (up to ``max_samples``) pairs.

    Parameters
    ----------
    operator : LinearOperator
    measurements : torch.Tensor of shape (n, C, H', W')
    clean : torch.Tensor of shape (n, C, H, W)
    grid : sequence of float > 0
    max_samples : int

    Returns
    -------
    float
    """
    measurements, clean = measurements[:max_samples], clean[:max_samples]
    best_lam, best_psnr = grid[0], -math.inf
    with torch.no_grad():
        for lam in grid:
            error = (tikhonov(operator, measurements, lam) - clean).pow(2).flatten(1).mean(1)
            score = float((-10 * torch.log10(error.clamp_min(1e-12))).mean())
            if score > best_psnr:
                best_lam, best_psnr = lam, score
    return best_lam


class _ClassicalRegressor(ImageRegressorMixin, BaseEstimator):
    """Shared fit/predict/score of the closed-form baselines (nothing is learned in ``fit``)."""

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
        measurements, _ = validate_training_pair(X, y, self.operator, self.image_shape)
        self.operator_ = self.operator
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
    otherwise. Tune ``lam`` with ``GridSearchCV(..., scoring=psnr_scorer)``.

    Parameters
    ----------
    operator : LinearOperator
    lam : float, default 1e-2
        Regularisation weight, > 0.
    image_shape : tuple (C, H, W) or None
        Shape of one measurement for 2-D ``X`` (see ``ImplicitRegressor``).
    """

    _parameter_constraints = {
        "operator": [LinearOperator, None],
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


class DirectInverseRegressor(_ClassicalRegressor):
    """Naive inverse: Fourier division by the blur's transfer function, floored.

    For a circular :class:`~implicit_inverse.operators.Blur`:
    ``x = F^{-1}[ conj(K) D / max(|K|^2, floor) ]``; for other operators
    ``(A^T A + floor I)^{-1} A^T d``. It amplifies noise: the first baseline to beat.

    Parameters
    ----------
    operator : LinearOperator
    floor : float, default 1e-3
        Smallest ``|K|^2`` divided by, > 0.
    image_shape : tuple (C, H, W) or None
    """

    _parameter_constraints = {
        "operator": [LinearOperator, None],
        "floor": [Interval(Real, 0, None, closed="neither")],
        "image_shape": [tuple, None],
    }

    def __init__(self, operator=None, *, floor=1e-3, image_shape=None):
        self.operator = operator
        self.floor = floor
        self.image_shape = image_shape

    def _reconstruct(self, measurements):
        operator = self.operator_
        if not (isinstance(operator, Blur) and operator.boundary == "circular"):
            return tikhonov(operator, measurements, self.floor)
        height, width = measurements.shape[-2:]
        transfer = operator.transfer_function(height, width, measurements.dtype,
                                              measurements.device)
        spectrum = torch.fft.rfft2(measurements) * transfer.conj()
        spectrum = spectrum / (transfer.abs() ** 2).clamp_min(self.floor)
        return torch.fft.irfft2(spectrum, s=(height, width))
