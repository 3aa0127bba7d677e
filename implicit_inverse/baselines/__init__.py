"""Classical baselines with the estimators' fit/predict/score contract, and their tuning.

Tikhonov, Wiener and the direct inverse (closed forms, :mod:`.classical`), total variation
(ADMM, :mod:`.total_variation`), and :func:`~.tuning.tune_strongest`, which tunes them on
training pairs for every comparison of the library (:mod:`.tuning`).
"""

from .classical import DirectInverseRegressor, TikhonovRegressor, WienerRegressor
from .total_variation import TotalVariationRegressor
from .tuning import tune_strongest

__all__ = ["TikhonovRegressor", "WienerRegressor", "TotalVariationRegressor",
           "DirectInverseRegressor", "tune_strongest"]
