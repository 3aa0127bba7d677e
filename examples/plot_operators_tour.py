"""
A tour of the forward operators
===============================

Forward models ``A`` are :class:`~implicit_inverse.operators.LinearOperator` objects acting on
torch image batches shaped ``(N, C, H, W)``: ``A(x)`` (or ``A.forward(x)``), ``A.adjoint(y)``,
``A.T``, composition with ``@``, sums, scalar multiples, ``A.norm()`` by power iteration and
``A.solve_normal(b, lam)`` for ``(A^T A + lam I) z = b``. Operators never change when called.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import data, transform

from implicit_inverse.operators import (Blur, Downsample, Identity, Mask, dot_test,
                                        gaussian_kernel, make_measurements)

FAST = os.environ.get("IMPLICIT_INVERSE_FAST", "") not in ("", "0")
SIZE = 64 if FAST else 128

image = transform.resize(data.camera() / 255.0, (SIZE, SIZE), anti_aliasing=True)
x = torch.as_tensor(image, dtype=torch.float32)[None, None]  # (N, C, H, W) = (1, 1, SIZE, SIZE)

# %%
# The operators
# -------------
# A circular and a zero-boundary Gaussian blur (same kernel), block-average downsampling, a
# random mask keeping 30% of the pixels, and a composition: blur, then mask.
kernel = gaussian_kernel(9, 2.0)
operators = {
    "circular blur": Blur(kernel),
    "zero-boundary blur": Blur(kernel, boundary="zero"),
    "downsample x4": Downsample(4),
    "mask 30%": Mask(fraction=0.3, random_state=0),
    "mask @ blur": Mask(fraction=0.3, random_state=0) @ Blur(kernel),
}

fig, axes = plt.subplots(2, len(operators) + 1, figsize=(2.2 * (len(operators) + 1), 5.0))
axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
axes[0, 0].set_title("x")
axes[1, 0].axis("off")
for column, (name, operator) in enumerate(operators.items(), start=1):
    measured = operator(x)
    axes[0, column].imshow(measured[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, column].set_title(f"{name}\n{tuple(measured.shape[2:])}", fontsize=9)
    back = operator.adjoint(measured)  # A^T A x, back in the image domain
    axes[1, column].imshow(back[0, 0], cmap="gray")
    axes[1, column].set_title("A^T A x", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Adjoints and norms
# ------------------
# :func:`~implicit_inverse.operators.dot_test` checks ``<A x, y> = <x, A^T y>`` on random
# tensors (about 1e-16 in float64 for a correct adjoint); ``norm`` estimates ``||A||_2``. A
# normalised blur with circular boundary and a mask have norm 1; block averaging has norm
# ``1 / factor`` (each output is the mean of ``factor**2`` pixels).
shape = (2, 1, SIZE, SIZE)
for name, operator in operators.items():
    print(f"{name:>20}: dot test {dot_test(operator, shape):.1e}, "
          f"||A|| = {operator.norm(shape=(1, 1, SIZE, SIZE)):.4f}")

# %%
# Operator algebra
# ----------------
# ``A.T`` is an operator too, ``A.gram()`` is ``A^T A``, and operators add and scale.
blur = operators["circular blur"]
regularised = blur.gram() + 0.1 * Identity()  # A^T A + 0.1 I
print("||A^T A + 0.1 I|| =", round(regularised.norm(shape=(1, 1, SIZE, SIZE)), 4))
print("(A^T)^T is A:", blur.T.T is blur)

# %%
# Measurements and the normal equations
# -------------------------------------
# :func:`~implicit_inverse.operators.make_measurements` adds seeded white noise (numpy in, numpy
# out). ``solve_normal`` gives the Tikhonov solution in closed form for circular blur, masks and
# downsampling, and by conjugate gradients otherwise (here: the zero-boundary blur).
clean = image[None].astype(np.float32)  # (1, H, W)
for name in ("circular blur", "zero-boundary blur"):
    operator = operators[name]
    d = torch.as_tensor(make_measurements(clean, operator, noise_std=0.01, random_state=0))[None]
    estimate = operator.solve_normal(operator.adjoint(d), lam=1e-3)
    error = float((estimate[0, 0] - torch.as_tensor(image)).pow(2).mean())
    print(f"{name:>20}: Tikhonov PSNR {-10 * np.log10(error):.2f} dB")
plt.show()
