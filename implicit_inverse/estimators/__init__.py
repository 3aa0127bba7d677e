"""scikit-learn estimators: implicit models (trained with skorch) and classical baselines."""

from ..baselines import (DirectInverseRegressor, TikhonovRegressor, TotalVariationRegressor,
                         WienerRegressor)
from .base import ImplicitRegressor
from .tasks import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                    ImplicitSuperResolutionRegressor)
from .losses import PSNRLoss
from .training import DivergenceError

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "WienerRegressor",
           "TotalVariationRegressor", "DirectInverseRegressor", "DivergenceError", "PSNRLoss"]
