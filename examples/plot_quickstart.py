"""
Quick start: deblurring faces
=============================

Fit an :class:`~implicit_inverse.ImplicitDeblurRegressor` on blurred, noisy images, predict on
held-out faces and compare it with a tuned :class:`~implicit_inverse.TikhonovRegressor`. Both are
scikit-learn estimators: ``fit(X, y)`` takes measurements ``X`` and clean images ``y``,
``predict`` returns images, and ``score`` is the mean PSNR in dB (not R^2).
"""

import os
import time

import numpy as np
from sklearn.model_selection import GridSearchCV

from implicit_inverse import ImplicitDeblurRegressor, TikhonovRegressor
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.metrics import psnr, psnr_scorer, ssim
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
from implicit_inverse.plotting import plot_reconstructions

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_PATCHES = 60 if FAST else 600  # natural patches added to the 80 training faces
MAX_EPOCHS = 2 if FAST else 6

# %%
# Data and forward model
# ----------------------
# Clean 32x32 images: 80 faces plus natural-image patches for training, 20 other faces for
# testing. The forward model is a circular Gaussian blur; measurements get white noise of
# standard deviation 0.01.
train, test = train_test_faces(size=32, n_test=20, n_patches=N_PATCHES, random_state=0)
blur = Blur(gaussian_kernel(9, 1.5))
X_train = make_measurements(train, blur, noise_std=0.01, random_state=0)
X_test = make_measurements(test, blur, noise_std=0.01, random_state=1)
print(f"train {X_train.shape}, test {X_test.shape}")

# %%
# Classical baseline: Tikhonov with a tuned weight
# ------------------------------------------------
# ``(A^T A + lam I)^{-1} A^T d`` in closed form; ``lam`` chosen by cross-validated PSNR.
search = GridSearchCV(TikhonovRegressor(blur), {"lam": np.logspace(-4, 0, 9)},
                      scoring=psnr_scorer)
search.fit(X_train, train)
tikhonov = search.best_estimator_
print(f"best lam = {search.best_params_['lam']:.3g}, "
      f"test PSNR = {tikhonov.score(X_test, test):.2f} dB")

# %%
# The implicit model
# ------------------
# Its output is the fixed point of a learned, preconditioned gradient step. Untrained it is
# exactly Tikhonov (the network's last layer starts at zero), so training can only improve on
# the baseline. ``verbose=1`` would print skorch's table per epoch.
model = ImplicitDeblurRegressor(operator=blur, max_epochs=MAX_EPOCHS, random_state=0)
start = time.perf_counter()
model.fit(X_train, train)
print(f"trained {model.n_iter_} epochs in {time.perf_counter() - start:.1f} s "
      f"(lam_ = {model.lam_:.3g}, noise_std_ = {model.noise_std_:.4f})")

reconstructions, stats = model.predict_with_stats(X_test)
print(f"implicit: {psnr(test, reconstructions):.2f} dB, SSIM {ssim(test, reconstructions):.3f}; "
      f"{stats.iterations.float().mean():.1f} fixed-point iterations per image, "
      f"{100 * stats.converged.float().mean():.0f}% converged")

# %%
# The training history is skorch's: loss and solver statistics per epoch.
print(model.history[:, ("epoch", "train_loss", "fp_iter")])

# %%
# Side by side
# ------------
tikhonov_images = tikhonov.predict(X_test)
columns = [X_test, tikhonov_images, reconstructions, test]
fig = plot_reconstructions(
    columns, ["measurement", "Tikhonov", "implicit", "truth"], n_images=4,
    psnrs=[psnr(test, X_test), psnr(test, tikhonov_images), psnr(test, reconstructions), None])
