"""JFB vs exact (implicit) vs unrolled gradients, trained through the estimator.

Same data, solver settings, seed and batch size for every strategy:
``ImplicitDeblurRegressor(operator=Blur(gaussian_kernel(9, 1.5)), gradient=..., max_epochs=E)``
on ``train_test_faces`` (32x32, noise std 0.01), everything else at its default (Anderson,
``tol=1e-4``, preconditioned step) except ``max_iter`` (50 in table B, fixed in table A).

Table A (``tol=0``, fixed ``max_iter`` from ``--max-iters``, one epoch of the untrained model):
every strategy does the same forward work; seconds and memory per epoch as that work grows.
Table B (default ``tol``, ``E`` epochs): seconds per epoch, forward and backward iterations,
counted evaluations of the regularizer, test PSNR after equal epochs and after equal wall time.

How things are measured
-----------------------
- Every table-A run is the first run of a fresh subprocess (the lowest ``max_iter`` of each
  strategy shares its process with that strategy's table-B training, which comes after it).
  Peak memory is the peak resident memory during the run above the resident memory when it
  starts (on Linux the kernel's peak counter ``VmHWM`` is reset through ``/proc/self/clear_refs``;
  elsewhere the rise of ``ru_maxrss``), libraries imported, data loaded and a bare skorch fit
  done (the first fit of a process loads code worth about 150 MB of resident memory, whatever
  the model). It covers the whole ``fit`` of one epoch: building the network, the
  ``lam="auto"`` search (the same for every row) and the training steps.
- Seconds per epoch is skorch's ``dur`` (wall time of training only; the test PSNR computed
  after each epoch is not counted). CPU seconds per epoch (``time.process_time``) are reported
  beside it: with one torch thread they measure the work, and are much less disturbed than wall
  time when other processes share the cores.
- Regularizer evaluations are counted by a forward hook and a full backward hook on
  ``est.net_.module_.layer.map.regularizer``, summing the batch size of every call during
  training (the solver's calls on its still-active samples included). The backward count is the
  number of image backpropagations through the regularizer: 1 per sample for JFB, 1 plus one per
  adjoint iteration for exact (vector-Jacobian products), ``steps`` for unrolled. Both are
  reported per training sample and epoch. "VJP /sample" is the exact strategy's own count
  (``Exact.last_stats.n_evaluations`` of every batch, read by the same callback): the
  vector-Jacobian products of samples still active in the adjoint solve. The products actually
  run on the whole batch (zero rows for samples whose adjoint solve has converged), so the
  backward count is about ``1 + bw_iter_max`` per sample, more than ``1 + VJP /sample``.
- "Equal wall time": the exact strategy trains first for ``E`` epochs; its training time is the
  budget. The other strategies keep training (up to ``4 E`` epochs) and report the PSNR of the
  last epoch that ended within that budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from run import PeakMemory, deblur_problem, machine_line, markdown_table, quiet_warnings, \
    run_worker

STRATEGIES = ("jfb", "exact", "unrolled")


def _counter_callback():
    from skorch.callbacks import Callback

    class RegularizerCounter(Callback):
        """Per training epoch: images through the regularizer (forward, backward), CPU time."""

        def initialize(self):
            self.handles_ = []
            self.forward_, self.backward_, self.vjp_ = 0, 0, 0
            self.last_backward_stats_ = None
            return self

        def on_train_begin(self, net, **kwargs):
            if self.handles_:
                return
            regularizer = net.module_.layer.map.regularizer

            def forward_hook(module, inputs, output):
                self.forward_ += inputs[0].shape[0]

            def backward_hook(module, grad_input, grad_output):
                self.backward_ += grad_output[0].shape[0]

            self.handles_ = [regularizer.register_forward_hook(forward_hook),
                             regularizer.register_full_backward_hook(backward_hook)]

        def on_epoch_begin(self, net, **kwargs):
            self.forward_, self.backward_, self.vjp_ = 0, 0, 0
            self.cpu_start_ = time.process_time()

        def on_batch_end(self, net, training=False, **kwargs):
            stats = net.module_.layer.gradient.last_stats   # Exact only: the adjoint solve
            if training and stats is not None and stats is not self.last_backward_stats_:
                self.vjp_ += stats.n_evaluations
                self.last_backward_stats_ = stats

        def on_epoch_end(self, net, **kwargs):
            net.history.record("cpu", time.process_time() - self.cpu_start_)
            net.history.record("reg_forward", self.forward_)
            net.history.record("reg_backward", self.backward_)
            net.history.record("vjp", self.vjp_)

    return RegularizerCounter()


def _warm_up():
    """First-use costs of a process (lazily loaded torch and skorch code: about 150 MB of
    resident memory), paid by a bare skorch fit before anything is measured."""
    import torch
    from skorch import NeuralNetRegressor
    images = torch.rand(4, 1, 8, 8)
    NeuralNetRegressor(torch.nn.Conv2d(1, 1, 3, padding=1), max_epochs=1, train_split=None,
                       verbose=0).fit(images, images)


def worker(config):
    """Train one strategy for each entry of ``config["runs"]``, in order.

    Returns a list with, per run, per-epoch statistics and the peak memory above the resident
    memory at the start of the run (:class:`run.PeakMemory`). Only the first run's memory is
    comparable across workers: later runs reuse what the allocator kept from earlier ones.
    """
    import torch
    torch.set_num_threads(config["threads"])
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    operator, X, y, X_test, y_test = deblur_problem(config["n_patches"], seed=config["seed"])
    if config.get("n_train"):
        X, y = X[:config["n_train"]], y[:config["n_train"]]
    _warm_up()
    results = []
    for run in config["runs"]:
        memory = PeakMemory().start()
        estimator = ImplicitDeblurRegressor(
            operator=operator, gradient=config["gradient"], max_iter=run["max_iter"],
            tol=run["tol"], batch_size=config["batch_size"], max_epochs=1,
            random_state=config["seed"], callbacks=[_counter_callback()])
        epochs, elapsed = [], 0.0
        budget = run.get("budget")
        while True:
            estimator.partial_fit(X, y)
            record = estimator.history[-1]
            elapsed += record["dur"]
            epochs.append({
                "dur": record["dur"], "cpu": record["cpu"], "elapsed": elapsed,
                "fp_iter": record["fp_iter"], "bw_iter": record.get("bw_iter"),
                "reg_forward": record["reg_forward"], "reg_backward": record["reg_backward"],
                "vjp": record["vjp"],
                "psnr": estimator.score(X_test, y_test) if run["evaluate"] else None})
            done = len(epochs) >= run["epochs"]
            if budget is not None:
                done = done and (elapsed >= budget or len(epochs) >= 4 * run["epochs"])
            if done:
                break
        results.append({"epochs": epochs, "peak_mb": memory.peak_mb(),
                        "memory_method": memory.method, "n_train": len(X)})
        del estimator
    return results


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def summarise(result, epochs, budget=None):
    """Per-epoch means over the first ``epochs`` epochs, PSNR at ``epochs`` and at ``budget``."""
    first = result["epochs"][:epochs]
    n = result["n_train"]
    summary = {
        "s_epoch": _mean([e["dur"] for e in first]),
        "cpu_epoch": _mean([e["cpu"] for e in first]),
        "fp_iter": _mean([e["fp_iter"] for e in first]),
        "bw_iter": _mean([e["bw_iter"] for e in first]),
        "forward": _mean([e["reg_forward"] / n for e in first]),
        "backward": _mean([e["reg_backward"] / n for e in first]),
        "vjp": _mean([e["vjp"] / n for e in first]),
        "psnr_epochs": first[-1]["psnr"] if len(first) == epochs else None,
        "peak_mb": result["peak_mb"],
    }
    if budget is not None:
        within = [e for e in result["epochs"] if e["elapsed"] <= budget * 1.02]
        summary["budget_epochs"] = len(within)
        summary["psnr_budget"] = within[-1]["psnr"] if within else None
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="E (default 6, quick 2)")
    parser.add_argument("--n-patches", type=int, default=None,
                        help="natural patches added to the 80 training faces (default 176)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="use only the first n training images (quick: 32)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32, quick 16")
    parser.add_argument("--max-iters", default=None,
                        help="comma-separated max_iter of table 2 (default 10,60; quick 5,20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    quick = args.quick
    epochs = args.epochs or (2 if quick else 6)
    n_patches = args.n_patches if args.n_patches is not None else (0 if quick else 176)
    n_train = args.n_train or (32 if quick else None)
    batch_size = args.batch_size or (16 if quick else 32)
    max_iters = sorted(int(v) for v in (args.max_iters or ("5,20" if quick else "10,60"))
                       .split(","))
    base = {"threads": args.threads, "n_patches": n_patches, "n_train": n_train,
            "batch_size": batch_size, "seed": args.seed}
    print(machine_line(args.threads))
    print(f"{n_train or 80 + n_patches} training images 32x32, batch {batch_size}; Anderson, "
          f"preconditioned step, seed {args.seed}; one fresh process per memory reading.\n")

    # one process per table-A run (memory is only comparable for a process's first run); the
    # lowest max_iter of each strategy is followed by that strategy's table-B training
    def sweep_run(max_iter):
        return {"max_iter": max_iter, "tol": 0.0, "epochs": 1, "evaluate": False}

    def run_strategy(gradient, budget=None):
        training = {"max_iter": 50, "tol": 1e-4, "epochs": epochs, "evaluate": True,
                    "budget": budget}
        first = run_worker("gradients.py", {**base, "gradient": gradient,
                                            "runs": [sweep_run(max_iters[0]), training]})
        rest = [run_worker("gradients.py", {**base, "gradient": gradient,
                                            "runs": [sweep_run(m)]})[0]
                for m in max_iters[1:]]
        return [first[0], *rest, first[1]]

    results = {"exact": run_strategy("exact")}
    budget = sum(e["dur"] for e in results["exact"][-1]["epochs"][:epochs])
    for gradient in ("jfb", "unrolled"):
        results[gradient] = run_strategy(gradient, budget)

    rows, sweep = [], {}
    for gradient in STRATEGIES:
        for max_iter, result in zip(max_iters, results[gradient][:-1], strict=True):
            s = sweep[gradient, max_iter] = summarise(result, 1)
            rows.append([gradient, max_iter, _fmt(s["s_epoch"], ".2f"),
                         _fmt(s["cpu_epoch"], ".2f"), _fmt(s["peak_mb"], ".0f"),
                         _fmt(s["fp_iter"]), _fmt(s["bw_iter"]), _fmt(s["forward"]),
                         _fmt(s["backward"]), _fmt(s["vjp"] or None)])
    print("Table A: equal forward work and memory: tol=0 (every sample runs max_iter forward "
          "iterations), 1 epoch, untrained model\n")
    print(markdown_table(["gradient", "max_iter", "s/epoch", "CPU s/epoch", "peak MB",
                          "fwd iter", "bwd iter", "R fwd /sample", "R bwd /sample",
                          "VJP /sample"], rows))
    print()
    for max_iter in max_iters:
        jfb, exact = sweep["jfb", max_iter], sweep["exact", max_iter]
        print(f"max_iter={max_iter}: JFB / exact CPU seconds per epoch "
              f"{jfb['cpu_epoch'] / exact['cpu_epoch']:.2f} (wall "
              f"{jfb['s_epoch'] / exact['s_epoch']:.2f}); regularizer passes per sample "
              f"{jfb['forward'] + jfb['backward']:.1f} vs "
              f"{exact['forward'] + exact['backward']:.1f}")
    low, high = max_iters[0], max_iters[-1]
    for gradient in STRATEGIES:
        growth = sweep[gradient, high]["peak_mb"] / max(sweep[gradient, low]["peak_mb"], 1e-9)
        print(f"{gradient} training memory, max_iter {low} -> {high}: x{growth:.2f}")

    rows, summaries = [], {}
    for gradient in STRATEGIES:
        s = summaries[gradient] = summarise(results[gradient][-1], epochs, budget)
        rows.append([gradient, _fmt(s["s_epoch"], ".2f"), _fmt(s["cpu_epoch"], ".2f"),
                     _fmt(s["fp_iter"]), _fmt(s["bw_iter"]), _fmt(s["forward"]),
                     _fmt(s["backward"]), _fmt(s["vjp"] or None),
                     _fmt(s["psnr_epochs"], ".2f"),
                     s["budget_epochs"], _fmt(s["psnr_budget"], ".2f")])
    print(f"\nTable B: training, max_iter=50, tol=1e-4; equal wall time = {budget:.1f} s "
          f"(exact's {epochs} epochs)\n")
    print(markdown_table(["gradient", "s/epoch", "CPU s/epoch", "fwd iter", "bwd iter",
                          "R fwd /sample", "R bwd /sample", "VJP /sample", f"PSNR @{epochs} ep",
                          "epochs @budget", "PSNR @budget"], rows))
    jfb, exact = summaries["jfb"], summaries["exact"]
    print(f"\nJFB / exact CPU seconds per epoch: {jfb['cpu_epoch'] / exact['cpu_epoch']:.2f} "
          f"(wall {jfb['s_epoch'] / exact['s_epoch']:.2f}); regularizer passes per sample "
          f"{jfb['forward'] + jfb['backward']:.1f} vs {exact['forward'] + exact['backward']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
