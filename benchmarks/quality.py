"""Reconstruction quality of the default implicit model against classical baselines.

Data (offline): 32x32 faces from ``skimage.data.lfw_subset()`` (first 100 images); training on
faces 0-79 plus 600 natural 32x32 patches, testing on faces 80-99. Circular Gaussian blur, fixed
noise seeds. Two settings: (a) 9x9 blur, sigma 1.5, noise 0.01; (b) 5x5 blur, sigma 5, noise
0.005.

Rows: measurement, direct inverse, the three classical baselines tuned by
``implicit_inverse.baselines.tune_strongest`` on the training set (``GridSearchCV``, PSNR, on its
seeded subset of 64 pairs: Tikhonov over ``lam``, Wiener over ``balance``, total variation over
``weight``, coarse to fine), the default ``ImplicitDeblurRegressor`` (only ``operator`` given) and
the same with ``gradient="exact"``, both trained for at most ``--budget`` seconds (epochs run
until the budget is spent or the default ``max_epochs`` is reached). Every implicit row is
compared with the best classical row.

Usage::

    python benchmarks/quality.py                  # both settings, 600 s per model
    python benchmarks/quality.py --settings a --budget 120 --out quality_output
    python benchmarks/quality.py --settings c --blur 7 2.0 --noise 0.02   # any other setting
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import torch

from implicit_inverse import DirectInverseRegressor, ImplicitDeblurRegressor
from implicit_inverse.baselines import tune_strongest
from implicit_inverse.datasets import train_test_faces
from implicit_inverse.equilibrium import ConvergenceWarning
from implicit_inverse.estimators import DivergenceError
from implicit_inverse.metrics import psnr, ssim
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
from implicit_inverse.plotting import plot_reconstructions, save_figure

SETTINGS = {"a": (9, 1.5, 0.01), "b": (5, 5.0, 0.005)}
LABELS = {"tikhonov": "Tikhonov", "wiener": "Wiener", "tv": "TV"}


def train_within_budget(estimator, X, y, budget):
    """Train epoch by epoch (``partial_fit``) until ``budget`` seconds or ``max_epochs``.

    Returns the seconds spent and the ``DivergenceError`` message if training stopped on one
    (the estimator then keeps its last good parameters and is evaluated as it is).
    """
    start = time.perf_counter()
    for _ in range(estimator.max_epochs):
        try:
            estimator.partial_fit(X, y)
        except DivergenceError as error:
            return time.perf_counter() - start, str(error)
        if time.perf_counter() - start >= budget:
            break
    return time.perf_counter() - start, None


def row(name, truth, reconstruction, seconds, stats=None):
    result = {"method": name, "psnr": psnr(truth, reconstruction),
              "ssim": ssim(truth, reconstruction), "train_s": seconds}
    if stats is not None:
        result["test_iterations"] = float(stats.iterations.float().mean())
        result["converged"] = float(stats.converged.float().mean())
        result["epochs"] = None
    return result


def run_setting(name, budget, seed, gradients):
    size, sigma, noise = SETTINGS[name]
    train, test = train_test_faces(size=32, n_test=20, n_patches=600, random_state=seed)
    operator = Blur(gaussian_kernel(size, sigma))
    X_train = make_measurements(train, operator, noise, random_state=seed + 1)
    X_test = make_measurements(test, operator, noise, random_state=seed + 2)

    rows = [row("measurement", test, X_test, 0.0)]
    direct = DirectInverseRegressor(operator).fit(X_train, train)
    rows.append(row("direct inverse", test, direct.predict(X_test), 0.0))
    classical = {}
    tuned, _ = tune_strongest(operator, X_train, train, random_state=seed)
    for key, baseline in tuned.items():
        label = LABELS[key]
        classical[label] = baseline.estimator.predict(X_test)
        result = row(f"{label} ({baseline.param}={baseline.value:.2g}, GridSearchCV)", test,
                     classical[label], baseline.seconds)
        result["classical"] = True
        rows.append(result)

    reconstructions = {}
    for gradient in gradients:
        estimator = ImplicitDeblurRegressor(operator=operator, random_state=seed) \
            if gradient == "jfb" else \
            ImplicitDeblurRegressor(operator=operator, gradient=gradient, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            seconds, diverged = train_within_budget(estimator, X_train, train, budget)
            prediction, stats = estimator.predict_with_stats(X_test)
        result = row(f"implicit ({gradient})", test, prediction, seconds, stats)
        result["epochs"] = len(estimator.history)
        result["stopped_by_divergence"] = diverged
        result["train_iterations_last_epoch"] = estimator.history[-1, "fp_iter"]
        result["convergence_warnings"] = sum(issubclass(w.category, ConvergenceWarning)
                                             for w in caught)
        rows.append(result)
        reconstructions[gradient] = prediction
    return rows, (X_test, classical, reconstructions, test)


def print_table(name, rows):
    size, sigma, noise = SETTINGS[name]
    print(f"\nSetting ({name}): blur {size}x{size}, sigma {sigma}, noise std {noise}")
    print("| method | PSNR (dB) | SSIM | train s | epochs | test iters | converged |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        iters = f"{r['test_iterations']:.1f}" if "test_iterations" in r else "-"
        converged = f"{100 * r['converged']:.0f}%" if "converged" in r else "-"
        epochs = r.get("epochs") or "-"
        if r.get("stopped_by_divergence"):
            epochs = f"{epochs} (DivergenceError)"
        print(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['train_s']:.1f} | "
              f"{epochs} | {iters} | {converged} |")
    best = max((r for r in rows if r.get("classical")), key=lambda r: r["psnr"])
    for r in rows:
        if "test_iterations" in r:
            print(f"{r['method']}: {r['psnr'] - best['psnr']:+.2f} dB PSNR, "
                  f"{r['ssim'] - best['ssim']:+.4f} SSIM over the best classical baseline "
                  f"({best['method']})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="ab",
                        help="which settings to run: a, b, ab, or c (the one given by --blur and "
                             "--noise)")
    parser.add_argument("--blur", nargs=2, type=float, metavar=("SIZE", "SIGMA"),
                        default=(7, 2.0), help="blur of setting c (default 7 2.0)")
    parser.add_argument("--noise", type=float, default=0.02,
                        help="noise std of setting c (default 0.02)")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="training seconds per implicit model (default 600)")
    parser.add_argument("--gradients", default="jfb,exact")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="quality_output")
    args = parser.parse_args(argv)
    SETTINGS["c"] = (int(args.blur[0]), args.blur[1], args.noise)
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings takes letters among {''.join(SETTINGS)}, got {unknown}")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} "
          f"CPUs, {platform.processor() or platform.machine()}, budget {args.budget:.0f} s/model")
    results = {}
    for name in args.settings:
        rows, (measurement, classical, reconstructions, truth) = run_setting(
            name, args.budget, args.seed, args.gradients.split(","))
        print_table(name, rows)
        results[name] = rows
        columns = [measurement, *classical.values(), *reconstructions.values(), truth]
        titles = ["measurement", *classical, *(f"implicit ({g})" for g in reconstructions),
                  "truth"]
        figure = plot_reconstructions(columns, titles, n_images=6,
                                      psnrs=[psnr(truth, c) for c in columns[:-1]] + [None])
        save_figure(figure, os.path.join(args.out, f"quality_{name}.png"))
    with open(os.path.join(args.out, "quality.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
