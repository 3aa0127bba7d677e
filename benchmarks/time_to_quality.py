"""Test PSNR after a given training time, for the default implicit model and its alternatives.

Data and setting (a) of ``quality.py``: ``train_test_faces(size=32, n_test=20, n_patches=600,
random_state=seed)`` (80 faces + 600 natural patches for training, 20 held-out faces for
testing), ``Blur(gaussian_kernel(9, 1.5))``, noise std 0.01, measurements drawn with seeds
``seed + 1`` (training) and ``seed + 2`` (test).

Methods (each in its own process with one torch thread, ``--jobs`` of them at a time, 2 at
most on this machine's 2 cores):

- ``jfb``: the default ``ImplicitDeblurRegressor`` (only ``operator`` given, plus
  ``max_epochs`` and ``random_state``);
- ``exact``: the same with ``gradient="exact"``;
- ``unrolled``: the same with ``gradient=Unrolled(steps=k)``, ``k`` the default model's mean
  training fixed-point iterations (``history[:, "fp_iter"]``) at the same budget, rounded;
- ``finetuned``: the shipped prior, ``ImplicitDeblurRegressor.from_pretrained(operator,
  noise_std=0.01)`` (its zero-shot score is the 0-epoch point), fine-tuned on the training pairs
  with ``warm_start`` and the estimator's defaults (JFB);
- ``feedforward``: a skorch ``NeuralNetRegressor`` whose module post-processes the Tikhonov
  solution ``x0 = (A^T A + lam I)^{-1} A^T d`` (``lam`` tuned as the estimator's
  ``lam="auto"``) with the default regularizer's network: ``x0 + N(x0)`` (``N`` built by the
  default estimator, so the same architecture and zero-initialised output), trained on the
  same pairs (the fixed training measurements, no augmentation) with the estimator's default
  optimizer, learning rate, loss and batch size;
- ``deepinv``: deepinv 0.5's DEQ built as its documentation does (``deepinv.optim.GD`` with the
  ``L2`` data fidelity, a ``RED`` prior, ``DEQConfig(jacobian_free=True)``, Anderson
  acceleration; ``peer_deepinv.build_deepinv``) around the same network (``D = -N``, so RED's
  gradient is ``lam (x + N(x))``) with the Tikhonov start; ``--deepinv-solver tuned`` (default)
  uses our solver settings (Anderson m=5, ``early_stop``, tol 1e-4, 50 iterations), which make
  its epochs several times shorter than ``defaults`` (deepinv's own fixed-point defaults: every
  solve runs ``max_iter``). MSE loss, Adam with the estimator's default learning rate and batch
  size, a plain PyTorch loop. Skipped, with a message, when deepinv is not installed (``pip
  install "deepinv>=0.5,<0.6"``, the ``bench`` extra);
- horizontal lines: ``TikhonovRegressor``, ``WienerRegressor`` and ``TotalVariationRegressor``
  tuned by ``implicit_inverse.baselines.tune_strongest`` (``GridSearchCV``, 3 folds, PSNR) on
  the training set (a random subset of ``--classical-samples`` pairs, default that function's
  64). Not counted in the budgets.

Budgets and the learning-rate schedule: every learned method trains with a cosine schedule
(the estimator's default ``lr_schedule="cosine"``; ``CosineAnnealingLR`` for the others) that
spans *its budget*: a separate run per budget, with ``max_epochs = max(1, floor(budget /
t_1))`` where ``t_1`` is the wall time of one timed first epoch of that method (a pilot run
whose model is discarded). A curve read from one long run would not show the quality reachable
in a shorter budget: its learning rate is still high at every earlier point. Training stops
early if the next epoch would end past ``1.1 x budget`` (the table shows epochs run / planned
and the training seconds actually spent). Evaluation time is not counted.

Outputs: a markdown table (PSNR in dB and epochs per budget), the time each method needs to
reach the best classical baseline + 0.5 dB (first budget at which it does), the checks of the
issue's targets, a figure ``time_to_quality.png`` (PSNR against training seconds) and
``time_to_quality.json`` in ``--out``.

Usage::

    python benchmarks/time_to_quality.py                       # 30, 60, 120, 300, 600 s
    python benchmarks/time_to_quality.py --budgets 30,60 --jobs 2 --out ttq_short
    python benchmarks/time_to_quality.py --methods jfb,deepinv --budgets 150
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time

import torch
from torch import nn

from run import HERE, _child_env, machine_line, markdown_table, quiet_warnings

METHODS = ("jfb", "exact", "unrolled", "finetuned", "feedforward", "deepinv")
LABELS = {"jfb": "implicit, JFB (default)", "exact": "implicit, exact gradient",
          "unrolled": "implicit, unrolled", "finetuned": "pretrained prior, fine-tuned (JFB)",
          "feedforward": "feed-forward (Tikhonov + N)", "deepinv": "deepinv DEQ"}
CLASSICAL = {"tikhonov": "Tikhonov", "wiener": "Wiener", "tv": "TotalVariation"}


# -- the worker side: one method, all its budgets ----------------------------------------------
def _problem(seed):
    from implicit_inverse.datasets import train_test_faces
    from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
    train, test = train_test_faces(size=32, n_test=20, n_patches=600, random_state=seed)
    operator = Blur(gaussian_kernel(9, 1.5))
    X_train = make_measurements(train, operator, 0.01, random_state=seed + 1)
    X_test = make_measurements(test, operator, 0.01, random_state=seed + 2)
    return operator, X_train, train, X_test, test


def _default_network(operator, lam):
    """The network inside the default estimator's regularizer (a fresh, untrained copy)."""
    from implicit_inverse import ImplicitDeblurRegressor
    builder = ImplicitDeblurRegressor(operator=operator)
    builder.lam_, builder.n_channels_ = lam, 1
    regularizer = builder._make_regularizer()
    return getattr(regularizer, "network", regularizer)


