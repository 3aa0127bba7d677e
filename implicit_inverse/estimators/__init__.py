"""scikit-learn estimators: implicit models (trained with skorch) and classical baselines."""

from .base import ImplicitRegressor
from .classical import DirectInverseRegressor, TikhonovRegressor, WienerRegressor
from .tasks import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                    ImplicitSuperResolutionRegressor)
from .losses import PSNRLoss
from .total_variation import TotalVariationRegressor
from .training import DivergenceError

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "WienerRegressor",
           "TotalVariationRegressor", "DirectInverseRegressor", "DivergenceError", "PSNRLoss"]
