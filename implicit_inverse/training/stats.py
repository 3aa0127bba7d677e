"""Solver statistics in skorch's history: per batch, and per epoch by :class:`SolverStatsLog`."""

from __future__ import annotations

import warnings

import numpy as np
from skorch.callbacks import Callback

from ..equilibrium import ConvergenceWarning


def record_solver_stats(history, stats, prefix):
    """Write one batch's solver statistics into a skorch history."""
    summary = stats.summary()
    history.record_batch(f"{prefix}_iter", summary["iterations_mean"])
    history.record_batch(f"{prefix}_iter_max", summary["iterations_max"])
    history.record_batch(f"{prefix}_conv", summary["converged_share"])
    history.record_batch(f"{prefix}_res", summary["residual_max"])


class SolverStatsLog(Callback):
    """Epoch summary of the batch statistics, shown in skorch's table and kept in the history.

    Per epoch: ``fp_iter`` (mean forward iterations), ``fp_iter_max``, ``fp_conv`` (share of
    samples converged), ``fp_res`` (largest final residual), ``skipped`` (batches skipped), and
    ``bw_*`` for the backward solve of the exact gradient, ``jac`` (mean Jacobian penalty, when
    it is used). Warns at the end of training when most batches of the last epoch reached the
    iteration cap.
    """

    KEYS = {"fp_iter": np.mean, "fp_iter_max": np.max, "fp_conv": np.mean, "fp_res": np.max,
            "bw_iter": np.mean, "bw_iter_max": np.max, "bw_conv": np.mean, "skipped": np.sum,
            "jac": np.mean}

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1, "batches"]
        for key, reduce in self.KEYS.items():
            values = [batch[key] for batch in batches if key in batch]
            if values:
                net.history.record(key, float(reduce(values)))

    def on_train_end(self, net, **kwargs):
        if not len(net.history):
            return
        batches = net.history[-1, "batches"]
        options = net.module_.solve_options
        cap, name = ((options["max_iter"], "max_iter") if options["train_max_iter"] is None
                     else (options["train_max_iter"], "train_max_iter"))
        capped = [batch["fp_iter_max"] >= cap for batch in batches if "fp_iter_max" in batch]
        if capped and np.mean(capped) > 0.5:
            warnings.warn(
                f"in the last epoch {int(np.sum(capped))} of {len(capped)} training batches hit "
                f"{name}={cap} in the fixed-point solve: the map is not contracting well; "
                f"reduce eta or raise {name}", ConvergenceWarning, stacklevel=2)
