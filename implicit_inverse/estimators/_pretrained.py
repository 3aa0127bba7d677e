"""``from_pretrained``: an estimator around a shipped prior, calibrated on the prior's own
training crops, ready to ``predict`` without training (see
:meth:`ImplicitRegressor.from_pretrained`)."""

from __future__ import annotations

from numbers import Real

import torch

from .._runtime import float32_default, resolve_device, torch_threads
from ..training.calibration import calibration_crops
from ._parameters import check_scalar_params


FIXED_POINT_MAPS = {"proximal": "pretrained", "red": "red"}
"""``from_pretrained``'s ``fixed_point_map`` -> the kind of regularizer spec it builds."""


def pretrained(cls, operator, *, noise_std, name, channels, fixed_point_map, params):
    """An instance of ``cls`` around the shipped prior ``name``, fitted without training.

    Parameters
    ----------
    cls : type
        :class:`ImplicitRegressor` or a subclass.
    operator : LinearOperator, str or None
    noise_std : float >= 0
    name : str or None
        None is ``cls.default_prior`` (or the package's default prior).
    channels : {1, 3}
    fixed_point_map : {"proximal", "red"}
    params : dict
        Further hyperparameters.

    Returns
    -------
    estimator : instance of ``cls``
    """
    if isinstance(noise_std, str) or isinstance(noise_std, bool) \
            or not isinstance(noise_std, Real):
        raise ValueError(f"noise_std must be a float >= 0 for from_pretrained (there are no "
                         f"measurements to estimate it from), got {noise_std!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if fixed_point_map not in FIXED_POINT_MAPS:
        raise ValueError(f"fixed_point_map must be one of {sorted(FIXED_POINT_MAPS)}, got "
                         f"{fixed_point_map!r}")
    name = cls.default_prior if name is None else name
    kind = FIXED_POINT_MAPS[fixed_point_map]
    spec = kind if name is None else f"{kind}:{name}"
    estimator = cls(operator, regularizer=spec, noise_std=noise_std, **params)
    estimator._validate_params()
    check_scalar_params(estimator)
    device = resolve_device(estimator.device)
    operator = estimator._fit_operator(continuing=False)
    clean = calibration_crops().repeat(1, channels, 1, 1)
    try:
        operator.output_shape(tuple(clean.shape))
    except ValueError as error:
        raise ValueError(f"from_pretrained calibrates on 64x64 images, which this operator "
                         f"cannot measure ({error}); pass lam=... or fit the estimator on "
                         "your own images instead") from None
    with float32_default(), torch_threads(estimator.n_threads):
        with torch.no_grad():
            measurements = operator(clean)
        estimator._initialise(measurements, clean, operator, device, reuse_fixed_points=False)
    estimator.n_iter_ = 0
    return estimator
