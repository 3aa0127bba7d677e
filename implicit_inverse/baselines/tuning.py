"""How the classical baselines are tuned: one grid per method, and :func:`tune_strongest`.

Every comparison of the library (``implicit-inverse demo`` and ``evaluate``,
``benchmarks/quality.py``, ``benchmarks/time_to_quality.py``) tunes the baselines with
:func:`tune_strongest`: each method's weight is chosen over its grid below by cross-validated PSNR
(``GridSearchCV`` with ``psnr_scorer``) on one seeded subset of the training pairs, so the
methods' scores are comparable and the strongest is the one with the highest.

Total variation runs 60 ADMM iterations per image and grid point, and larger weights cost more
(each TV step needs more Chambolle iterations: 21 faces took 0.19 s at ``weight=1e-4``, 1.3 s at
0.1). Its exhaustive search was the slowest step of ``demo`` (839 s of a fresh clone's run on a
loaded machine), so it is searched coarse to fine on :data:`MAX_SAMPLES` pairs instead (see
:data:`TV_COARSE_STEP`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from .classical import TikhonovRegressor, WienerRegressor, tikhonov
from .total_variation import TotalVariationRegressor

LAM_GRID = tuple(float(v) for v in np.logspace(-5, 0, 26))
"""Grid of :class:`TikhonovRegressor`'s ``lam`` (5 points per decade), also the grid of
:func:`tune_lam`."""
BALANCE_GRID = tuple(float(v) for v in np.logspace(-5, 0, 21))
"""Grid of :class:`WienerRegressor`'s ``balance`` (4 points per decade)."""
TV_WEIGHT_GRID = tuple(float(v) for v in np.logspace(-4, -1, 16))
"""Grid of :class:`TotalVariationRegressor`'s ``weight`` (5 points per decade)."""
TV_COARSE_STEP = 3
"""Stride of total variation's coarse pass over :data:`TV_WEIGHT_GRID` (0.6 decade).

From the smallest weight, every third point while the cross-validated PSNR rises, then the
points between the best of them and its coarse neighbours: 8 of the 16 points when the best
weight is near ``1e-3``, and none of the expensive large weights beyond the first coarse point
past the best. Measured on the demo's data (``train_test_faces(size=32, n_test=20,
n_patches=600, random_state=s)``, 9 x 9 Gaussian blur of sigma 1.5, noise 0.01, one torch thread,
a loaded 2-core machine) against the former search of ``demo`` (all 16 points, 120 pairs, 5
folds): the same weight, ``1e-3``, for ``s = 0`` and ``1``, and one grid point lower for
``s = 2`` (``6.3e-4``, 27.67 against 27.54 dB on the test faces); for ``s = 0`` 12-16 s against
67-89 s, and in ``implicit-inverse demo --epochs 1 --threads 1`` the total-variation row's time
(tuning and predicting) went from 43.5 to 7.9 s.
"""

MAX_SAMPLES = 64
"""Training pairs (a seeded random subset) on which :func:`tune_strongest` tunes by default."""
CV_FOLDS = 3
"""Cross-validation folds of :func:`tune_strongest` by default."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A tunable classical baseline.

    Attributes
    ----------
    estimator : type
        The estimator class, built as ``estimator(operator, **{param: value})``.
    param : str
        The tuned parameter.
    grid : tuple of float
        Its candidate values, increasing.
    coarse_step : int
        1: every grid point is scored. k > 1: coarse to fine, assuming the score is unimodal
        over the grid: every k-th point (and the last) from the first, onwards while the score
        rises, then the points between the best of them and its coarse neighbours.
    """

    estimator: type
    param: str
    grid: tuple
    coarse_step: int = 1


BASELINES = {
    "tikhonov": Baseline(TikhonovRegressor, "lam", LAM_GRID),
    "wiener": Baseline(WienerRegressor, "balance", BALANCE_GRID),
    "tv": Baseline(TotalVariationRegressor, "weight", TV_WEIGHT_GRID, TV_COARSE_STEP),
}
"""The baselines :func:`tune_strongest` tunes, by key."""


@dataclasses.dataclass
class TunedBaseline:
    """One baseline tuned by :func:`tune_strongest`.

    Attributes
    ----------
    estimator : estimator
        Fitted, with the chosen value.
    param : str
        The tuned parameter.
    value : float
        Its chosen value (a point of the method's grid).
    cv_psnr : float
        Mean PSNR (dB) over the held-out folds at ``value``.
    seconds : float
        Wall time of the search.
    n_samples : int
        Training pairs it was tuned on.
    n_evaluated : int
        Grid points scored.
    """

    estimator: object
    param: str
    value: float
    cv_psnr: float
    seconds: float
    n_samples: int
    n_evaluated: int


