"""
Super-resolution and inpainting
===============================

The same implicit model handles any linear forward model. Two task estimators choose it for
you: :class:`~implicit_inverse.ImplicitSuperResolutionRegressor` (block-average downsampling by
``factor``) and :class:`~implicit_inverse.ImplicitInpaintingRegressor` (a random mask of
observed pixels, drawn from ``mask_seed``). Measurements must be made with the same operator:
``Downsample(factor)`` and ``Mask(fraction=..., random_state=mask_seed)``.
"""

import os

import numpy as np
from sklearn.model_selection import GridSearchCV

from implicit_inverse import (ImplicitInpaintingRegressor, ImplicitSuperResolutionRegressor,
                              TikhonovRegressor)
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.metrics import psnr, psnr_scorer
from implicit_inverse.operators import Downsample, Mask, make_measurements
from implicit_inverse.plotting import plot_reconstructions

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_PATCHES = 16 if FAST else 320
MAX_EPOCHS = 1 if FAST else 4

train, test = train_test_faces(size=32, n_test=20, n_patches=N_PATCHES, random_state=0)


def compare(model, operator, title):
    """Fit ``model`` and a tuned Tikhonov on ``operator``'s measurements; show both."""
    X_train = make_measurements(train, operator, noise_std=0.01, random_state=0)
    X_test = make_measurements(test, operator, noise_std=0.01, random_state=1)
    tikhonov = GridSearchCV(TikhonovRegressor(operator), {"lam": np.logspace(-4, 0, 9)},
                            scoring=psnr_scorer).fit(X_train, train)
    model.fit(X_train, train)
    baseline, implicit = tikhonov.predict(X_test), model.predict(X_test)
    print(f"{title}: measurements {X_test.shape[1:]} -> images {implicit.shape[1:]}; "
          f"Tikhonov {psnr(test, baseline):.2f} dB, implicit {psnr(test, implicit):.2f} dB")
    return plot_reconstructions([X_test, baseline, implicit, test],
                                ["measurement", "Tikhonov", "implicit", "truth"], n_images=3,
                                psnrs=[None, psnr(test, baseline), psnr(test, implicit), None])


# %%
# Super-resolution by a factor 2
# ------------------------------
# ``X`` is 16x16, ``y`` and the predictions are 32x32.
fig_sr = compare(ImplicitSuperResolutionRegressor(factor=2, max_epochs=MAX_EPOCHS, random_state=0),
                 Downsample(2), "super-resolution x2")

# %%
# Inpainting half of the pixels
# -----------------------------
# Missing pixels are zeros in ``X``. Tikhonov has no spatial prior: it only rescales the
# observed pixels and leaves the holes at zero, while the learned regularizer fills them.
# Filling large holes asks more of the network than deblurring does (at a missing pixel only
# ``R`` acts, so its fixed point must come from the neighbours): a smaller learning rate keeps
# the map contracting during training.
fig_inpainting = compare(
    ImplicitInpaintingRegressor(fraction=0.5, mask_seed=0, max_epochs=MAX_EPOCHS, lr=5e-4,
                                random_state=0),
    Mask(fraction=0.5, random_state=0), "inpainting 50%")
