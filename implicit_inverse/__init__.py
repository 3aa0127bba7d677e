"""implicit_inverse: implicit (deep equilibrium) networks for imaging inverse problems."""

from .estimators import (DirectInverseRegressor, ImplicitDeblurRegressor,
                         ImplicitInpaintingRegressor, ImplicitRegressor,
                         ImplicitSuperResolutionRegressor, TikhonovRegressor,
                         TotalVariationRegressor, WienerRegressor)

__version__ = "0.1.0"

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "WienerRegressor",
           "TotalVariationRegressor", "DirectInverseRegressor", "__version__"]