class EstimatorRun:
    """``ImplicitDeblurRegressor`` with default parameters, trained epoch by epoch (from scratch,
    or for "finetuned" from the shipped prior: ``from_pretrained`` at the data's noise 0.01)."""

    def __init__(self, method, operator, max_epochs, seed, steps=None):
        from implicit_inverse import ImplicitDeblurRegressor
        from implicit_inverse.equilibrium.gradients import Unrolled
        if method == "finetuned":
            self.estimator = ImplicitDeblurRegressor.from_pretrained(
                operator=operator, noise_std=0.01, max_epochs=max_epochs, random_state=seed,
                warm_start=True)
            self.stopped = None
            return
        extra = {}
        if method == "exact":
            extra["gradient"] = "exact"
        elif method == "unrolled":
            extra["gradient"] = Unrolled(steps=steps)
        self.estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=max_epochs,
                                                 random_state=seed, **extra)
        self.stopped = None

    def epoch(self, X, y):
        from implicit_inverse.estimators import DivergenceError
        try:
            self.estimator.partial_fit(X, y)
        except DivergenceError as error:
            self.stopped = str(error)
            return False
        return True

    def score(self, X, y):
        return float(self.estimator.score(X, y))

    def info(self):
        history = self.estimator.history
        if not len(history):
            return {"fp_iter": float("nan"), "epochs_recorded": 0}
        return {"fp_iter": float(sum(history[:, "fp_iter"]) / len(history)),
                "epochs_recorded": len(history)}


