"""
Tuning hyperparameters with GridSearchCV
========================================

Every hyperparameter of an implicit estimator is an ``__init__`` argument, so scikit-learn's
:class:`~sklearn.model_selection.GridSearchCV` tunes it like any other. The default ``score``
(mean PSNR) works; here we pass :data:`~implicit_inverse.metrics.psnr_scorer` explicitly.

We search the step size ``eta`` of the fixed-point map and the training noise ``noise_std``,
the noise level of the training measurements: every batch is measured afresh, ``A y`` plus
Gaussian noise of that std (the given measurements' noise is replaced, not added to), and ``lam``
is tuned at that level; ``"auto"`` uses the std estimated from the training pairs (here 0.01).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.metrics import psnr_scorer
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_TRAIN = 48 if FAST else 128
MAX_EPOCHS = 1 if FAST else 3
ETAS = [0.5, 1.0] if FAST else [0.25, 0.5, 1.0]
NOISES = ["auto", 0.02] if FAST else ["auto", 0.005, 0.02]

train, test = train_test_faces(size=32, n_test=20, n_patches=N_TRAIN, random_state=0)
train = train[-N_TRAIN:]  # natural patches only: the faces are kept for the test
blur = Blur(gaussian_kernel(9, 1.5))
X_train = make_measurements(train, blur, noise_std=0.01, random_state=0)
X_test = make_measurements(test, blur, noise_std=0.01, random_state=1)

# %%
# The search
# ----------
# Two-fold cross-validation on the training images; the best setting is refitted on all of
# them. Use ``n_jobs`` with ``n_threads=1`` on the estimator to run folds in parallel.
search = GridSearchCV(
    ImplicitDeblurRegressor(operator=blur, max_epochs=MAX_EPOCHS, random_state=0),
    {"eta": ETAS, "noise_std": NOISES}, scoring=psnr_scorer, cv=2)
search.fit(X_train, train)
print("best:", search.best_params_, f"cross-validated PSNR {search.best_score_:.2f} dB")
print(f"test PSNR of the refitted best model: {search.score(X_test, test):.2f} dB")

# %%
# Heat map of the cross-validated PSNR
# ------------------------------------
scores = np.full((len(ETAS), len(NOISES)), np.nan)
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"],
                         strict=True):
    scores[ETAS.index(params["eta"]), NOISES.index(params["noise_std"])] = score

fig, ax = plt.subplots(figsize=(4.8, 3.6))
image = ax.imshow(scores, cmap="viridis", origin="lower")
ax.set_xticks(range(len(NOISES)), [str(n) for n in NOISES])
ax.set_yticks(range(len(ETAS)), [str(e) for e in ETAS])
ax.set(xlabel="noise_std", ylabel="eta", title="Cross-validated PSNR (dB)")
middle = np.nanmean(scores)
for (row, col), value in np.ndenumerate(scores):
    ax.text(col, row, f"{value:.2f}", ha="center", va="center",
            color="black" if value > middle else "white")
fig.colorbar(image, ax=ax)
fig.tight_layout()
plt.show()
