"""scikit-learn estimators: implicit models (trained with skorch) and classical baselines."""

from ..baselines import (DirectInverseRegressor, TikhonovRegressor, TotalVariationRegressor,
                         WienerRegressor)
from .base import ImplicitRegressor
from .tasks import (ImplicitDeblurRegressor, ImplicitInpaintingRegressor,
                    ImplicitSuperResolutionRegressor)
from ..training.losses import PSNRLoss
from ..training.engine import DivergenceError

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "WienerRegressor",
           "TotalVariationRegressor", "DirectInverseRegressor", "DivergenceError", "PSNRLoss"]
