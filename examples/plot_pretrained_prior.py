"""
Restoring a photo with the shipped prior, no training
=====================================================

:meth:`~implicit_inverse.ImplicitRegressor.from_pretrained` wraps the denoising prior that ships
with the package in a plug-and-play fixed point,
``x <- D_sigma(x - (A^T A + lam I)^{-1} A^T (A x - d))``, and calibrates ``lam`` and the
denoiser strength ``sigma`` for the blur and noise level at hand on crops of the prior's own
training photos. No training data is needed: it restores at once, images of any size. We
compare it with total variation, tuned by :func:`~implicit_inverse.baselines.tune_strongest` on
crops of other photos, on the held-out photo ``camera``.
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.baselines import tune_strongest
from implicit_inverse.data.photos import load_photo, training_crops
from implicit_inverse.metrics import psnr
from implicit_inverse.operators import Blur, disk_kernel, make_measurements

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
SIZE = 96 if FAST else 192
N_TUNING = 8 if FAST else 24

blur = Blur(disk_kernel(2))  # defocus, radius 2 pixels
camera = load_photo("camera")[100:100 + SIZE, 180:180 + SIZE][None]  # held out everywhere
measured = make_measurements(camera, blur, noise_std=0.01, random_state=0)

# %%
# The zero-shot estimator: calibrated in a few seconds, then ``predict`` as usual.
model = ImplicitDeblurRegressor.from_pretrained(operator=blur, noise_std=0.01)
restored, stats = model.predict_with_stats(measured)
print(f"lam = {model.lam_:.3g}, sigma = {model.prior_sigma_:.3g}; "
      f"{stats.summary()['iterations_mean']:.0f} fixed-point iterations, "
      f"converged: {bool(stats.converged.all())}")

# %%
# The strongest classical baselines, tuned on crops of the other bundled photos.
crops = training_crops(N_TUNING, 64, seed=0)
tuned, strongest = tune_strongest(blur, make_measurements(crops, blur, 0.01, random_state=1),
                                  crops, methods=["wiener", "tv"])
classical = tuned["tv"].estimator.predict(measured)

# %%
# Side by side (PSNR in dB).
images = [measured, classical, restored, camera]
titles = ["measurement", f"total variation (weight {tuned['tv'].value:.2g})", "shipped prior",
          "truth"]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, image, title in zip(axes, images, titles):
    ax.imshow(np.clip(image[0], 0, 1), cmap="gray", vmin=0, vmax=1)
    score = "" if image is camera else f"\n{psnr(camera, image):.2f} dB"
    ax.set_title(title + score)
    ax.axis("off")
fig.tight_layout()
plt.show()
