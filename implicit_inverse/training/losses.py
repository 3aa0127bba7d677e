"""Training losses of the estimators (torch modules for skorch's ``criterion``)."""

from __future__ import annotations

import torch
from torch import nn

class PSNRLoss(nn.Module):
    """Minus the mean per-image PSNR (dB, data range 1): ``mean_i 10 log10(MSE_i + floor)``.

    The quantity that :meth:`~implicit_inverse.estimators.ImplicitRegressor.score` reports,
    as a loss. Unlike the MSE of a whole batch it weighs every image alike: a textured image with
    a large error does not drown the gradient of the smooth ones, and the loss has the same
    scale whatever the noise level (so one Jacobian penalty weight suits all settings).

    Parameters
    ----------
    floor : float, default 1e-10
        Added to each image's MSE so that a perfect reconstruction gives -100 dB, not -inf.
    """

    def __init__(self, floor=1e-10):
        super().__init__()
        self.floor = float(floor)

    def forward(self, prediction, target):
        """Loss of predictions ``prediction`` against ``target``, both (N, C, H, W).

        Returns
        -------
        torch.Tensor of shape ()
        """
        mse = (prediction - target).pow(2).flatten(1).mean(1)
        return 10.0 * torch.log10(mse + self.floor).mean()


CRITERIA = {"psnr": PSNRLoss, "mse": nn.MSELoss}
"""The criterion class of each ``loss`` name of the estimators."""
