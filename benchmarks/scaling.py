"""Training and prediction cost against image size and batch size, and bounded-memory predict.

Table 1: for each image size (``--sizes``, default 32, 64, 128) and batch size (``--batches``,
default 16, 32, 64), an ``ImplicitDeblurRegressor`` (9x9 Gaussian blur, JFB, Anderson,
``tol=0`` and ``max_iter=--iterations`` (10): every solve does the same number of iterations,
so the rows differ only by size and batch, not by how far training has moved the model) trains
for one epoch on ``--n-images`` natural patches (``load_natural_patches``, noise 0.01) and then
predicts them. Reported: wall seconds per epoch (skorch's ``dur``), CPU seconds per epoch and
per optimizer step, CPU microseconds per pixel of one epoch and per pixel and map evaluation,
and predict throughput in images per wall second and per CPU second and megapixels per CPU
second (``predict`` works in chunks of ``4 * batch_size`` images). Per-pixel costs use CPU
time, which other processes on the machine disturb much less than wall time.

Table 2: ``predict`` on ``--n-predict`` (default 1,000 and 10,000) 32x32 images, each in a fresh
process: the peak rise of resident memory during the call (``PeakMemory`` in ``run.py``; the
input array already exists), against the size of the input and output arrays. The rise above
the output is the working memory of ``predict``: the solver's, which depends on the chunk size
(``4 * batch_size`` images) and not on the number of images, plus any whole-array copies made
on the way in or out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from run import PeakMemory, machine_line, markdown_table, quiet_warnings, run_worker


def _cpu_timer():
    from skorch.callbacks import Callback

    class EpochCPU(Callback):
        """Records the process CPU seconds of every training epoch as ``cpu``."""

        def on_epoch_begin(self, net, **kwargs):
            self.start_ = time.process_time()

        def on_epoch_end(self, net, **kwargs):
            net.history.record("cpu", time.process_time() - self.start_)

    return EpochCPU()


def _problem(n, size, seed):
    from implicit_inverse.datasets import load_natural_patches
    from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
    operator = Blur(gaussian_kernel(9, 1.5))
    clean = load_natural_patches(n, size=size, random_state=seed)
    return operator, make_measurements(clean, operator, 0.01, random_state=seed + 1), clean


def predict_memory(config):
    """Worker: fit a tiny model, then ``ru_maxrss`` around one large ``predict`` (a dict)."""
    import numpy as np
    import torch
    torch.set_num_threads(config["threads"])
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    operator, X, y = _problem(32, 32, config["seed"])
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=1, batch_size=16,
                                        random_state=config["seed"]).fit(X, y)
    rng = np.random.default_rng(config["seed"])
    big = X[rng.integers(0, len(X), config["n"])]
    big += 0.01 * rng.standard_normal(big.shape, dtype=np.float32)
    memory = PeakMemory().start()
    start = time.perf_counter()
    images, stats = estimator.predict_with_stats(big)
    seconds = time.perf_counter() - start
    return {"n": config["n"], "before": memory.base, "rise": memory.peak_mb(),
            "method": memory.method, "seconds": seconds,
            "input_mb": big.nbytes / 2 ** 20, "output_mb": images.nbytes / 2 ** 20,
            "chunk": 4 * estimator.batch_size, "iterations": float(stats.iterations.float().mean()),
            "finite": bool(np.isfinite(images).all())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default=None, help="default 32,64,128 (quick 32,64)")
    parser.add_argument("--batches", default=None, help="default 16,32,64 (quick 16,32)")
    parser.add_argument("--n-images", type=int, default=None, help="default 128, quick 32")
    parser.add_argument("--iterations", type=int, default=10,
                        help="fixed-point iterations of every solve (tol=0)")
    parser.add_argument("--n-predict", default=None,
                        help="comma-separated sizes of table 2 (default 1000,10000; quick "
                             "1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(predict_memory(json.loads(args.worker))))
        return 0
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor

    quick = args.quick
    sizes = [int(v) for v in (args.sizes or ("32,64" if quick else "32,64,128")).split(",")]
    batches = [int(v) for v in (args.batches or ("16,32" if quick else "16,32,64")).split(",")]
    n = args.n_images or (32 if quick else 128)
    n_predict = [int(v) for v in (args.n_predict or ("1000" if quick else "1000,10000"))
                 .split(",")]
    print(machine_line(args.threads))
    print(f"{n} natural patches per size, 1 training epoch each, then predict of the same "
          f"images; every solve runs {args.iterations} iterations (tol=0)\n")
    rows = []
    for size in sizes:
        operator, X, y = _problem(n, size, args.seed)
        for batch in batches:
            estimator = ImplicitDeblurRegressor(
                operator=operator, max_epochs=1, batch_size=batch, tol=0.0,
                max_iter=args.iterations, random_state=args.seed, n_threads=args.threads,
                callbacks=[_cpu_timer()])
            estimator.fit(X, y)
            wall_epoch, cpu_epoch = estimator.history[-1, "dur"], estimator.history[-1, "cpu"]
            steps = -(-n // batch)
            wall, cpu = time.perf_counter(), time.process_time()
            estimator.predict(X)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            pixels = n * size * size
            per_pixel = 1e6 * cpu_epoch / pixels
            evaluations = args.iterations + 1          # the solve and JFB's differentiable step
            rows.append([size, batch, f"{wall_epoch:.2f}", f"{cpu_epoch:.2f}",
                         f"{cpu_epoch / steps:.3f}", f"{per_pixel:.2f}",
                         f"{per_pixel / evaluations:.3f}", f"{n / wall:.0f}", f"{n / cpu:.0f}",
                         f"{pixels / cpu / 1e6:.2f}",
                         f"{1e6 * cpu / pixels / args.iterations:.3f}"])
    print(markdown_table(["size", "batch", "s/epoch", "CPU s/epoch", "CPU s/step",
                          "us/pixel (epoch)", "us/pixel/eval (train)", "predict img/s",
                          "predict img/CPU s", "predict Mpixel/CPU s",
                          "us/pixel/iter (predict)"], rows))
    print("(us: CPU microseconds; with one thread CPU time is the work, wall time also counts "
          "waiting for the cores)")

    rows = []
    for count in n_predict:
        result = run_worker("scaling.py", {"n": count, "threads": args.threads,
                                           "seed": args.seed})
        rise = result["rise"]
        rows.append([result["n"], result["chunk"], f"{result['seconds']:.1f}",
                     f"{result['n'] / result['seconds']:.0f}", f"{result['before']:.0f}",
                     f"{result['input_mb']:.0f}", f"{result['output_mb']:.0f}", f"{rise:.0f}",
                     f"{rise - result['output_mb']:.0f}", result["finite"]])
    print("\nTable 2: predict on many 32x32 images (fresh process; model trained 1 epoch on 32 "
          "images)\n")
    print(markdown_table(["images", "chunk", "seconds", "img/s", "RSS before MB", "input MB",
                          "output MB", "peak rise MB", "rise - output MB", "all finite"], rows))
    print(f"(peak rise measured with {result['method']}, see benchmarks/run.py PeakMemory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
