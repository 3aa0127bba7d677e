"""Benchmark of the implicit layer: solvers and gradient strategies on CPU.

Setup: a batch of 16 images of 64 x 64 (float32, seeded), the circular blur
``Blur(gaussian_kernel(9, 1.5))`` with noise of std 0.01, and the regularizer
``TikhonovPlusNetwork(DnCNN(depth=6, width=24), alpha=1e-2)`` whose DnCNN output layer gets small
random weights (std ``--output-std``) instead of zeros, so the network takes part in every
evaluation and every gradient. (A bare DnCNN without the Tikhonov term gives the plain step no
contraction at the frequencies the blur removes; its solve does not converge.)

1. Solvers: iterations and time to reach ``--tol`` (relative residual 1e-4) with forward iteration
   and Anderson, on the plain step ``GradientStep(eta=1.0)`` and the preconditioned one
   ``GradientStep(eta=1.0, precondition=True, lam=1e-2)``.
2. Gradient strategies: one training step (forward solve + loss + backward + Adam step) with JFB,
   the exact implicit gradient (``Exact()``, defaults: Anderson, 50 VJPs at most, tol 1e-4) and
   unrolled backpropagation, at ``max_iter`` 10, 30 and 100 with ``tol=0`` and forward iteration,
   so every configuration does exactly ``max_iter`` map evaluations in its solve (equal forward
   work). Counted: regularizer evaluations (a forward hook on the regularizer adds the batch size
   of each call) and per-sample vector-Jacobian products of the exact strategy's adjoint solve
   (``Exact.last_stats.n_evaluations``).

Peak memory method: ``tracemalloc`` does not see torch's allocator, so each configuration of part 2
runs in its own child process, forked (Linux) from the parent before the parent computes anything
(part 2 runs before part 1; the fork saves re-importing torch). After building the model and data
and evaluating the map once without a graph (FFT plans, allocator warm-up), the child reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` as a baseline, runs one training step and reads it
again: the difference is the step's peak resident memory above the baseline. By default the child
first fixes glibc's mmap and trim thresholds at 128 KiB (``mallopt``), so that large tensors are
returned to the system when freed and the peak follows the live allocations; with glibc's
dynamic thresholds freed heap fragments stay resident and the same configuration measured
+-20% from run to run (``--default-malloc`` keeps them). Memory freed before the baseline and
reused by the step is not counted (a few MB here). Times are of that single step; with the fixed
thresholds they include the page faults of freshly mapped memory for every large tensor (all
strategies pay them, in proportion to what they allocate). Times are given as wall time and as
process CPU time (user + system); on a shared machine the CPU time is the steadier of the two, and
the targets use it.

Run ``python benchmarks/implicit_layer.py`` (Linux: it relies on ``fork`` and on ``ru_maxrss`` in
KiB). With the defaults it takes about 4.5 CPU-minutes (2 user, 2.5 system) and needs ~6.5 GB of
RAM for the unrolled step at max_iter=100; ``--max-iters 10,30`` takes about a third of that.
``--help`` lists the options. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import resource
import time

import torch
from torch import nn

from implicit_inverse.equilibrium import JFB, Exact, GradientStep, ImplicitLayer, Unrolled
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel

STRATEGIES = {"jfb": JFB, "exact": Exact, "unrolled": Unrolled}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=1e-2, help="Tikhonov weight")
    parser.add_argument("--lam", type=float, default=1e-2, help="preconditioner weight")
    parser.add_argument("--output-std", type=float, default=1e-2,
                        help="std of the DnCNN output layer's random weights")
    parser.add_argument("--tol", type=float, default=1e-4, help="tolerance of part 1")
    parser.add_argument("--solve-cap", type=int, default=300, help="max_iter of part 1")
    parser.add_argument("--max-iters", default="10,30,100", help="max_iter values of part 2")
    parser.add_argument("--strategies", default="jfb,exact,unrolled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-solvers", action="store_true", help="skip part 1")
    parser.add_argument("--default-malloc", dest="fixed_malloc", action="store_false",
                        help="keep glibc's dynamic mmap threshold in part 2 (peak memory then "
                             "varies by +-20%% from run to run)")
    return parser.parse_args(argv)


def build(args):
    """Operator, measurements, clean images and the regularizer (deterministic in the seed)."""
    torch.manual_seed(args.seed)
    operator = Blur(gaussian_kernel(9, 1.5))
    clean = torch.rand(args.batch, 1, args.size, args.size)
    d = operator(clean) + 0.01 * torch.randn_like(clean)
    network = DnCNN(depth=args.depth, width=args.width)
    nn.init.normal_(network.body[-1].weight, std=args.output_std)
    regularizer = TikhonovPlusNetwork(network, alpha=args.alpha)
    return operator, d, clean, regularizer


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


# -- part 1: solvers -----------------------------------------------------------------------------


def solver_table(args):
    operator, d, _, regularizer = build(args)
    maps = {"plain": GradientStep(operator, regularizer, eta=1.0),
            f"preconditioned (lam={args.lam:g})": GradientStep(
                operator, regularizer, eta=1.0, precondition=True, lam=args.lam)}
    rows = []
    for map_name, fixed_point_map in maps.items():
        for solver in ("forward", "anderson"):
            layer = ImplicitLayer(fixed_point_map, solver=solver, max_iter=args.solve_cap,
                                  tol=args.tol, warn=False)
            start, cpu_start = time.perf_counter(), time.process_time()
            with torch.no_grad():
                layer(d)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            summary = layer.last_stats.summary()
            rows.append((map_name, solver, summary["iterations_mean"], summary["iterations_max"],
                         summary["converged_share"], summary["residual_max"], elapsed, cpu))
    lines = [f"### Solvers: iterations and time to tol={args.tol:g} (cap {args.solve_cap})", "",
             "| map | solver | iterations mean | iterations max | converged | worst residual "
             "| wall (s) | CPU (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, solver, mean, worst, share, residual, elapsed, cpu in rows:
        lines.append(f"| {name} | {solver} | {mean:.1f} | {worst} | {share:.0%} | "
                     f"{residual:.2e} | {elapsed:.2f} | {cpu:.2f} |")
    return "\n".join(lines)


# -- part 2: one training step per subprocess ------------------------------------------------------


def worker(args, strategy_name, max_iter):
    operator, d, clean, regularizer = build(args)
    gradient = Exact(warn=False) if strategy_name == "exact" else STRATEGIES[strategy_name]()
    fixed_point_map = GradientStep(operator, regularizer, eta=1.0)
    layer = ImplicitLayer(fixed_point_map, solver="forward", gradient=gradient,
                          max_iter=max_iter, tol=0.0, warn=False)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    evaluations = [0]

    def count(module, inputs, output):
        evaluations[0] += inputs[0].shape[0]

    with torch.no_grad():                      # warm-up: FFT plans, thread pool, allocator
        fixed_point_map(operator.adjoint(d), d)
    regularizer.register_forward_hook(count)
    baseline = max_rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    optimizer.zero_grad()
    loss = ((layer(d) - clean) ** 2).mean()
    loss.backward()
    optimizer.step()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = max_rss_mib() - baseline
    stats = layer.last_stats
    backward = gradient.last_stats
    return {
        "strategy": strategy_name, "max_iter": max_iter, "time": elapsed, "cpu": cpu,
        "peak_mib": peak,
        "forward_iterations": int(stats.iterations.max()),
        "regularizer_evaluations": evaluations[0],
        "adjoint_vjps": None if backward is None else backward.n_evaluations,
        "adjoint_residual": None if backward is None else float(backward.residual.max()),
        "loss": float(loss.detach()),
    }


def fix_malloc_thresholds():
    """Make glibc return large blocks to the system at once (fixed 128 KiB mmap and trim
    thresholds instead of the dynamic ones), so that peak RSS follows the live allocations
    rather than heap fragments kept from earlier iterations. Returns whether it applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 128 * 1024)) and bool(libc.mallopt(-1, 128 * 1024))
    except (OSError, AttributeError):
        return False


