"""The device check: the GPU tests, then training and predict throughput of the estimator.

One script to run when a GPU is at hand (under 5 minutes on an H200):

1. ``pytest tests/test_gpu.py`` in a subprocess (its tail is printed; on a machine without CUDA
   every test skips with its reason);
2. the peak of the device: the best TFLOP/s of a large bfloat16 matrix product
   (``--peak-size``, 8192 by default), the yardstick of the table;
3. for each regularizer (``dncnn:5x24``, ``dncnn:17x64``), training batch size (64, 256) and
   precision (``float32`` with the default ``train_tol=1e-3``; ``bfloat16`` with
   ``train_tol=5e-3``, as the estimator's documentation advises), an
   ``ImplicitDeblurRegressor`` on the project's deblurring recipe (``deblur_problem``: faces
   and natural patches, 9x9 Gaussian blur, noise 0.01; ``--n-train`` images of ``--size``
   pixels) is initialised with one warm-up epoch (``lam`` search, cuDNN plans, allocator), then
   timed over ``--epochs`` epochs (skorch's ``dur``) and one ``predict`` of ``--n-predict``
   images (the held-out faces repeated; after a warm-up ``predict``).

Columns: images per second of training and of ``predict``; the TFLOP/s achieved by the
regularizer's passes and their share of the bfloat16 peak; the training solves' mean iterations
and converged share (``fp_iter``, ``fp_conv``); predict's mean and largest iterations and
converged share at the default ``tol=1e-4``; and on CUDA the "TF32 floor", the median of
``||T_tf32(x*) - T(x*)|| / ||x*||`` at the predicted fixed points ``x*``: the relative residual
under which a solve cannot go when its convolutions run in TF32 (the solvers turn TF32 off for
tolerances below ``TF32_SAFE_TOL``; this column checks that constant).

FLOPs are counted by ``torch.utils.flop_counter`` on the regularizer alone, per image: a solver
pass (no graph) costs one forward; a training pass (JFB's differentiable step, counted by a
forward hook with grad mode on) costs a forward, the Jacobian penalty's vector-Jacobian product
with ``create_graph`` and the backward through both. The data term's FFTs, Anderson's
bookkeeping and the optimizer are not counted: the TFLOP/s are those of the network passes,
over the whole wall time.

Usage::

    python benchmarks/gpu.py                          # on the CUDA device (auto)
    python benchmarks/gpu.py --device cpu --quick     # the same code at tiny sizes (< 2 min)
    python benchmarks/gpu.py --networks 17x64 --batches 256 --skip-tests
    python benchmarks/run.py gpu --quick              # through the runner

Off CUDA the defaults are the ``--quick`` sizes (the full ones would take hours on a CPU);
explicit ``--size``, ``--batches``, ... override them.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

from run import HERE, deblur_problem, machine_line, markdown_table, quiet_warnings

TRAIN_TOL = {"float32": 1e-3, "bfloat16": 5e-3}
"""``train_tol`` of each precision (bfloat16 limits the training solves' residual)."""
N_TEST = 20
"""Held-out faces of ``deblur_problem``, repeated to ``--n-predict`` images."""


def run_gpu_tests(timeout):
    """``pytest tests/test_gpu.py`` in a subprocess; prints its last lines, returns its status."""
    root = os.path.dirname(HERE)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
               os.path.join("tests", "test_gpu.py")]
    print(f"$ {' '.join(command[2:])}", flush=True)
    try:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"tests/test_gpu.py did not finish within {timeout} s")
        return 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    print("\n".join(lines[-25:]), flush=True)
    return result.returncode


def synchronize(device):
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, size, repeats=5, calls=10):
    """Best TFLOP/s of ``calls`` bfloat16 products of two (size, size) matrices in a row."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, torch.bfloat16)
            for _ in range(2))
    for _ in range(3):  # warm-up: cuBLAS heuristics, clocks
        a @ b
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 * calls / best / 1e12


class PassCounter:
    """Images through ``module``, split into passes without and with an autograd graph.

    Parameters
    ----------
    module : torch.nn.Module
        Called with images of shape (N, C, H, W) first.
    """

    def __init__(self, module):
        self.counts = [0, 0]
        self.handle = module.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        self.counts[torch.is_grad_enabled()] += inputs[0].shape[0]

    def take(self):
        """``(without graph, with graph)`` image passes since the last call."""
        counts, self.counts = tuple(self.counts), [0, 0]
        return counts

    def remove(self):
        self.handle.remove()


def pass_flops(module, image_shape, device):
    """FLOPs per image of a solver pass and of a training pass through ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        The regularizer: (N, C, H, W) -> (N, C, H, W).
    image_shape : tuple (C, H, W)
    device : str

    Returns
    -------
    solver_pass, training_pass : float
        A forward without graph; a forward with graph, the vector-Jacobian product with
        ``create_graph`` of the Jacobian penalty and the backward through both.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, *image_shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    solver_pass = counter.get_total_flops() / 2
    leaf = x.clone().requires_grad_()
    with FlopCounterMode(display=False) as counter:
        z = leaf * 1  # not a leaf: the counter's module hooks refuse grad() w.r.t. a leaf
        output = module(z)
        (vjp,) = torch.autograd.grad(output, z, torch.ones_like(output), create_graph=True)
        (output.square().sum() + vjp.square().sum()).backward()
    module.zero_grad(set_to_none=True)
    return solver_pass, counter.get_total_flops() / 2


