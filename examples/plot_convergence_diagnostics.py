"""
Convergence diagnostics
=======================

An implicit model is only as good as its fixed-point solves. This example shows the tools to
check them:

* the solver statistics returned by ``predict_with_stats(X)`` and recorded in the
  training history;
* residual curves of the Anderson and plain forward solvers on the same map;
* :func:`~implicit_inverse.equilibrium.estimate_lipschitz`, the local Lipschitz constant of the
  map at its fixed points (below 1: the map contracts there);
* :func:`~implicit_inverse.equilibrium.safe_step_size`, the step sizes for which the linear part
  of the map contracts;
* what divergence looks like with too large a step on a plain (not preconditioned) map, and the
  :class:`~implicit_inverse.equilibrium.ConvergenceWarning` it raises.
"""

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.equilibrium import (Anderson, ConvergenceWarning, ForwardIteration,
                                          GradientStep, ImplicitLayer, estimate_lipschitz,
                                          safe_step_size)
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
from implicit_inverse.plotting import plot_convergence

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
N_PATCHES = 16 if FAST else 300
MAX_EPOCHS = 1 if FAST else 4

train, test = train_test_faces(size=32, n_test=20, n_patches=N_PATCHES, random_state=0)
blur = Blur(gaussian_kernel(9, 1.5))
X_train = make_measurements(train, blur, noise_std=0.01, random_state=0)
X_test = make_measurements(test, blur, noise_std=0.01, random_state=1)

model = ImplicitDeblurRegressor(operator=blur, max_epochs=MAX_EPOCHS, random_state=0)
model.fit(X_train, train)

# %%
# Statistics of a prediction
# --------------------------
# :class:`~implicit_inverse.equilibrium.SolverStats` holds per-image tensors: iterations,
# final relative residual, converged and diverged flags, and the residual history.
_, stats = model.predict_with_stats(X_test)
print(stats.summary())
print("per epoch of training, mean iterations:", np.round(model.history[:, "fp_iter"], 1))

# %%
# Anderson acceleration against plain iteration
# ---------------------------------------------
# The trained map ``T`` lives in the fitted skorch module. We solve the same fixed points with
# both solvers and a tighter tolerance, starting from ``A^T d`` rather than the Tikhonov
# solution so the curves are long enough to compare.
fixed_point_map = model.net_.module_.fixed_point_map
d = torch.as_tensor(X_test[:, None])  # (N, 1, H, W)
start = blur.adjoint(d)
histories = {}
for name, solver in {"Anderson": Anderson(), "forward": ForwardIteration()}.items():
    x_star, solver_stats = solver.solve(lambda x, index: fixed_point_map(x, d[index]), start,
                                        max_iter=100, tol=1e-6, warn=False)
    histories[name] = solver_stats.history
    print(f"{name:>8}: {solver_stats.iterations.float().mean():.1f} iterations on average, "
          f"{100 * solver_stats.converged.float().mean():.0f}% converged")
fig = plot_convergence(histories, train_loss=model.history[:, "train_loss"],
                       iterations_per_epoch=model.history[:, "fp_iter"])

# %%
# Is the map contracting?
# -----------------------
# The local Lipschitz constant at the fixed points, by power iteration on ``J^T J``.
lipschitz = estimate_lipschitz(fixed_point_map, x_star, d)
print(f"local Lipschitz constant: median {lipschitz.median():.3f}, max {lipschitz.max():.3f}")

# %%
# ``safe_step_size`` bounds ``eta`` for the linear part of the map. Without preconditioning the
# bound is ``2 / (||A||^2 + alpha)``; preconditioned by ``(A^T A + lam I)^{-1}`` it is about 2
# whatever the operator, and the fixed points are the same.
lam = model.lam_
shape = (1, 1, 32, 32)
plain_bound = safe_step_size(blur, shape, alpha=lam)
print(f"lam = {lam:.3g}; safe eta: plain {plain_bound:.3f}, "
      f"preconditioned {safe_step_size(blur, shape, alpha=lam, precondition_lam=lam):.3f}")

# %%
# What divergence looks like
# --------------------------
# A plain gradient step with Tikhonov regularizer (an untrained network), solved by forward
# iteration from ``A^T d``: below the bound it converges (slowly: the plain step is badly
# conditioned), above it the residual grows until the solver stops the sample as diverged and
# returns its lowest-residual iterate, with a ``ConvergenceWarning``.
torch.manual_seed(0)
regularizer = TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=lam)
curves = {}
for factor in (0.5, 0.95, 1.1):
    step = GradientStep(blur, regularizer, eta=factor * plain_bound, initializer="adjoint")
    layer = ImplicitLayer(step, solver="forward", max_iter=150, tol=1e-4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        with torch.no_grad():
            layer(d)
    label = f"eta = {factor} x bound"
    curves[label] = layer.last_stats.history
    print(f"{label}: {int(layer.last_stats.diverged.sum())} of {len(d)} diverged, "
          f"{int(layer.last_stats.converged.sum())} converged")
    for warning in caught:
        print(f"    {warning.category.__name__}: {warning.message}")
fig = plot_convergence(curves)

# %%
# The estimators check the step size when ``fit`` starts and warn outside the safe range;
# training then stops with a ``DivergenceError`` if the solves keep diverging.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    risky = ImplicitDeblurRegressor(operator=blur, eta=1.2 * plain_bound, precondition=False,
                                    max_epochs=1, random_state=0)
    try:
        risky.fit(X_train[:64], train[:64])
    except RuntimeError as error:  # DivergenceError
        print(f"{type(error).__name__}: {error}")
for warning in caught[:1]:
    print(f"{warning.category.__name__}: {warning.message}")
plt.show()
