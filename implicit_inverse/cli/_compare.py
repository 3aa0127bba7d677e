"""The comparison table of ``demo`` and ``evaluate``: classical baselines against the model."""

from __future__ import annotations

import sys
import time

import numpy as np

TIKHONOV_GRID = np.logspace(-4, 0, 9)
CV_FOLDS = 5
"""Cross-validation folds of the baselines' grid searches."""
MAX_TUNING_IMAGES = 120
"""Baselines are tuned by grid search on at most this many training images (a seeded subset):
total variation runs an iterative solver per image and grid point."""


def _baselines():
    """``(key, label, estimator class, parameter, grid)`` of each tuned classical baseline."""
    from ..estimators import TikhonovRegressor, TotalVariationRegressor, WienerRegressor
    from ..estimators.classical import BALANCE_GRID
    from ..estimators.total_variation import TV_WEIGHT_GRID

    return [("tikhonov", "Tikhonov", TikhonovRegressor, "lam", TIKHONOV_GRID),
            ("wiener", "Wiener", WienerRegressor, "balance", BALANCE_GRID),
            ("tv", "total variation", TotalVariationRegressor, "weight", TV_WEIGHT_GRID)]


def _tuning_subset(X, y, seed):
    if len(X) <= MAX_TUNING_IMAGES:
        return X, y
    chosen = np.sort(np.random.default_rng(seed).choice(len(X), MAX_TUNING_IMAGES,
                                                         replace=False))
    return X[chosen], y[chosen]


def compare_methods(operator, X_tune, y_tune, X_eval, y_eval, implicit, implicit_time=0.0,
                    seed=0):
    """Reconstruct ``X_eval`` with the baselines and the implicit model; score against ``y_eval``.

    Parameters
    ----------
    operator : LinearOperator
    X_tune, y_tune : ndarray of shape (n, H, W) or (n, C, H, W)
        Data on which each baseline's weight is tuned (``GridSearchCV`` with ``psnr_scorer``,
        on at most :data:`MAX_TUNING_IMAGES` of them): Tikhonov's ``lam`` over
        :data:`TIKHONOV_GRID`, Wiener's ``balance`` and total variation's ``weight`` over the
        grids their module exports.
    X_eval, y_eval : ndarray of shape (m, H, W) or (m, C, H, W)
        Evaluation measurements and clean images.
    implicit : ImplicitRegressor
        A fitted model.
    implicit_time : float, default 0.0
        Seconds already spent on the implicit model (its training); prediction time is added.
    seed : int, default 0
        Seed of the tuning subset.

    Returns
    -------
    rows : list of dict
        One per method: ``key``, ``method``, ``psnr``, ``ssim``, ``time_s`` and, for the
        implicit model, ``iterations`` (mean per image) and ``converged_share``; tuned baselines
        also have ``param`` and ``value``.
    outputs : dict of str to ndarray
        Reconstructions of ``X_eval`` keyed by ``key`` (``"direct"``, ``"tikhonov"``,
        ``"wiener"``, ``"tv"``, ``"implicit"``).
    stats : SolverStats
        Fixed-point statistics of the implicit model on ``X_eval``.
    """
    from sklearn.model_selection import GridSearchCV

    from ..estimators import DirectInverseRegressor
    from ..metrics import psnr, psnr_scorer, ssim

    def row(key, method, images, seconds, **extra):
        return {"key": key, "method": method, "psnr": psnr(y_eval, images),
                "ssim": ssim(y_eval, images), "time_s": seconds, **extra}

    rows = [row("measurement", "measurement", X_eval, None)] \
        if X_eval.shape == y_eval.shape else []
    outputs = {}

    start = time.perf_counter()
    direct = DirectInverseRegressor(operator).fit(X_tune, y_tune)
    outputs["direct"] = direct.predict(X_eval)
    rows.append(row("direct", "direct inverse", outputs["direct"], time.perf_counter() - start))

    X_small, y_small = _tuning_subset(X_tune, y_tune, seed)
    for key, label, estimator, param, grid in _baselines():
        start = time.perf_counter()
        search = GridSearchCV(estimator(operator), {param: list(grid)}, scoring=psnr_scorer,
                              cv=max(2, min(CV_FOLDS, len(X_small) // 2)))
        search.fit(X_small, y_small)
        outputs[key] = search.best_estimator_.predict(X_eval)
        value = float(search.best_params_[param])
        rows.append(row(key, f"{label} ({param}={value:.3g})", outputs[key],
                        time.perf_counter() - start, param=param, value=value))

    start = time.perf_counter()
    outputs["implicit"], stats = implicit.predict(X_eval, return_stats=True)
    seconds = implicit_time + time.perf_counter() - start
    gradient = implicit.gradient if isinstance(implicit.gradient, str) else \
        type(implicit.gradient).__name__
    rows.append(row("implicit", f"implicit ({gradient.upper()})", outputs["implicit"], seconds,
                    iterations=float(stats.iterations.float().mean()),
                    converged_share=float(stats.converged.float().mean())))
    return rows, outputs, stats


def best_baseline(rows):
    """The tuned classical row with the highest PSNR (what every quality claim is made
    against)."""
    tuned = [row for row in rows if "param" in row]
    return max(tuned, key=lambda row: row["psnr"]) if tuned else None


def _table_cells(rows, time_header):
    header = ["method", "PSNR (dB)", "SSIM", time_header, "FP iterations", "converged"]
    lines = [[r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
              "-" if r["time_s"] is None else f"{r['time_s']:.1f}",
              f"{r['iterations']:.1f}" if "iterations" in r else "-",
              f"{100 * r['converged_share']:.0f}%" if "converged_share" in r else "-"]
             for r in rows]
    return header, lines


def format_table(rows, time_header="time (s)"):
    """Plain-text table of :func:`compare_methods` rows.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`compare_methods`.
    time_header : str, default "time (s)"
        Title of the time column.

    Returns
    -------
    str
    """
    header, lines = _table_cells(rows, time_header)
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def join(cells):
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                         for i, cell in enumerate(cells))

    return "\n".join([join(header), "  ".join("-" * w for w in widths),
                      *(join(cells) for cells in lines)])


def markdown_table(rows, time_header="time (s)"):
    """The table of :func:`format_table` in Markdown.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`compare_methods`.
    time_header : str, default "time (s)"
        Title of the time column.

    Returns
    -------
    str
    """
    header, lines = _table_cells(rows, time_header)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def print_table(title, rows, time_header="time (s)"):
    print()
    print(title)
    print()
    print(format_table(rows, time_header))
    sys.stdout.flush()