def tf32_floor(estimator, measurements, images):
    """Median ``||T_tf32(x*) - T(x*)|| / ||x*||`` over images (N, H, W) and their measurements.

    ``T`` is the fitted map (evaluation mode), evaluated once with TF32 convolutions (cuDNN's
    default) and once without (:func:`~implicit_inverse._runtime.exact_float32`).
    """
    from implicit_inverse._runtime import exact_float32

    device = estimator.net_.device
    fixed_point_map = estimator.net_.module_.layer.map
    d = torch.from_numpy(np.ascontiguousarray(measurements))[:, None].to(device)
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None].to(device)
    previous = torch.backends.cudnn.allow_tf32
    with torch.no_grad():
        with exact_float32():
            exact = fixed_point_map(x, d)
        torch.backends.cudnn.allow_tf32 = True
        try:
            fast = fixed_point_map(x, d)
        finally:
            torch.backends.cudnn.allow_tf32 = previous
    change = (fast - exact).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    return float(change.median())


def measure(network, batch_size, precision, data, args):
    """Train, time and predict one configuration; returns a dict of measurements."""
    from implicit_inverse import ImplicitDeblurRegressor

    operator, X_train, y_train, X_predict = data
    estimator = ImplicitDeblurRegressor(
        operator=operator, regularizer=f"dncnn:{network}", precision=precision,
        train_tol=TRAIN_TOL[precision], batch_size=batch_size, max_epochs=1,
        device=args.device, random_state=0, n_threads=args.threads)
    estimator.partial_fit(X_train, y_train)  # initialisation and a warm-up epoch
    regularizer = estimator.regularizer_
    counter = PassCounter(regularizer)
    for _ in range(args.epochs):
        estimator.partial_fit(X_train, y_train)
    timed = slice(-args.epochs, None)
    history = {key: estimator.history[timed, key]
               for key in ("dur", "fp_iter", "fp_conv", "skipped")}
    train_seconds = float(np.sum(history["dur"]))
    train_passes = counter.take()
    estimator.predict(X_predict[:batch_size])  # warm-up at predict's shapes
    counter.take()
    synchronize(args.device)
    start = time.perf_counter()
    images, stats = estimator.predict_with_stats(X_predict)
    predict_seconds = time.perf_counter() - start
    predict_passes = counter.take()
    counter.remove()
    solver_pass, training_pass = pass_flops(regularizer, estimator.image_shape_, args.device)
    cuda = torch.device(args.device).type == "cuda"
    return {
        "train_images_per_s": args.epochs * len(X_train) / train_seconds,
        "train_tflops": (train_passes[0] * solver_pass + train_passes[1] * training_pass)
        / train_seconds / 1e12,
        "fp_iter": float(np.mean(history["fp_iter"])),
        "fp_conv": float(np.mean(history["fp_conv"])),
        "skipped": int(np.sum(history["skipped"])),
        "predict_images_per_s": len(X_predict) / predict_seconds,
        "predict_tflops": predict_passes[0] * solver_pass / predict_seconds / 1e12,
        "iterations_mean": float(stats.iterations.float().mean()),
        "iterations_max": int(stats.iterations.max()),
        "converged": float(stats.converged.float().mean()),
        "tf32_floor": tf32_floor(estimator, X_predict[:N_TEST], images[:N_TEST]) if cuda
        else None,
    }


