"""Sampling operators: block-average downsampling, pixel masks and the identity."""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .base import LinearOperator


class Identity(LinearOperator):
    """The identity operator ``A x = x`` (denoising)."""

    def _forward(self, x):
        return x.clone()

    def _adjoint(self, y):
        return y.clone()

    def _solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        return b / (1.0 + lam)


class Downsample(LinearOperator):
    """Block-average downsampling by an integer factor.

    ``(A x)[i, j]`` is the mean of the ``factor x factor`` block of ``x`` at ``(i, j)``; the
    adjoint spreads each value over its block divided by ``factor**2``.

    Parameters
    ----------
    factor : int
        Downsampling factor, >= 1.

    Notes
    -----
    Image sizes that are not multiples of ``factor`` are refused with a ``ValueError`` (crop the
    images first) rather than cropped silently.
    """

    def __init__(self, factor):
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.factor = int(factor)

    def __repr__(self):
        return f"Downsample(factor={self.factor})"

    def _check_input_shape(self, shape):
        if shape[2] % self.factor or shape[3] % self.factor:
            raise ValueError(
                f"image size {shape[2:]} is not a multiple of factor={self.factor}; crop the "
                "images to a multiple of the factor"
            )

    def output_shape(self, shape):
        self._check_input_shape(tuple(shape))
        n, c, h, w = shape
        return (n, c, h // self.factor, w // self.factor)

    def input_shape(self, shape):
        n, c, h, w = shape
        return (n, c, h * self.factor, w * self.factor)

    def _forward(self, x):
        return F.avg_pool2d(x, self.factor)

    def _adjoint(self, y):
        spread = y.repeat_interleave(self.factor, dim=2).repeat_interleave(self.factor, dim=3)
        return spread / self.factor ** 2

    def _solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        # A^T A = P / f^2 with P the block-mean projector: invert on range(P) and its complement.
        if self.factor == 1:
            return b / (1.0 + lam)
        if lam <= 0:
            raise ValueError("lam must be > 0: A^T A is singular for a downsampling operator")
        block_mean = self._adjoint(self._forward(b)) * self.factor ** 2
        return (b - block_mean) / lam + block_mean / (1.0 / self.factor ** 2 + lam)


class Mask(LinearOperator):
    """Pixel-wise masking (inpainting): ``A x = m * x`` with ``m`` in {0, 1}.

    Parameters
    ----------
    mask : array-like of shape (H, W), optional
        Boolean or 0/1 array of the observed pixels. The operator then only takes images of size
        (H, W).
    fraction : float in (0, 1], optional
        Share of observed pixels; a mask of that density is drawn for each image size, the same
        every time for a given ``random_state``. Exactly one of ``mask`` and ``fraction`` is given.
    random_state : int or None, default None
        Seed of the drawn mask (None means seed 0, so the operator is still deterministic).

    Notes
    -----
    The mask is the same for every image and channel of a batch. ``A`` is an orthogonal
    projection: idempotent, self-adjoint and of norm 1 (unless the mask is empty).
    """

    def __init__(self, mask=None, fraction=None, random_state=None):
        if (mask is None) == (fraction is None):
            raise ValueError("give exactly one of mask (an array) or fraction (a float in (0, 1])")
        if mask is not None:
            self.mask = _as_mask(mask)
            self.fraction = None
        else:
            if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
                    or not 0 < fraction <= 1:
                raise ValueError(f"fraction must be a float in (0, 1], got {fraction!r}")
            self.mask = None
            self.fraction = float(fraction)
        if random_state is not None and (isinstance(random_state, bool)
                                         or not isinstance(random_state, numbers.Integral)):
            raise TypeError(f"random_state must be an int or None, got {random_state!r}")
        self.random_state = random_state
        self._cache = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __repr__(self):
        if self.mask is not None:
            return f"Mask(mask shape {tuple(self.mask.shape)})"
        return f"Mask(fraction={self.fraction}, random_state={self.random_state})"

    def _check_input_shape(self, shape):
        if self.mask is not None and tuple(shape[2:]) != tuple(self.mask.shape):
            raise ValueError(
                f"mask of shape {tuple(self.mask.shape)} does not match the image size "
                f"{tuple(shape[2:])}"
            )

    def norm(self, shape=None, max_iter=100, tol=1e-6, dtype=torch.float64, device="cpu",
             seed=0):
        """Operator norm ``||A||_2`` by power iteration (1 for a non-empty mask, else 0).

        Parameters
        ----------
        shape : tuple of 4 ints or None, default None
            Input shape (N, C, H, W). None uses the mask's own size, ``(1, 1, H, W)``, for a
            fixed mask and ``(1, 1, 32, 32)`` for a ``fraction`` mask (drawn per image size).
        max_iter, tol, dtype, device, seed
            As for :meth:`LinearOperator.norm`.

        Returns
        -------
        float
        """
        if shape is None:
            shape = (1, 1, 32, 32) if self.mask is None else (1, 1, *self.mask.shape)
        return super().norm(shape, max_iter=max_iter, tol=tol, dtype=dtype, device=device,
                            seed=seed)

    def mask_for(self, height, width, dtype=torch.float32, device="cpu"):
        """The 0/1 mask used for images of size (height, width), as a tensor of shape (H, W)."""
        key = (height, width, dtype, str(device))
        if key not in self._cache:
            if self.mask is not None:
                values = self.mask
            else:
                seed = 0 if self.random_state is None else self.random_state
                rng = np.random.default_rng([seed, height, width])
                values = torch.as_tensor(rng.random((height, width)) < self.fraction)
            self._cache[key] = values.to(dtype=dtype, device=device)
        return self._cache[key]

    def _forward(self, x):
        return x * self.mask_for(x.shape[2], x.shape[3], x.dtype, x.device)

    _adjoint = _forward

    def _solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        denominator = self.mask_for(b.shape[2], b.shape[3], b.dtype, b.device) + lam
        if bool((denominator <= 0).any()):
            raise ValueError("lam must be > 0: the mask hides some pixels, A^T A is singular")
        return b / denominator


def _as_mask(mask):
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    try:
        array = np.asarray(mask)
    except Exception as error:  # noqa: BLE001 - anything unconvertible is a type error
        raise TypeError(f"mask must be a boolean or 0/1 array: {error}") from None
    if array.dtype == object or not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)
                                     or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"mask must be a boolean or 0/1 array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D shaped (H, W), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("mask must be non-empty")
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("mask must contain only 0/1 (or boolean) values")
    return torch.as_tensor(array.astype(bool))
