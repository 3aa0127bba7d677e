"""Mixed precision of the regularizer (``precision="bfloat16"``) against float32, on the CPU.

``ImplicitDeblurRegressor(precision=...)`` on the project's deblurring recipe
(``deblur_problem``: faces + natural patches, 32x32, 9x9 Gaussian blur sigma 1.5, noise std
0.01), the same seed, data and hyperparameters for every run, one torch thread. The
runs train in alternation, one epoch at a time (``partial_fit``), so that a change in the
machine's load affects both alike.

Reported per precision: median seconds per training epoch (skorch's ``dur``) and CPU seconds
per epoch, mean forward iterations of the training solves, share of converged training solves,
skipped batches (diverged solves or non-finite losses), whether every parameter is finite, and
the test PSNR of ``predict`` after the last epoch (``predict`` runs in float32 for both: see
``MixedPrecision``) with its solves' convergence share.

Usage: ``python benchmarks/mixed_precision.py [--epochs 6] [--patches 300] [--runs float32:1e-3
bfloat16:5e-3 ...] [--json out.json]``; on a GPU add ``--device cuda`` and ``float16:...`` runs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from run import deblur_problem, machine_line, markdown_table, quiet_warnings


def _cpu_time_callback():
    """skorch callback: CPU seconds of every training epoch (``cpu`` in the history)."""
    from skorch.callbacks import Callback

    class CPUTime(Callback):
        def on_epoch_begin(self, net, **kwargs):
            self.start_ = time.process_time()

        def on_epoch_end(self, net, **kwargs):
            net.history.record("cpu", time.process_time() - self.start_)

    return CPUTime()


def _reduced_predict_psnr(estimator, X, y):
    """Test PSNR when predict, too, runs the regularizer in reduced precision."""
    from implicit_inverse.networks import MixedPrecision
    wrapper = estimator.net_.module_.layer.map.regularizer
    if not isinstance(wrapper, MixedPrecision):
        return None
    wrapper.inference = True
    try:
        return float(estimator.score(X, y))
    finally:
        wrapper.inference = False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patches", type=int, default=300)
    parser.add_argument("--runs", nargs="+", default=["float32:1e-3", "bfloat16:1e-3",
                                                       "float32:5e-3", "bfloat16:5e-3"],
                        help="PRECISION:TRAIN_TOL pairs (train_tol of the training solves)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quiet_warnings()

    from implicit_inverse import ImplicitDeblurRegressor

    operator, X_train, y_train, X_test, y_test = deblur_problem(args.patches)
    estimators = {}
    for run in args.runs:
        precision, train_tol = run.split(":")
        estimators[run] = ImplicitDeblurRegressor(
            operator=operator, precision=precision, train_tol=float(train_tol),
            device=args.device, max_epochs=args.epochs, random_state=0, n_threads=1,
            callbacks=[_cpu_time_callback()])
    for _ in range(args.epochs):
        for estimator in estimators.values():
            estimator.partial_fit(X_train, y_train)
    rows, results = [], {}
    for precision, estimator in estimators.items():
        history = estimator.history
        prediction, stats = estimator.predict_with_stats(X_test)
        finite = all(bool(torch.isfinite(p).all()) for p in estimator.net_.module_.parameters())
        result = {
            "s_per_epoch": float(np.median(history[:, "dur"])),
            "cpu_s_per_epoch": float(np.median(history[:, "cpu"])),
            "fp_iter": float(np.mean(history[:, "fp_iter"])),
            "fp_conv": float(np.mean(history[:, "fp_conv"])),
            "fp_res": float(np.median(history[:, "fp_res"])),
            "skipped": int(np.sum(history[:, "skipped"])),
            "finite": finite,
            "test_psnr": float(estimator.score(X_test, y_test)),
            "test_psnr_bfloat16_predict": _reduced_predict_psnr(estimator, X_test, y_test),
            "test_conv": float(stats.converged.float().mean()),
        }
        results[precision] = result
        rows.append([precision.replace(":", " / "), f"{result['s_per_epoch']:.2f}",
                     f"{result['cpu_s_per_epoch']:.2f}", f"{result['fp_iter']:.1f}",
                     f"{result['fp_conv']:.2f}", f"{result['fp_res']:.1e}",
                     str(result["skipped"]), "yes" if finite else "NO",
                     f"{result['test_psnr']:.2f}", f"{result['test_conv']:.2f}",
                     "-" if result["test_psnr_bfloat16_predict"] is None
                     else f"{result['test_psnr_bfloat16_predict']:.2f}"])
    print(machine_line(1))
    print(f"{len(X_train)} training images 32x32, batch 32, {args.epochs} epochs, "
          f"device {args.device}")
    print(markdown_table(["precision / train_tol", "s/epoch", "CPU s/epoch", "train fp iter",
                          "train conv", "train residual", "skipped", "finite", "test PSNR",
                          "test conv", "test PSNR (bf16 predict)"], rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
