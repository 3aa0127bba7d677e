"""The comparison table of ``demo`` and ``evaluate``: classical baselines against the model."""

from __future__ import annotations

import sys
import time

LABELS = {"tikhonov": "Tikhonov", "wiener": "Wiener", "tv": "total variation"}
"""Row labels of the tuned baselines, by key of ``baselines.tuning.BASELINES``."""


def compare_methods(operator, X_tune, y_tune, X_eval, y_eval, implicit, implicit_time=0.0,
                    seed=0, label=None):
    """Reconstruct ``X_eval`` with the baselines and the implicit model; score against ``y_eval``.

    Parameters
    ----------
    operator : LinearOperator
    X_tune, y_tune : ndarray of shape (n, H, W) or (n, C, H, W)
        Data on which each baseline's weight is tuned by
        :func:`~implicit_inverse.baselines.tuning.tune_strongest` (Tikhonov's ``lam``, Wiener's
        ``balance`` and total variation's ``weight``).
    X_eval, y_eval : ndarray of shape (m, H, W) or (m, C, H, W)
        Evaluation measurements and clean images.
    implicit : ImplicitRegressor
        A fitted model.
    implicit_time : float, default 0.0
        Seconds already spent on the implicit model (its training); prediction time is added.
    seed : int, default 0
        Seed of the tuning subset (``random_state`` of ``tune_strongest``).
    label : str or None, default None
        Row label of the implicit model (None: "implicit (GRADIENT)").

    Returns
    -------
    rows : list of dict
        One per method: ``key``, ``method``, ``psnr``, ``ssim``, ``time_s`` and, for the
        implicit model, ``iterations`` (mean per image) and ``converged_share``; tuned baselines
        also have ``param`` and ``value``, and their time is that of tuning and predicting.
    outputs : dict of str to ndarray
        Reconstructions of ``X_eval`` keyed by ``key`` (``"direct"``, ``"tikhonov"``,
        ``"wiener"``, ``"tv"``, ``"implicit"``).
    stats : SolverStats
        Fixed-point statistics of the implicit model on ``X_eval``.
    """
    from ..baselines import DirectInverseRegressor, tune_strongest
    from ..metrics import psnr, ssim

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

    tuned, _ = tune_strongest(operator, X_tune, y_tune, random_state=seed)
    for key, baseline in tuned.items():
        start = time.perf_counter()
        outputs[key] = baseline.estimator.predict(X_eval)
        param, value = baseline.param, baseline.value
        rows.append(row(key, f"{LABELS[key]} ({param}={value:.3g})", outputs[key],
                        baseline.seconds + time.perf_counter() - start, param=param,
                        value=value))

    start = time.perf_counter()
    outputs["implicit"], stats = implicit.predict_with_stats(X_eval)
    seconds = implicit_time + time.perf_counter() - start
    gradient = implicit.gradient if isinstance(implicit.gradient, str) else \
        type(implicit.gradient).__name__
    label = f"implicit ({gradient.upper()})" if label is None else label
    rows.append(row("implicit", label, outputs["implicit"], seconds,
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
