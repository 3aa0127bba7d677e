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
        implicit model, those of :func:`learned_row`; tuned baselines
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

    gradient = implicit.gradient if isinstance(implicit.gradient, str) else \
        type(implicit.gradient).__name__
    label = f"implicit ({gradient.upper()})" if label is None else label
    implicit_row, outputs["implicit"], stats = learned_row("implicit", label, implicit, X_eval,
                                                           y_eval, implicit_time)
    rows.append(implicit_row)
    return rows, outputs, stats


def learned_row(key, method, model, X_eval, y_eval, spent=0.0):
    """Predict ``X_eval`` with a fitted implicit model and score it: one row of the table.

    Parameters
    ----------
    key, method : str
        The row's key and label.
    model : ImplicitRegressor
    X_eval, y_eval : ndarray of shape (m, H, W) or (m, C, H, W)
    spent : float, default 0.0
        Seconds already spent on the model (training); prediction time is added.

    Returns
    -------
    row : dict
        ``key``, ``method``, ``psnr``, ``ssim``, ``time_s``, ``iterations`` (mean per image),
        ``converged_share``, and the solver's ``max_iter`` and ``tol``.
    output : ndarray of the shape of ``X_eval``'s reconstructions
    stats : SolverStats
    """
    from ..metrics import psnr, ssim

    start = time.perf_counter()
    output, stats = model.predict_with_stats(X_eval)
    return ({"key": key, "method": method, "psnr": psnr(y_eval, output),
             "ssim": ssim(y_eval, output), "time_s": spent + time.perf_counter() - start,
             "iterations": float(stats.iterations.float().mean()),
             "converged_share": float(stats.converged.float().mean()),
             "max_iter": int(stats.max_iter), "tol": float(stats.tol)}, output, stats)


def best_baseline(rows):
    """The tuned classical row with the highest PSNR (what every quality claim is made
    against)."""
    tuned = [row for row in rows if "param" in row]
    return max(tuned, key=lambda row: row["psnr"]) if tuned else None


def best_learned(rows):
    """The learned (fixed-point) row with the highest PSNR, or None."""
    learned = [row for row in rows if "converged_share" in row]
    return max(learned, key=lambda row: row["psnr"]) if learned else None


NOT_CONVERGED = "(!)"
"""Flag of a learned row some of whose solves did not converge."""


def not_converged(row):
    """Whether some of a learned row's solves stopped at ``max_iter`` short of ``tol``."""
    return row.get("converged_share", 1.0) < 1.0


def not_converged_note(rows):
    """The one line that says what a flagged row means and what to do, or None if none is.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`compare_methods`.

    Returns
    -------
    str or None
    """
    flagged = [row for row in rows if not_converged(row)]
    if not flagged:
        return None
    caps = sorted({(row["max_iter"], row["tol"]) for row in flagged})
    cap = ", ".join(f"max_iter={max_iter} before tol={tol:g}" for max_iter, tol in caps)
    return (f"{NOT_CONVERGED} not converged: some solves stopped at {cap}; their image is the "
            "lowest-residual iterate, scored as shown, not the fixed point: the map contracts "
            "too slowly there. Train longer (demo: --finetune-seconds) or build the model with "
            "a higher max_iter (from_pretrained(..., max_iter=400)).")


def verdict(rows):
    """How the best learned row did against the strongest classical one.

    Returns
    -------
    dict or None
        ``learned`` and ``classical`` (the two rows) and ``gain`` (PSNR dB of the first
        minus the second); None without a learned or a tuned classical row.
    """
    learned, classical = best_learned(rows), best_baseline(rows)
    if learned is None or classical is None:
        return None
    return {"learned": learned, "classical": classical,
            "gain": learned["psnr"] - classical["psnr"]}


def method_name(row):
    """A row's label without its parameters: ``total variation (weight=0.002)`` -> ``total
    variation``."""
    return row["method"].split(" (")[0]


def summary_line(label, rows):
    """One line: the best learned row's gain over the strongest classical one, and the share
    of its solves that converged (flagged when not all did).

    Parameters
    ----------
    label : str
        What the rows are of, for instance the kernel.
    rows : list of dict
        As returned by :func:`compare_methods`.

    Returns
    -------
    str
    """
    result = verdict(rows)
    if result is None:
        return f"{label}: no learned or no tuned classical row"
    learned, classical = result["learned"], result["classical"]
    flag = f" {NOT_CONVERGED}" if not_converged(learned) else ""
    return (f"{label}: {method_name(learned)} {learned['psnr']:.2f} dB, {result['gain']:+.2f} dB "
            f"over {method_name(classical)} ({classical['psnr']:.2f} dB); "
            f"{100 * learned['converged_share']:.0f}% of its solves converged{flag}")


def _table_cells(rows, time_header):
    header = ["method", "PSNR (dB)", "SSIM", time_header, "FP iterations", "converged"]
    lines = [[r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
              "-" if r["time_s"] is None else f"{r['time_s']:.1f}",
              f"{r['iterations']:.1f}" if "iterations" in r else "-",
              (f"{100 * r['converged_share']:.0f}%"
               + (f" {NOT_CONVERGED}" if not_converged(r) else ""))
              if "converged_share" in r else "-"]
             for r in rows]
    return header, lines


def format_table(rows, time_header="time (s)"):
    """Plain-text table of :func:`compare_methods` rows.

    A learned row whose solves did not all converge is flagged ``(!)`` in its ``converged``
    cell, and the table ends with :func:`not_converged_note`.

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

    note = not_converged_note(rows)
    return "\n".join([join(header), "  ".join("-" * w for w in widths),
                      *(join(cells) for cells in lines), *([note] if note else [])])


def markdown_table(rows, time_header="time (s)"):
    """The table of :func:`format_table` in Markdown (with its flags and closing note).

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
    note = not_converged_note(rows)
    return "\n".join(out + ([f"\n{note}"] if note else []))


def print_table(title, rows, time_header="time (s)"):
    print()
    print(title)
    print()
    print(format_table(rows, time_header))
    sys.stdout.flush()