def _search(baseline, operator, X, y, cv):
    """``(grid index, mean held-out PSNR, points scored)`` of the best point of the grid."""
    from sklearn.model_selection import GridSearchCV

    from ..metrics import psnr_scorer

    grid, step = baseline.grid, baseline.coarse_step
    scores = {}

    def score(index):
        if index not in scores:
            search = GridSearchCV(baseline.estimator(operator), {baseline.param: [grid[index]]},
                                  scoring=psnr_scorer, cv=cv, refit=False).fit(X, y)
            scores[index] = float(np.nan_to_num(search.cv_results_["mean_test_score"][0],
                                                nan=-np.inf))  # a failed fit ranks last
        return scores[index]

    if step == 1:
        for index in range(len(grid)):
            score(index)
    else:
        coarse = sorted({*range(0, len(grid), step), len(grid) - 1})
        top = 0  # climb the coarse points while the score rises
        score(coarse[top])
        while top + 1 < len(coarse) and score(coarse[top + 1]) > score(coarse[top]):
            top += 1
        for index in range(coarse[max(top - 1, 0)] + 1, coarse[min(top + 1, len(coarse) - 1)]):
            score(index)
    best = max(sorted(scores), key=scores.get)  # the smallest of tied values, as GridSearchCV
    return best, scores[best], len(scores)


def tune_strongest(operator, X, y, *, methods=None, max_samples=None, cv=None, random_state=0):
    """Tune the classical baselines on training pairs and name the strongest.

    Each method's parameter is chosen over its grid (:data:`BASELINES`) by the mean PSNR on
    held-out folds (``GridSearchCV`` with ``psnr_scorer``), all methods on the same seeded subset
    of the pairs and the same folds. Total variation's grid is searched coarse to fine
    (:data:`TV_COARSE_STEP`), the closed-form methods' exhaustively.

    Parameters
    ----------
    operator : LinearOperator
    X : ndarray of shape (n, H', W'), (n, C, H', W') or (n, F)
        Training measurements.
    y : ndarray of shape (n, H, W), (n, C, H, W) or (n, F')
        The clean images.
    methods : sequence of str or None, default None
        Keys of :data:`BASELINES` to tune (None: all, ``"tikhonov"``, ``"wiener"``, ``"tv"``).
    max_samples : int or None, default None
        Tune on at most this many pairs (None: :data:`MAX_SAMPLES`): the pairs
        ``np.random.default_rng(random_state).permutation(n)[:max_samples]``, shuffled even
        when all are kept so that the folds do not follow the order of the data.
    cv : int or None, default None
        Consecutive folds of those pairs (``KFold``, None: :data:`CV_FOLDS`), at most half the
        number of pairs and at least 2.
    random_state : int, default 0
        Seed of the subset and its order.

    Returns
    -------
    tuned : dict of str to TunedBaseline
        By method key, in the order of ``methods``.
    strongest : str
        The key of the method with the highest ``cv_psnr``.
    """
    methods = list(BASELINES) if methods is None else list(methods)
    unknown = sorted(set(methods) - set(BASELINES))
    if unknown or not methods:
        raise ValueError(f"methods must be among {sorted(BASELINES)}, got {methods!r}")
    max_samples = MAX_SAMPLES if max_samples is None else max_samples
    order = np.random.default_rng(random_state).permutation(len(X))[:max_samples]
    X, y = X[order], y[order]
    cv = max(2, min(CV_FOLDS if cv is None else cv, len(X) // 2))
    tuned = {}
    for key in methods:
        baseline = BASELINES[key]
        start = time.perf_counter()
        index, score, evaluated = _search(baseline, operator, X, y, cv)
        value = baseline.grid[index]
        estimator = baseline.estimator(operator, **{baseline.param: value}).fit(X, y)
        tuned[key] = TunedBaseline(estimator, baseline.param, value, score,
                                   time.perf_counter() - start, len(X), evaluated)
    strongest = max(tuned, key=lambda key: tuned[key].cv_psnr)
    return tuned, strongest


def tune_lam(operator, measurements, clean, grid=LAM_GRID, max_samples=256):
    """The Tikhonov weight of ``grid`` with the best mean PSNR on (up to ``max_samples``) pairs.

    The starting weight of the implicit models (``lam="auto"``): one batched pass over the
    grid on the training tensors, without cross-validation (nothing is fitted, so held-out
    folds would only split the same mean).

    Parameters
    ----------
    operator : LinearOperator
    measurements : torch.Tensor of shape (n, C, H', W')
    clean : torch.Tensor of shape (n, C, H, W)
    grid : sequence of float > 0, default LAM_GRID
    max_samples : int, default 256

    Returns
    -------
    float
    """
    measurements, clean = measurements[:max_samples], clean[:max_samples]
    best_lam, best_psnr = grid[0], -math.inf
    with torch.no_grad():
        for lam in grid:
            error = (tikhonov(operator, measurements, lam) - clean).pow(2).flatten(1).mean(1)
            score = float((-10 * torch.log10(error.clamp_min(1e-12))).mean())
            if score > best_psnr:
                best_lam, best_psnr = lam, score
    return best_lam
