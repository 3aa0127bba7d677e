"""scikit-learn estimators: implicit models (trained with skorch) and classical baselines."""

from .base import ImplicitRegressor
from .classical import DirectInverseRegressor, TikhonovRegressor
from .tasks import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                    ImplicitSuperResolutionRegressor)
from .losses import PSNRLoss
from .training import DivergenceError

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "DirectInverseRegressor",
           "DivergenceError", "PSNRLoss"]
