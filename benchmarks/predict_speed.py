"""Images per second of ``predict``: the implicit model against Tikhonov and a feed-forward net.

The default ``ImplicitDeblurRegressor`` (only ``operator`` given, plus ``max_epochs`` and
``random_state``) is trained for ``--epochs`` epochs on setting (a) of ``quality.py``
(``train_test_faces(size=32, n_test=20, n_patches=600)``, ``Blur(gaussian_kernel(9, 1.5))``,
noise 0.01), so that its solves take the iterations of a trained model. It is then timed on
measurements of the same blur and noise at 32x32 (``--n32`` test faces, repeated) and 256x256
(``--n256`` natural patches, ``load_natural_patches(size=256)``); the model is convolutional
and its operator works at any size.

Rows, at each size:

- ``TikhonovRegressor(operator, lam=lam_)`` (the implicit model's own ``lam_``): one FFT solve;
- feed-forward: ``x0 + N(x0)`` with ``x0`` the Tikhonov solution and ``N`` the trained
  model's network, in chunks of ``4 * batch_size`` images as ``predict`` does, under
  ``torch.no_grad``: one regularizer pass per image, the cost unit of the last column;
- the implicit model's ``predict`` (``tol``, ``max_iter`` and solver at their defaults), with
  its mean and largest iterations per image.

"cost / FF pass" is seconds per image divided by the feed-forward row's; the target is at most
``mean iterations + 1`` (each iteration evaluates the regularizer once, plus the FFTs of the
data term and the preconditioner and the solver's bookkeeping; the starting point is one
Tikhonov solve). Times are the best of ``--repeats`` (one torch thread; CPU seconds, which
move little when other processes share the cores, beside wall seconds).

Usage::

    python benchmarks/predict_speed.py                     # 3 epochs, 256 and 8 images
    python benchmarks/predict_speed.py --epochs 10 --n256 16 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time

from run import deblur_problem, machine_line, markdown_table, quiet_warnings


def _best(function, argument, repeats):
    """Best wall and CPU seconds of ``repeats`` calls (after one warm-up call)."""
    result = function(argument)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(argument)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-patches", type=int, default=600)
    parser.add_argument("--n32", type=int, default=256, help="32x32 images timed")
    parser.add_argument("--n256", type=int, default=8, help="256x256 images timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor, TikhonovRegressor
    from implicit_inverse.datasets import load_natural_patches
    from implicit_inverse.operators import make_measurements

    operator, X, y, X_test, y_test = deblur_problem(args.n_patches, seed=args.seed)
    print(machine_line(args.threads))
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=args.epochs,
                                        random_state=args.seed).fit(X, y)
    print(f"default model trained {args.epochs} epochs: test PSNR "
          f"{estimator.score(X_test, y_test):.2f} dB, lam_ {estimator.lam_:.3g}\n")
    reps = -(-args.n32 // len(X_test))
    inputs = {32: np.concatenate([X_test] * reps)[:args.n32]}
    big = load_natural_patches(args.n256, size=256, random_state=args.seed).astype(np.float32)
    inputs[256] = make_measurements(big, operator, 0.01, random_state=args.seed + 3)

    tikhonov = TikhonovRegressor(operator, lam=estimator.lam_).fit(X[:4], y[:4])
    network = estimator.net_.module_.layer.map.regularizer
    network = getattr(network, "network", network)
    chunk = 4 * estimator.get_params()["batch_size"]

    def feed_forward(measurements):
        outputs = []
        with torch.no_grad():
            for start in range(0, len(measurements), chunk):
                batch = torch.from_numpy(measurements[start:start + chunk, None])
                x0 = operator.solve_normal(operator.adjoint(batch), estimator.lam_)
                outputs.append(x0 + network(x0))
        return torch.cat(outputs)

    rows = []
    for size, measurements in inputs.items():
        n = len(measurements)
        results = {}
        results["Tikhonov"] = _best(tikhonov.predict, measurements, args.repeats)
        results["feed-forward (Tikhonov + N)"] = _best(feed_forward, measurements,
                                                        args.repeats)
        results["implicit (default)"] = _best(
            lambda m: estimator.predict_with_stats(m), measurements, args.repeats)
        unit = results["feed-forward (Tikhonov + N)"][1] / n
        for name, (wall, cpu, output) in results.items():
            iterations = "-"
            target = "-"
            if name.startswith("implicit"):
                stats = output[1]
                mean = float(stats.iterations.float().mean())
                iterations = f"{mean:.1f} (max {int(stats.iterations.max())})"
                ratio = cpu / n / unit
                target = f"{'met' if ratio <= mean + 1 else 'not met'} ({ratio:.1f} <= " \
                         f"{mean + 1:.1f})"
            rows.append([f"{size}x{size}", name, n, f"{n / wall:.1f}", f"{n / cpu:.1f}",
                         f"{cpu / n / unit:.2f}", iterations, target])
    print(markdown_table(["size", "method", "images", "img/s (wall)", "img/CPU s",
                          "cost / FF pass", "iterations", "<= mean iter + 1 FF passes"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
