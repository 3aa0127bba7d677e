"""
Classical baselines: direct inverse, Tikhonov, Wiener and total variation
=========================================================================

Every quality claim of the library is made against the strongest classical baseline, tuned on
training data. The four baselines are scikit-learn estimators with the same contract as the
implicit models (``fit(X, y)``, ``predict``, ``score`` = mean PSNR), so ``GridSearchCV`` tunes
each one's weight:

* :class:`~implicit_inverse.DirectInverseRegressor`: Fourier division by the blur, with a floor;
* :class:`~implicit_inverse.TikhonovRegressor`: ``(A^T A + lam I)^{-1} A^T d``;
* :class:`~implicit_inverse.WienerRegressor`: ``(A^T A + balance L^T L)^{-1} A^T d`` with the
  Laplacian ``L`` (the filter of ``skimage.restoration.wiener``);
* :class:`~implicit_inverse.TotalVariationRegressor`: ``1/2 ||A x - d||^2 + weight TV(x)``
  by ADMM.
"""

import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from implicit_inverse import (DirectInverseRegressor, TikhonovRegressor, TotalVariationRegressor,
                              WienerRegressor)
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.baselines.tuning import BALANCE_GRID, LAM_GRID, TV_WEIGHT_GRID
from implicit_inverse.metrics import psnr, psnr_scorer, ssim
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
from implicit_inverse.plotting import plot_reconstructions

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_TUNE = 40 if FAST else 120  # training pairs the weights are tuned on
TV_GRID = TV_WEIGHT_GRID[3:8:2] if FAST else TV_WEIGHT_GRID

# %%
# Data and forward model
# ----------------------
# The library's quality benchmark: 32x32 images, a 9x9 Gaussian blur (sigma 1.5) and noise of
# standard deviation 0.01. The weights are tuned on the first training pairs (the 80 training
# faces, then natural patches) and every method is scored on 20 held-out faces.
train, test = train_test_faces(size=32, n_test=20, n_patches=600, random_state=0)
blur = Blur(gaussian_kernel(9, 1.5))
X_train = make_measurements(train, blur, noise_std=0.01, random_state=1)[:N_TUNE]
y_train = train[:N_TUNE]
X_test = make_measurements(test, blur, noise_std=0.01, random_state=2)

# %%
# Tuning each baseline
# --------------------
# Nothing is learned in ``fit``: cross-validation only compares the PSNR of each weight on the
# held-out folds. Total variation iterates (60 ADMM steps), so it takes the longest.
searches = {
    "direct inverse": (DirectInverseRegressor(blur), "floor", list(np.logspace(-4, -1, 7))),
    "Tikhonov": (TikhonovRegressor(blur), "lam", list(LAM_GRID)),
    "Wiener": (WienerRegressor(blur), "balance", list(BALANCE_GRID)),
    "total variation": (TotalVariationRegressor(blur), "weight", list(TV_GRID)),
}
rows, images = [], {}
for name, (estimator, key, grid) in searches.items():
    start = time.perf_counter()
    search = GridSearchCV(estimator, {key: grid}, scoring=psnr_scorer, cv=3)
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    images[name] = search.best_estimator_.predict(X_test)
    rows.append((name, f"{key}={search.best_params_[key]:.2g}", psnr(test, images[name]),
                 ssim(test, images[name]), seconds))

print(f"{'method':<16} {'tuned':<16} {'PSNR (dB)':>9} {'SSIM':>7} {'tuning (s)':>10}")
print(f"{'measurement':<16} {'-':<16} {psnr(test, X_test):9.2f} {ssim(test, X_test):7.4f}")
for name, tuned, value, structural, seconds in rows:
    print(f"{name:<16} {tuned:<16} {value:9.2f} {structural:7.4f} {seconds:10.1f}")

# %%
# Total variation restores flat regions and sharp edges best; Wiener's Laplacian prior beats
# Tikhonov's identity, which penalises every frequency alike. The strongest of them is what a
# learned model has to beat.
#
# Side by side
# ------------
fig = plot_reconstructions(
    [X_test, *images.values(), test], ["measurement", *images, "truth"], n_images=4,
    psnrs=[psnr(test, X_test), *(psnr(test, image) for image in images.values()), None])
plt.show()