def _child(connection, options, strategy_name, max_iter):
    args = argparse.Namespace(**options)
    torch.set_num_threads(args.threads)
    if args.fixed_malloc:
        fix_malloc_thresholds()
    connection.send(worker(args, strategy_name, max_iter))
    connection.close()


def run_worker(args, strategy_name, max_iter):
    """Run one configuration in a child forked from this (so far computation-free) process."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, vars(args), strategy_name, max_iter))
    process.start()
    sender.close()
    result = receiver.recv() if receiver.poll(timeout=3600) else None
    process.join()
    if process.exitcode != 0 or result is None:
        raise RuntimeError(f"configuration {strategy_name}, max_iter={max_iter} failed "
                           f"(exit code {process.exitcode})")
    return result


def strategy_table(args):
    max_iters = [int(value) for value in args.max_iters.split(",")]
    strategies = args.strategies.split(",")
    results = {(name, m): run_worker(args, name, m) for name in strategies for m in max_iters}
    lines = ["### Gradient strategies: one training step (solve + backward + Adam), tol=0, "
             "forward iteration", "",
             "| strategy | max_iter | solve iterations | regularizer evals (samples) "
             "| adjoint VJPs (samples) | wall (s) | CPU (s) | peak memory (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (name, m), r in results.items():
        vjps = "-" if r["adjoint_vjps"] is None else \
            f"{r['adjoint_vjps']} (res {r['adjoint_residual']:.1e})"
        lines.append(f"| {name} | {m} | {r['forward_iterations']} | "
                     f"{r['regularizer_evaluations']} | {vjps} | {r['time']:.2f} | "
                     f"{r['cpu']:.2f} | {r['peak_mib']:.0f} |")
    lines += ["", "Targets:", ""]
    if "jfb" in strategies and "exact" in strategies:
        for m in max_iters:
            ratio = results[("jfb", m)]["cpu"] / results[("exact", m)]["cpu"]
            wall = results[("jfb", m)]["time"] / results[("exact", m)]["time"]
            verdict = "met" if ratio <= 0.7 else "NOT met"
            lines.append(f"- max_iter={m}: JFB step / exact step = {ratio:.2f} in CPU time "
                         f"({wall:.2f} wall) (target <= 0.7: {verdict})")
    if "jfb" in strategies:
        peaks = [results[("jfb", m)]["peak_mib"] for m in max_iters]
        spread = (max(peaks) - min(peaks)) / max(min(peaks), 1e-9)
        lines.append(f"- JFB peak memory over max_iter {max_iters}: "
                     f"{', '.join(f'{p:.0f}' for p in peaks)} MiB, spread {spread:.0%} "
                     f"(target flat within 15%: {'met' if spread <= 0.15 else 'NOT met'})")
    if "unrolled" in strategies:
        peaks = [results[("unrolled", m)]["peak_mib"] for m in max_iters]
        growing = all(b > a for a, b in zip(peaks, peaks[1:], strict=False))
        lines.append(f"- unrolled peak memory over max_iter {max_iters}: "
                     f"{', '.join(f'{p:.0f}' for p in peaks)} MiB "
                     f"(target growing: {'met' if growing else 'NOT met'})")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    # part 2 first: its children are forked from a process that has not computed anything yet
    strategies = strategy_table(args)
    solvers = None if args.skip_solvers else solver_table(args)
    print(f"## Implicit layer benchmark: batch {args.batch} x 1 x {args.size} x {args.size}, "
          f"DnCNN(depth={args.depth}, width={args.width}), Blur(gaussian_kernel(9, 1.5)), "
          f"alpha={args.alpha:g}, eta=1.0, torch {torch.__version__}, {args.threads} thread(s), "
          f"malloc thresholds {'fixed' if args.fixed_malloc else 'dynamic'}")
    print()
    if solvers is not None:
        print(solvers)
        print()
    print(strategies)
    print()
    print(f"Total wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
