"""
Jacobian-free or exact gradients?
=================================

The loss is computed at the fixed point ``x* = T(x*; d)``. Its exact gradient (implicit
function theorem) needs a second fixed-point solve in the backward pass, ``g = J^T g + dL/dx*``
with ``J = dT/dx`` at ``x*``. Jacobian-free backpropagation (JFB) drops ``J``: it backpropagates
through one application of ``T`` only. With the preconditioned step, ``J`` is small, JFB is a
close approximation and each epoch is cheaper.

Here both are trained epoch by epoch with ``partial_fit`` on the same data and seeds; we record
the time per epoch and the test PSNR after each epoch.
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from implicit_inverse import ImplicitDeblurRegressor, TikhonovRegressor
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_PATCHES = 16 if FAST else 120
N_EPOCHS = 2 if FAST else 5

train, test = train_test_faces(size=32, n_test=20, n_patches=N_PATCHES, random_state=0)
blur = Blur(gaussian_kernel(9, 1.5))
X_train = make_measurements(train, blur, noise_std=0.01, random_state=0)
X_test = make_measurements(test, blur, noise_std=0.01, random_state=1)

# %%
# Train both, one epoch at a time
# -------------------------------
# The first ``partial_fit`` initialises the model as ``fit`` does; each call trains one epoch.
curves = {}
for gradient in ("jfb", "exact"):
    model = ImplicitDeblurRegressor(operator=blur, gradient=gradient, random_state=0)
    scores = []
    for _ in range(N_EPOCHS):
        model.partial_fit(X_train, train)
        scores.append(model.score(X_test, test))
    seconds = np.asarray(model.history[:, "dur"])
    curves[gradient] = (seconds, np.asarray(scores))
    line = f"{gradient:>5}: {seconds.mean():.2f} s per epoch, final PSNR {scores[-1]:.2f} dB"
    if gradient == "exact":
        line += f", {np.mean(model.history[:, 'bw_iter']):.1f} backward iterations per batch"
    print(line)

tikhonov_psnr = TikhonovRegressor(blur, lam=model.lam_).fit(X_train, train).score(X_test, test)

# %%
# Cost and accuracy
# -----------------
# The exact gradient costs a backward fixed-point solve of vector-Jacobian products, each about
# as expensive as one forward evaluation of the network.
fig, (ax_time, ax_psnr) = plt.subplots(1, 2, figsize=(9, 3.5))
epochs = np.arange(1, N_EPOCHS + 1)
for gradient, (seconds, scores) in curves.items():
    ax_time.plot(epochs, seconds, marker="o", label=gradient)
    ax_psnr.plot(epochs, scores, marker="o", label=gradient)
ax_psnr.axhline(tikhonov_psnr, color="gray", linestyle="--", label="Tikhonov (start)")
ax_time.set(xlabel="epoch", ylabel="seconds", title="Time per epoch")
ax_psnr.set(xlabel="epoch", ylabel="test PSNR (dB)", title="Test PSNR")
for ax in (ax_time, ax_psnr):
    ax.set_xticks(epochs)
    ax.legend()
fig.tight_layout()
plt.show()
