"""implicit_inverse: implicit (deep equilibrium) networks for imaging inverse problems."""

from .estimators import (DirectInverseRegressor, ImplicitDeblurRegressor,
                         ImplicitInpaintingRegressor, ImplicitRegressor,
                         ImplicitSuperResolutionRegressor, TikhonovRegressor)

__version__ = "0.1.0"

__all__ = ["ImplicitRegressor", "ImplicitDeblurRegressor", "ImplicitSuperResolutionRegressor",
           "ImplicitInpaintingRegressor", "TikhonovRegressor", "DirectInverseRegressor",
           "__version__"]
