"""What every image-to-image estimator shares (the implicit ones and the classical baselines):
checks of measurement/clean pairs related by an operator, scikit-learn tags, PSNR scoring."""

from __future__ import annotations

from sklearn.base import RegressorMixin

from ._validation import as_image_tensor, warn_if_out_of_range
from .metrics import psnr


def clean_shape(operator, measurement_shape):
    """Shape (n, C, H, W) of the images that ``operator`` maps to ``measurement_shape``."""
    try:
        shape = operator.input_shape(tuple(measurement_shape))
        operator.output_shape(shape)
    except ValueError as error:
        raise ValueError(f"X of shape {tuple(measurement_shape)[1:]} cannot be handled by the "
                         f"operator {operator!r}: {error}") from None
    return shape


def validate_training_pair(X, y, operator, image_shape=None):
    """Validate measurements ``X`` and clean images ``y`` and check ``A y`` has the shape of ``X``.

    Parameters
    ----------
    X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F)
    y : array-like of shape (n, H, W), (n, C, H, W) or (n, F')
    operator : LinearOperator
    image_shape : tuple (C, H', W') or None
        Shape of one measurement for 2-D ``X``.

    Returns
    -------
    measurements : torch.Tensor of shape (n, C, H', W'), float32
    clean : torch.Tensor of shape (n, C, H, W), float32
    """
    if y is None:
        raise ValueError("this estimator requires y to be passed, but the target y is None "
                         "(y holds the clean images that X measures)")
    measurements, _ = as_image_tensor(X, "X", image_shape=image_shape, min_samples=2)
    expected = clean_shape(operator, measurements.shape)
    clean, _ = as_image_tensor(y, "y", image_shape=expected[1:], min_samples=2)
    if clean.shape[0] != measurements.shape[0]:
        raise ValueError(f"X and y have different numbers of samples: {measurements.shape[0]} "
                         f"and {clean.shape[0]}")
    try:
        measured_shape = operator.output_shape(tuple(clean.shape))
    except ValueError as error:
        raise ValueError(f"y images of shape {tuple(clean.shape[1:])} cannot be measured by the "
                         f"operator: {error}") from None
    if tuple(measured_shape) != tuple(measurements.shape):
        raise ValueError(
            f"X and y do not match through the operator: {operator!r} maps y of shape "
            f"{tuple(clean.shape[1:])} to measurements of shape {tuple(measured_shape[1:])}, "
            f"but X has shape {tuple(measurements.shape[1:])}")
    warn_if_out_of_range(clean, "y")
    return measurements, clean


def check_channels(measurements, n_channels):
    """Raise ``ValueError`` when the channel count differs from the one seen in ``fit``."""
    if measurements.shape[1] != n_channels:
        raise ValueError(f"X has {measurements.shape[1]} channels but the model was fitted on "
                         f"{n_channels}")


def validate_measurements(X, estimator):
    """Validate measurements for a fitted estimator's ``predict``.

    Returns
    -------
    measurements : torch.Tensor of shape (n, C, H', W'), float32
    layout : ImageLayout
    """
    if getattr(X, "ndim", None) == 2 and X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
                         f"expecting {estimator.n_features_in_} features as input")
    measurements, layout = as_image_tensor(X, "X", image_shape=estimator.image_shape_)
    check_channels(measurements, estimator.n_channels_)
    clean_shape(estimator.operator_, measurements.shape)
    return measurements, layout


def reconstruction_psnr(estimator, X, y):
    """Mean PSNR (dB, data range 1) of ``estimator.predict(X)`` against ``y``."""
    prediction = estimator.predict(X)
    shape = clean_shape(estimator.operator_, (1, *estimator.image_shape_))[1:]
    truth, _ = as_image_tensor(y, "y", image_shape=shape)
    predicted, _ = as_image_tensor(prediction, "prediction", image_shape=shape)
    if truth.shape != predicted.shape:
        raise ValueError(f"y has shape {tuple(truth.shape)} but the reconstructions have shape "
                         f"{tuple(predicted.shape)}")
    return psnr(truth.numpy(), predicted.numpy())


class ImageRegressorMixin(RegressorMixin):
    """What every image-to-image estimator shares: scikit-learn tags and PSNR scoring."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.regressor_tags.poor_score = True
        return tags

    def score(self, X, y, sample_weight=None):
        """Mean PSNR in dB (``data_range=1``) of ``predict(X)`` against ``y`` (not R^2).

        Parameters
        ----------
        X : array-like, measurements
        y : array-like, clean images in the layout ``predict`` returns
        sample_weight : ignored

        Returns
        -------
        float
        """
        return reconstruction_psnr(self, X, y)