def _row(network, batch_size, precision, result, peak):
    """The table's cells for one configuration (TFLOP/s also as a share of ``peak``)."""
    floor = result["tf32_floor"]
    return [network, batch_size, f"{precision} ({TRAIN_TOL[precision]:g})",
            f"{result['train_images_per_s']:.0f}", f"{result['train_tflops']:.2f}",
            f"{100 * result['train_tflops'] / peak:.1f}%",
            f"{result['fp_iter']:.1f} ({result['fp_conv']:.2f})"
            + (f", {result['skipped']} skipped" if result["skipped"] else ""),
            f"{result['predict_images_per_s']:.0f}", f"{result['predict_tflops']:.2f}",
            f"{100 * result['predict_tflops'] / peak:.1f}%",
            f"{result['iterations_mean']:.1f} / {result['iterations_max']}",
            f"{result['converged']:.2f}", "-" if floor is None else f"{floor:.1e}"]


def _list(text, convert=str):
    return [convert(item) for item in text.split(",") if item]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto",
                        help="torch device (default auto: CUDA when available, else the CPU)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: 16x16 images, batches 4 and 8 (a smoke run; the "
                             "default sizes off CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run tests/test_gpu.py")
    parser.add_argument("--networks", default="5x24,17x64", help="DnCNN DEPTHxWIDTH list")
    parser.add_argument("--batches", default=None, help="training batch sizes (64,256; quick 4,8)")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--size", type=int, default=None, help="image side (32; quick 16)")
    parser.add_argument("--n-train", type=int, default=None, help="training images (2048; "
                        "quick 16)")
    parser.add_argument("--n-predict", type=int, default=None, help="predicted images (2048; "
                        "quick 16)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (2; quick 1)")
    parser.add_argument("--peak-size", type=int, default=None,
                        help="side of the bfloat16 matrices of the peak (8192; quick 256)")
    args = parser.parse_args(argv)

    from implicit_inverse._runtime import resolve_device

    try:
        args.device = resolve_device(args.device, option="--device")
    except ValueError as error:
        parser.error(str(error))
    # the full sizes take hours without a GPU
    quick = args.quick or torch.device(args.device).type != "cuda"
    args.batches = _list(args.batches or ("4,8" if quick else "64,256"), int)
    args.size = args.size or (16 if quick else 32)
    args.n_train = args.n_train or (16 if quick else 2048)
    args.n_predict = args.n_predict or (16 if quick else 2048)
    args.epochs = args.epochs or (1 if quick else 2)
    args.peak_size = args.peak_size or (256 if quick else 8192)
    precisions = _list(args.precisions)
    unknown = sorted(set(precisions) - set(TRAIN_TOL))
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; choose from {sorted(TRAIN_TOL)}")
    if min(args.batches + [args.n_train, args.n_predict, args.epochs, args.threads]) < 1:
        parser.error("--batches, --n-train, --n-predict, --epochs and --threads must be >= 1")
    status = 0 if args.skip_tests else run_gpu_tests(timeout=120 if quick else 240)
    if status not in (0, 5):  # 5: no test collected
        print(f"tests/test_gpu.py FAILED (exit status {status}); measuring anyway")

    torch.set_num_threads(args.threads)
    quiet_warnings()
    print()
    print(machine_line(args.threads))
    if torch.device(args.device).type == "cuda":
        print(f"device {torch.cuda.get_device_name(args.device)}, CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}")
    peak = matmul_peak(args.device, args.peak_size)
    print(f"bfloat16 matmul peak ({args.peak_size}x{args.peak_size}): {peak:.1f} TFLOP/s")
    n_patches = max(0, args.n_train - (100 - N_TEST))
    operator, X_train, y_train, X_test, _ = deblur_problem(n_patches, size=args.size,
                                                           n_test=N_TEST)
    X_predict = np.resize(X_test, (args.n_predict, *X_test.shape[1:]))
    data = (operator, X_train[:args.n_train], y_train[:args.n_train], X_predict)
    print(f"{min(args.n_train, len(X_train))} training images and {args.n_predict} predicted "
          f"images of {args.size}x{args.size}, {args.epochs} timed epoch(s), device "
          f"{args.device}\n", flush=True)

    rows = []
    for network in _list(args.networks):
        for batch_size in args.batches:
            for precision in precisions:
                start = time.perf_counter()
                result = measure(network, batch_size, precision, data, args)
                rows.append(_row(network, batch_size, precision, result, peak))
                print(f"dncnn:{network} batch {batch_size} {precision}: "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
    print()
    print(markdown_table(
        ["DnCNN", "batch", "precision (train_tol)", "train img/s", "train TFLOP/s",
         "of peak", "train iter (conv)", "predict img/s", "predict TFLOP/s", "of peak",
         "predict iter mean / max", "predict conv", "TF32 floor"], rows))
    return 0 if status in (0, 5) else 1


if __name__ == "__main__":
    sys.exit(main())