class TorchRun:
    """A plain PyTorch (deepinv) or skorch (feed-forward) model with a cosine schedule."""

    def __init__(self, method, operator, max_epochs, seed, lam, deepinv_solver):
        import copy
        import torch
        from skorch import NeuralNetRegressor
        from skorch.callbacks import LRScheduler
        from torch.optim.lr_scheduler import CosineAnnealingLR
        from implicit_inverse import ImplicitDeblurRegressor
        from implicit_inverse.training.losses import CRITERIA
        defaults = ImplicitDeblurRegressor(operator=operator).get_params()
        self.method, self.operator, self.lam = method, operator, lam
        self.batch_size, self.seed, self.stopped = defaults["batch_size"], seed, None
        torch.manual_seed(seed)
        network = copy.deepcopy(_default_network(operator, lam))
        if method == "feedforward":
            module = TikhonovPostProcessor(operator, lam, network)
            self.net = NeuralNetRegressor(
                module, criterion=CRITERIA[defaults["loss"]], optimizer=defaults["optimizer"],
                lr=defaults["lr"], batch_size=self.batch_size, max_epochs=max_epochs,
                train_split=None, iterator_train__shuffle=True,
                iterator_train__generator=torch.Generator().manual_seed(seed),
                callbacks=[("lr", LRScheduler(CosineAnnealingLR, T_max=max_epochs))])
            self.net.initialize()
        else:
            from peer_deepinv import build_deepinv
            self.model, self.physics = build_deepinv(
                operator, network, lam=lam, eta=1.0, max_iter=50, tol=1e-4, eps=1e-6,
                api="gd", solver_defaults=deepinv_solver == "defaults")
            self.optimizer = defaults["optimizer"](self.model.parameters(), lr=defaults["lr"])
            self.schedule = CosineAnnealingLR(self.optimizer, T_max=max_epochs)
            self.generator = torch.Generator().manual_seed(seed)

    def epoch(self, X, y):
        import torch
        inputs, targets = torch.from_numpy(X[:, None]), torch.from_numpy(y[:, None])
        if self.method == "feedforward":
            self.net.partial_fit(inputs, targets, epochs=1)
            return True
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets),
                                             batch_size=self.batch_size, shuffle=True,
                                             generator=self.generator)
        self.model.train()
        for measurement, clean in loader:
            self.optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(measurement, self.physics), clean)
            if not bool(torch.isfinite(loss)):
                self.stopped = "non-finite loss"
                return False
            loss.backward()
            self.optimizer.step()
        self.schedule.step()
        return True

    def score(self, X, y):
        import numpy as np
        import torch
        from implicit_inverse.metrics import psnr
        inputs = torch.from_numpy(X[:, None])
        with torch.no_grad():
            if self.method == "feedforward":
                prediction = self.net.module_.eval()(inputs)
            else:
                self.model.eval()
                prediction = torch.cat([self.model(inputs[i:i + 64], self.physics)
                                        for i in range(0, len(inputs), 64)])
        return float(psnr(y, np.asarray(prediction[:, 0])))

    def info(self):
        return {}


class TikhonovPostProcessor(nn.Module):
    """``x0 + N(x0)`` with ``x0 = (A^T A + lam I)^{-1} A^T d`` (no parameters in ``x0``)."""

    def __init__(self, operator, lam, network):
        super().__init__()
        self.operator, self.lam, self.network = operator, float(lam), network

    def forward(self, measurement):
        with torch.no_grad():
            start = self.operator.solve_normal(self.operator.adjoint(measurement), self.lam)
        return start + self.network(start)


def _make_run(config, method, operator, max_epochs, lam, steps=None):
    if method in ("jfb", "exact", "unrolled", "finetuned"):
        return EstimatorRun(method, operator, max_epochs, config["seed"], steps=steps)
    return TorchRun(method, operator, max_epochs, config["seed"], lam,
                    config["deepinv_solver"])


def _train(run, X, y, max_epochs, budget):
    """Epochs until ``max_epochs``, or until the next one would end past ``1.1 * budget``."""
    seconds, epochs, cpu = 0.0, 0, time.process_time()
    while epochs < max_epochs:
        if budget is not None and epochs and seconds + seconds / epochs > 1.1 * budget:
            break
        start = time.perf_counter()
        ok = run.epoch(X, y)
        seconds += time.perf_counter() - start
        if not ok:
            break
        epochs += 1
    return seconds, epochs, time.process_time() - cpu


