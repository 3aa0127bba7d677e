"""Peak resident memory of one JFB training epoch against the number of solver iterations.

32 natural patches of 96x96 (``load_natural_patches(32, size=96)``), ``Blur(gaussian_kernel(9,
1.5))``, noise 0.01, the default ``ImplicitDeblurRegressor`` except ``batch_size=16``,
``max_epochs=1`` and ``tol = train_tol = 0`` with ``max_iter = train_max_iter = M``: every
training solve runs exactly ``M`` iterations, so rows differ only by ``M``.

Each row is a fresh process (``run.run_worker``) that imports everything, loads the data, pays
the first-fit code loading with a bare skorch fit, then measures one ``fit``: the peak resident
memory during the fit above the resident memory before it (``run.PeakMemory``: the kernel's
``VmHWM`` reset through ``/proc/self/clear_refs``), and the resident memory after it. Rows are
repeated (``--repeats``, default 2) because a process's peak depends on how its allocator's
free lists happen to be fragmented.

Allocator variants (``--variants``):

- ``default``: glibc malloc as it is;
- ``arena1``: ``MALLOC_ARENA_MAX=1`` (one malloc arena);
- ``mmap``: ``MALLOC_MMAP_THRESHOLD_=131072`` (large blocks always mmapped and given back
  when freed: glibc's *dynamic* threshold otherwise rises to 32 MB after the first large block
  is freed, and every later block under it comes from the heap, whose free space is kept);
- ``trim``: glibc's ``malloc_trim(0)`` called after every fixed-point solve (patched into
  ``FixedPointSolver.solve``): the free pages the solve's temporaries left in the heap are
  given back before the training step builds its graph;
- ``mmap+separate``: ``mmap`` with the Jacobian penalty evaluating the map again at the fixed
  point (``epoch_cost.separate_penalty_evaluation``, the design before it reused JFB's
  evaluation; every other variant measures the library as it is).

Usage::

    python benchmarks/jfb_memory.py                        # M = 10, 60; all variants
    python benchmarks/jfb_memory.py --max-iters 10,30,60 --variants default,mmap --repeats 3
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

from run import HERE, PeakMemory, _child_env, machine_line, markdown_table, quiet_warnings

VARIANTS = {
    "default": {},
    "arena1": {"MALLOC_ARENA_MAX": "1"},
    "mmap": {"MALLOC_MMAP_THRESHOLD_": "131072"},
    "trim": {},
    "mmap+separate": {"MALLOC_MMAP_THRESHOLD_": "131072"},
}

HEADERS = ["allocator", "max_iter", "RSS before fit MB", "peak rise MB (each run)",
           "RSS after fit MB", "s/epoch", "CPU s (fit)"]


def _rss_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(config):
    import numpy as np
    import torch
    from skorch import NeuralNetRegressor
    torch.set_num_threads(config["threads"])
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    from implicit_inverse.datasets import load_natural_patches
    from implicit_inverse.equilibrium import solvers
    from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

    clean = load_natural_patches(32, size=96, random_state=0).astype(np.float32)
    operator = Blur(gaussian_kernel(9, 1.5))
    measurements = make_measurements(clean, operator, 0.01, random_state=1)
    # the first fit of a process loads code worth ~150 MB, whatever the model: pay it here
    NeuralNetRegressor(torch.nn.Linear(2, 1), max_epochs=1, train_split=None).fit(
        np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32))

    max_iter = config["max_iter"]
    callbacks = None
    if config["variant"] == "mmap+separate":
        from skorch.callbacks import Callback

        from epoch_cost import separate_penalty_evaluation

        class Separate(Callback):
            def on_train_begin(self, net, **kwargs):
                separate_penalty_evaluation(net)
        callbacks = [Separate()]
    estimator = ImplicitDeblurRegressor(
        operator=operator, batch_size=16, max_epochs=1, tol=0.0, train_tol=0.0,
        max_iter=max_iter, train_max_iter=max_iter, random_state=0, callbacks=callbacks)
    if config["variant"] == "trim":
        libc = ctypes.CDLL("libc.so.6")
        original = solvers.FixedPointSolver.solve

        def solve_then_trim(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            libc.malloc_trim(0)
            return result
        solvers.FixedPointSolver.solve = solve_then_trim
    before = _rss_mb()
    meter = PeakMemory().start()
    cpu = time.process_time()
    estimator.fit(measurements, clean)
    cpu = time.process_time() - cpu
    peak = meter.peak_mb()
    return {"before_mb": before, "peak_rise_mb": peak, "after_mb": _rss_mb(),
            "fp_iter": estimator.history[-1, "fp_iter"], "dur": estimator.history[-1, "dur"],
            "cpu": cpu}


def _run(config):
    env = _child_env()
    env.update(VARIANTS[config["variant"]])
    command = [sys.executable, os.path.join(HERE, "jfb_memory.py"), "--worker",
               json.dumps(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"worker {config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-iters", default="10,60")
    parser.add_argument("--variants", default="default,mmap,trim,mmap+separate")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    print(machine_line(args.threads))
    print("one JFB training epoch: 32 images 96x96, batch 16, tol = train_tol = 0 (every solve "
          "runs max_iter iterations); fresh process per run\n")
    rows = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        for max_iter in [int(m) for m in args.max_iters.split(",")]:
            results = [_run({"variant": variant, "max_iter": max_iter,
                             "threads": args.threads}) for _ in range(args.repeats)]
            rises = [r["peak_rise_mb"] for r in results]
            rows.append([variant, max_iter,
                         f"{statistics.mean(r['before_mb'] for r in results):.0f}",
                         " / ".join(f"{value:.0f}" for value in rises),
                         " / ".join(f"{r['after_mb']:.0f}" for r in results),
                         f"{statistics.mean(r['dur'] for r in results):.1f}",
                         f"{statistics.mean(r['cpu'] for r in results):.1f}"])
            print(markdown_table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown_table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