def worker(config):
    import torch
    torch.set_num_threads(1)
    quiet_warnings()
    method = config["method"]
    operator, X, y, X_test, y_test = _problem(config["seed"])
    if method == "classical":
        return classical(operator, X, y, X_test, y_test, config["classical_samples"],
                         config["seed"])
    from implicit_inverse.baselines.tuning import tune_lam
    lam = tune_lam(operator, torch.from_numpy(X[:, None]), torch.from_numpy(y[:, None]))
    steps_by_budget = config.get("steps") or {}
    pilot_steps = next(iter(steps_by_budget.values()), None)
    pilot = _make_run(config, method, operator, 1, lam, steps=pilot_steps)
    pilot_seconds, _, _ = _train(pilot, X, y, 1, None)
    del pilot
    results = []
    for budget in config["budgets"]:
        planned = max(1, int(budget // pilot_seconds))
        steps = steps_by_budget.get(str(budget))
        run = _make_run(config, method, operator, planned, lam, steps=steps)
        seconds, epochs, cpu = _train(run, X, y, planned, budget)
        results.append({"budget": budget, "planned_epochs": planned, "epochs": epochs,
                        "train_s": seconds, "cpu_s": cpu, "psnr": run.score(X_test, y_test),
                        "stopped": run.stopped, "steps": steps, **run.info()})
        print(json.dumps({"progress": method, **results[-1]}), file=sys.stderr, flush=True)
    return {"method": method, "pilot_s": pilot_seconds, "lam": lam, "results": results}


def classical(operator, X, y, X_test, y_test, n_samples, seed):
    from implicit_inverse.baselines import tune_strongest
    tuned, _ = tune_strongest(operator, X, y, max_samples=len(X) if n_samples == 0 else n_samples,
                              random_state=seed)
    rows = [{"method": CLASSICAL[key], "param": baseline.param, "value": baseline.value,
             "tune_s": baseline.seconds,
             "psnr": float(baseline.estimator.score(X_test, y_test))}
            for key, baseline in tuned.items()]
    n_tuning = next(iter(tuned.values())).n_samples
    return {"method": "classical", "rows": rows, "n_tuning": n_tuning}


# -- the parent side ---------------------------------------------------------------------------
def _run_worker(config):
    command = [sys.executable, os.path.join(HERE, "time_to_quality.py"), "--worker",
               json.dumps(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=_child_env())
    if result.returncode != 0:
        raise RuntimeError(f"{config['method']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _first_reaching(method_result, threshold):
    for entry in method_result["results"]:
        if entry["psnr"] >= threshold:
            return entry["budget"]
    return None


def report(results, budgets, out):
    classical_rows = results.get("classical", {}).get("rows", [])
    learned = [m for m in METHODS if m in results]
    headers = ["method"] + [f"{b:g} s" for b in budgets]
    rows = []
    for method in learned:
        cells = [LABELS[method]]
        for entry in results[method]["results"]:
            note = f"{entry['epochs']}/{entry['planned_epochs']} ep, {entry['train_s']:.0f} s"
            if entry.get("steps"):
                note += f", {entry['steps']} steps"
            if entry.get("stopped"):
                note += ", stopped: diverged"
            cells.append(f"{entry['psnr']:.2f} ({note})")
        rows.append(cells)
    for entry in classical_rows:
        rows.append([f"{entry['method']} ({entry['param']}={entry['value']:.2g}, tuned)"]
                    + [f"{entry['psnr']:.2f}"] * len(budgets))
    print(markdown_table(headers, rows))
    if "classical" in results:
        print(f"\nclassical baselines tuned by GridSearchCV (3 folds, PSNR) on "
              f"{results['classical']['n_tuning']} training pairs")
    missing = results.get("classical", {}).get("missing", [])
    if missing:
        print(f"\nnot in implicit_inverse (not shown): {', '.join(missing)}")
    for method in learned:
        print(f"{LABELS[method]}: pilot epoch {results[method]['pilot_s']:.1f} s")

    if classical_rows:
        best = max(classical_rows, key=lambda entry: entry["psnr"])
        threshold = best["psnr"] + 0.5
        print(f"\nbest classical: {best['method']} {best['psnr']:.2f} dB; time to reach "
              f"{threshold:.2f} dB (first budget at or above it):")
        reach = {m: _first_reaching(results[m], threshold) for m in learned}
        for method in learned:
            value = reach[method]
            print(f"- {LABELS[method]}: "
                  f"{f'{value:g} s' if value is not None else f'not within {budgets[-1]:g} s'}")
        if "jfb" in reach:
            others = [m for m in learned if m != "jfb"]
            ours = reach["jfb"]
            ok = ours is not None and all(reach[m] is None or reach[m] >= 4 * ours
                                          for m in others)
            print(f"target 'reaches best classical + 0.5 dB at least 4x sooner': "
                  f"{'met' if ok else 'not met'} (budgets are discrete: 4x is resolved only "
                  "where the grid has budgets 4x apart)")
    if "jfb" in results:
        ours = {e["budget"]: e["psnr"] for e in results["jfb"]["results"]}
        highest = []
        for budget in budgets:
            if budget < 60:
                continue
            best_other = max((e["psnr"] for m in learned if m != "jfb"
                              for e in results[m]["results"] if e["budget"] == budget),
                             default=-math.inf)
            highest.append((budget, ours[budget] - best_other))
        if highest:
            print("target 'highest curve at every budget from 60 s': "
                  + ", ".join(f"{b:g} s {gap:+.2f} dB" for b, gap in highest))
        if "deepinv" in results:
            theirs = {e["budget"]: e["psnr"] for e in results["deepinv"]["results"]}
            gaps = [ours[b] - theirs[b] for b in budgets]
            print("target '>= 1.0 dB ahead of deepinv at every budget': "
                  f"{'met' if min(gaps) >= 1.0 else 'not met'} ("
                  + ", ".join(f"{b:g} s {g:+.2f} dB" for b, g in zip(budgets, gaps)) + ")")
    _figure(results, learned, classical_rows, budgets, out)


def _figure(results, learned, classical_rows, budgets, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method in learned:
        entries = results[method]["results"]
        axes.plot([e["train_s"] for e in entries], [e["psnr"] for e in entries], marker="o",
                  label=LABELS[method])
    styles = iter(["--", ":", "-."])
    for entry in classical_rows:
        axes.axhline(entry["psnr"], color="gray", linestyle=next(styles, "--"),
                     label=f"{entry['method']} (tuned)")
    axes.set_xscale("log")
    axes.set_xticks(budgets, labels=[f"{b:g}" for b in budgets])
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel("training seconds (one torch thread)")
    axes.set_ylabel("test PSNR (dB), 20 held-out faces")
    axes.set_title("Deblurring 9x9 Gaussian (sigma 1.5), noise 0.01")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = os.path.join(out, "time_to_quality.png")
    figure.savefig(path, dpi=120)
    print(f"\nfigure: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="30,60,120,300,600",
                        help="training seconds, comma-separated (default 30,60,120,300,600)")
    parser.add_argument("--methods", default=",".join(METHODS) + ",classical")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (default 2)")
    parser.add_argument("--deepinv-solver", choices=["tuned", "defaults"], default="tuned")
    parser.add_argument("--classical-samples", type=int, default=None,
                        help="training pairs (a random subset) on which the classical baselines "
                        "are tuned; 0: all (default: tune_strongest's, 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="time_to_quality_output")
    parser.add_argument("--from-json", metavar="FILE",
                        help="print the table and draw the figure from the time_to_quality.json "
                        "of an earlier run, without training")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    budgets = sorted(float(b) for b in args.budgets.split(","))
    if args.from_json:
        with open(args.from_json) as handle:
            results = json.load(handle)
        os.makedirs(args.out, exist_ok=True)
        report(results, budgets, args.out)
        return 0
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS) - {"classical"})
    if unknown:
        parser.error(f"unknown methods {unknown}")
    if "deepinv" in methods:
        try:
            import deepinv  # noqa: F401
        except ImportError:
            print("deepinv is not installed (pip install \"deepinv>=0.5,<0.6\"): its curve is "
                  "skipped")
            methods.remove("deepinv")
    os.makedirs(args.out, exist_ok=True)
    print(machine_line(1))
    print(f"budgets {', '.join(f'{b:g}' for b in budgets)} s; {args.jobs} process(es) at a "
          f"time, one torch thread each; deepinv solver: {args.deepinv_solver}\n", flush=True)
    base = {"budgets": budgets, "seed": args.seed, "deepinv_solver": args.deepinv_solver,
            "classical_samples": args.classical_samples}
    # the unrolled run needs the default model's iterations: queue it last, it waits for jfb
    order = [m for m in ("jfb", "deepinv", "exact", "finetuned", "feedforward", "classical",
                         "unrolled") if m in methods]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {}
        for method in order:
            if method == "unrolled":
                def unrolled_job():
                    steps = None
                    if "jfb" in futures:
                        jfb = futures["jfb"].result()
                        steps = {str(e["budget"]): max(1, round(e["fp_iter"]))
                                 for e in jfb["results"]}
                    else:
                        print("unrolled without jfb: steps = the slowest sample's iterations")
                    return _run_worker({**base, "method": "unrolled", "steps": steps})
                futures[method] = pool.submit(unrolled_job)
            else:
                futures[method] = pool.submit(_run_worker, {**base, "method": method})
        for method, future in futures.items():
            results[method] = future.result()
    with open(os.path.join(args.out, "time_to_quality.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    report(results, budgets, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
