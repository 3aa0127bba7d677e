"""The cost floor of one JFB training epoch, and where the time above it goes.

Setting (a) of ``quality.py``: ``train_test_faces(size=32, n_test=20, n_patches=600)``
(680 training images), ``Blur(gaussian_kernel(9, 1.5))``, noise 0.01, the default
``ImplicitDeblurRegressor`` (only ``operator`` given, plus ``max_epochs`` so that the cosine
schedule spans the run and ``random_state``). ``--epochs`` epochs are trained (default 4);
all but the first are measured (so that the ``lam="auto"`` search, the first shuffle and empty
warm starts are not part of them), each followed at once by the timing of its floor: this
machine's speed drifts by 20% and more within minutes, so a ratio is only meaningful between
timings made together. The epoch with the median ratio is broken down.

The floor
    Every call of the regularizer ``R`` during the measured epoch is counted by a forward
    hook (images with and without autograd). The floor is what those passes cost on the
    regularizer *alone*, timed apart on a batch of ``batch_size`` training images (best of
    ``--repeats``):

    - ``t_nograd``: one forward pass without a graph (the solver's iterations);
    - ``t_jfb``: one forward pass with a graph plus its backward to the parameters (JFB's
      differentiable step);
    - ``t_penalty``: the Jacobian penalty on ``R`` alone: forward with a graph at an input
      that requires grad, one vector-Jacobian product with ``create_graph=True`` and the
      backward of its squared norm to the parameters (double backpropagation), when the
      estimator's ``jacobian_penalty`` is > 0;
    - with the JFB gradient the penalty reuses JFB's evaluation of the map (as
      ``estimators/training.py`` does): one forward graph, whose single backward carries the
      loss's gradient and the penalty's, so JFB's step and the penalty together cost
      ``t_penalty``; ``--separate-penalty`` measures an epoch whose penalty evaluates the map
      again (the earlier design), for comparison.

    ``floor = n_nograd * t_nograd + n_jfb * t_jfb + n_penalty * t_penalty`` (per-sample
    costs times per-sample counts; the solver's calls on shrinking active sets cost a little
    more per sample than a full batch, which this ignores). The same passes are then timed
    through the whole map ``T`` (regularizer, data term and preconditioner FFTs, step size):
    the difference is what the operator costs inside the forward *and* backward passes.

The breakdown
    The measured epoch's wall time (skorch's ``dur``) is split with timers wrapped around the
    components (inclusive times minus their children, so the rows add up to the epoch): the
    regularizer's forward passes (no graph / with a graph), the FFTs of the operator and the
    preconditioner (``Blur._forward``, ``_adjoint``, ``_solve_normal``), the rest of the map
    (step size, arithmetic), the solver's own bookkeeping (residuals, best iterate, Anderson's
    small least-squares system and its copies), the starting points and warm-start cache, the
    training measurements (fresh noise, augmentation), the loss, the Jacobian penalty outside
    its regularizer pass, ``Tensor.backward`` (all backward passes: JFB's and the penalty's
    double backpropagation, FFT gradients included), the optimizer step, the history records,
    and what is left of the epoch (skorch's loop, the data loader, callbacks).

Usage::

    python benchmarks/epoch_cost.py                 # 4 epochs, the last 3 measured
    python benchmarks/epoch_cost.py --epochs 3 --repeats 30
    python benchmarks/epoch_cost.py --separate-penalty       # penalty evaluates the map again
    python benchmarks/epoch_cost.py --unfused                # A, A^T, P as three FFT pairs
    python benchmarks/epoch_cost.py --param reuse_fixed_points=False   # an ablation
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sys
import time

from run import machine_line, markdown_table, quiet_warnings


class Timers:
    """Inclusive and exclusive wall seconds of nested named sections."""

    def __init__(self, clock=time.process_time):
        self.clock = clock
        self.inclusive, self.exclusive, self.calls = {}, {}, {}
        self._stack = []
        self.active = False

    @contextlib.contextmanager
    def section(self, name):
        if not self.active:
            yield
            return
        start = self.clock()
        self._stack.append([name, 0.0])
        try:
            yield
        finally:
            _, children = self._stack.pop()
            elapsed = self.clock() - start
            self.inclusive[name] = self.inclusive.get(name, 0.0) + elapsed
            self.exclusive[name] = self.exclusive.get(name, 0.0) + elapsed - children
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, owner, attribute, name):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            with self.section(name if not callable(name) else name()):
                return original(*args, **kwargs)
        setattr(owner, attribute, timed)
        return original


def separate_penalty_evaluation(net):
    """Make the Jacobian penalty evaluate the map again at the fixed point (the design before
    it reused JFB's evaluation), by patching this estimator's objects only."""
    from implicit_inverse.estimators import training

    module = net.module_
    original = training.jacobian_penalty

    def penalty(fixed_point_map, x, d, generator=None, output=None):
        return original(fixed_point_map, module.last_solution, d, generator=generator)
    training.jacobian_penalty = penalty


def _instrument(net, timers, counts):
    """Wrap the components of one training step of ``net`` (an ``EquilibriumNet``)."""
    import torch
    from implicit_inverse.estimators import training

    module = net.module_
    layer = module.layer
    step = layer.map
    regularizer = step.regularizer

    def grad_name():
        return "R forward, graph" if torch.is_grad_enabled() else "R forward, no graph"
    timers.wrap(regularizer, "forward", grad_name)

    def count(module_, inputs, output):
        if timers.active:
            key = "grad" if torch.is_grad_enabled() else "nograd"
            counts[key] = counts.get(key, 0) + inputs[0].shape[0]
    regularizer.register_forward_hook(count)
    for attribute in ("_forward", "_adjoint", "_solve_normal"):
        timers.wrap(step.operator, attribute, "FFTs: A, A^T, preconditioner")
    timers.wrap(step, "_fourier_direction", "FFTs: A, A^T, preconditioner")
    timers.wrap(step, "forward", "map arithmetic (step size, sums)")
    timers.wrap(step, "initial_point", "starting point + warm-start cache")
    if module.cache is not None:
        timers.wrap(module.cache, "start", "starting point + warm-start cache")
        timers.wrap(module.cache, "store", "starting point + warm-start cache")
    timers.wrap(layer.solver, "_solve", "solver bookkeeping")
    timers.wrap(layer.gradient, "attach", "gradient strategy (outside its map call)")
    timers.wrap(net, "get_loss", "loss")
    timers.wrap(net, "train_step_single", "training step (rest)")
    timers.wrap(net, "train_step", "optimizer step + zero_grad")
    timers.wrap(net, "run_single_epoch", "skorch loop, data loader (rest of the epoch)")
    timers.wrap(training, "jacobian_penalty", "Jacobian penalty: its VJP (create_graph) + probe")
    timers.wrap(training, "record_solver_stats", "solver stats + history")
    timers.wrap(net.history, "record_batch", "solver stats + history")
    measurements = net.training_measurements
    if measurements is not None:
        original_call = type(measurements).__call__

        def call(self, *args, **kwargs):
            with timers.section("training measurements (noise, augmentation)"):
                return original_call(self, *args, **kwargs)
        measurements.__class__ = type("Timed" + type(measurements).__name__,
                                      (type(measurements),), {"__call__": call})
    original_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with timers.section("Tensor.backward (all backward passes)"):
            return original_backward(self, *args, **kwargs)
    torch.Tensor.backward = backward


def _best_seconds(function, repeats, clock):
    function()  # warm-up: oneDNN picks its kernels on the first call
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return min(times)  # other processes only ever add time: the best run is the cost


def network_passes(function, parameters, images, repeats, clock):
    """Per-sample seconds of passes of ``function`` (images -> images) alone on ``images``."""
    import torch
    batch = images.shape[0]

    def zero():
        for parameter in parameters:
            parameter.grad = None

    def nograd():
        with torch.no_grad():
            function(images)

    def grad_forward():
        function(images).sum()

    def jfb():
        zero()
        function(images).square().sum().backward(inputs=parameters)

    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(images.shape, generator=generator)

    def penalty():
        zero()
        z = images.detach().requires_grad_(True)
        output = function(z)
        (product,) = torch.autograd.grad(output, z, probe, create_graph=True)
        product.square().sum().backward(inputs=parameters)

    return {name: _best_seconds(passes, repeats, clock) / batch
            for name, passes in [("nograd", nograd), ("grad_forward", grad_forward),
                                 ("jfb", jfb), ("penalty", penalty)]}


def _floors(step, counts, n, penalty, shared, images, measurements, repeats, clock):
    """The floor of one epoch: its counted regularizer passes, timed alone now.

    Returns ``{"R": ..., "T": ...}``, each ``{"parts": [(name, per-sample count, seconds per
    sample)], "total": seconds per epoch, "grad_forward": seconds per sample}``: the passes on
    the regularizer alone and through the whole map."""
    regularizer = step.regularizer
    per_sample_nograd = counts.get("nograd", 0) / n
    n_penalty = 1.0 if penalty else 0.0
    n_jfb = counts.get("grad", 0) / n - (0.0 if shared else n_penalty)
    floors = {}
    for label, function, owner in [("R", regularizer, regularizer),
                                   ("T", lambda z: step(z, measurements), step)]:
        parameters = [p for p in owner.parameters() if p.requires_grad]
        passes = network_passes(function, parameters, images, repeats, clock)
        parts = [(f"{label}: forward, no graph (solver)", per_sample_nograd, passes["nograd"])]
        if shared:
            # one graph: the loss's gradient joins the penalty's in its single backward
            parts.append((f"{label}: JFB step + penalty on one graph (fwd + VJP + double "
                          "backward)", n_penalty, passes["penalty"]))
        else:
            parts += [(f"{label}: forward + backward (JFB step)", n_jfb, passes["jfb"]),
                      (f"{label}: Jacobian penalty (fwd + VJP + double backward)", n_penalty,
                       passes["penalty"])]
        floors[label] = {"parts": parts, "grad_forward": passes["grad_forward"],
                         "total": sum(count * seconds * n for _, count, seconds in parts)}
    return floors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs trained (>= 2); all "
                        "but the first are measured, the median broken down (default 4)")
    parser.add_argument("--n-patches", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=20,
                        help="timings of each isolated pass (the best is kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="an estimator parameter to change from its default, for an "
                        "ablation (e.g. reuse_fixed_points=False); repeatable")
    parser.add_argument("--separate-penalty", action="store_true",
                        help="measured epoch: the Jacobian penalty evaluates the map again "
                        "instead of reusing JFB's evaluation (the earlier design, patched in)")
    parser.add_argument("--unfused", action="store_true",
                        help="the map applies A, A^T and the preconditioner one by one (three "
                        "FFT pairs) instead of on one spectrum (the fused path for circular blur)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="CPU seconds (default: with one thread they measure the work and "
                        "move little when other processes share the cores) or wall seconds")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first is not measured)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    from run import deblur_problem

    operator, X, y, _, _ = deblur_problem(args.n_patches, seed=args.seed)
    print(machine_line(args.threads))
    changes = {}
    for item in args.param:
        name, _, value = item.partition("=")
        changes[name] = ast.literal_eval(value)
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=args.epochs,
                                        random_state=args.seed, **changes)
    if args.unfused:
        operator.fourier_multiplier = lambda *args, **kwargs: None
    from implicit_inverse.equilibrium.gradients import JFB
    params = estimator.get_params()
    n = len(X)
    images = torch.as_tensor(y[:params["batch_size"], None])
    batch_measurements = torch.as_tensor(X[:params["batch_size"], None])
    timers, counts = Timers(clock), {}
    epochs = []  # one dict per measured epoch, its floor timed right after it
    for epoch in range(args.epochs):
        if epoch == 1:
            if args.separate_penalty:
                separate_penalty_evaluation(estimator.net_)
            _instrument(estimator.net_, timers, counts)
        timers.inclusive, timers.exclusive, timers.calls = {}, {}, {}
        counts.clear()
        timers.active = epoch >= 1
        estimator.partial_fit(X, y)
        timers.active = False
        if epoch >= 1:
            layer = estimator.net_.module_.layer
            shared = (params["jacobian_penalty"] > 0 and isinstance(layer.gradient, JFB)
                      and not args.separate_penalty)
            epochs.append({
                "seconds": timers.inclusive["skorch loop, data loader (rest of the epoch)"],
                "exclusive": dict(timers.exclusive), "calls": dict(timers.calls),
                "history": estimator.history[-1], "shared": shared,
                "floors": _floors(layer.map, dict(counts), n, params["jacobian_penalty"] > 0,
                                  shared, images, batch_measurements, args.repeats, clock)})
    for entry in epochs:
        entry["ratio"] = entry["seconds"] / entry["floors"]["R"]["total"]
    ranked = sorted(epochs, key=lambda entry: entry["ratio"])
    chosen = ranked[(len(ranked) - 1) // 2]  # the median epoch (the lower one of an even count)
    history, exclusive, calls = chosen["history"], chosen["exclusive"], chosen["calls"]
    print(f"{n} training images 32x32, batch {params['batch_size']}, epochs 2 to {args.epochs} "
          f"measured, each followed by its floor (the machine's speed drifts: a ratio is only "
          f"meaningful between timings made together); the median epoch is broken down "
          f"({history['dur']:.2f} s wall, skorch dur; all times: {args.clock}); train_tol "
          f"{params['train_tol']}, train_max_iter {params['train_max_iter']}, gradient "
          f"{params['gradient']}, jacobian_penalty {params['jacobian_penalty']}; fp_iter "
          f"{history['fp_iter']:.2f} (mean per batch)"
          + (f"; changed from the defaults: {changes}" if changes else "") + "\n")
    print(markdown_table(
        ["epoch", "s", "floor (R alone) s", "map passes (T) s", "epoch / floor"],
        [[str(i + 2), f"{e['seconds']:.2f}", f"{e['floors']['R']['total']:.2f}",
          f"{e['floors']['T']['total']:.2f}", f"{e['ratio']:.2f}"]
         for i, e in enumerate(epochs)]) + "\n")
    wall = chosen["seconds"]
    for label in ("R", "T"):
        floor_parts = chosen["floors"][label]
        rows = [[name, f"{count:.2f}", f"{1e3 * seconds:.3f}", f"{count * seconds * n:.2f}"]
                for name, count, seconds in floor_parts["parts"]]
        rows.append([f"**{label} total**", "", "", f"**{floor_parts['total']:.2f}**"])
        print(markdown_table(["pass (alone, batch of " f"{params['batch_size']})", "per sample",
                              "ms per sample", "s/epoch"], rows) + "\n")
    floor, map_floor = chosen["floors"]["R"]["total"], chosen["floors"]["T"]["total"]
    per_sample_nograd = chosen["floors"]["R"]["parts"][0][1]
    batches = history["batches"]
    solver_evaluations = sum(b["fp_iter"] * b["train_batch_size"] for b in batches) / n
    print(f"\nsolver iterations per sample {solver_evaluations:.2f} (SolverStats) vs "
          f"regularizer calls without a graph per sample {per_sample_nograd:.2f} (forward "
          "hook): converged samples are not evaluated")
    print(f"\nmedian epoch: floor (the regularizer's passes alone) {floor:.2f} s; the same "
          f"passes through the whole map T (R + data term + preconditioner FFTs) "
          f"{map_floor:.2f} s; epoch {wall:.2f} s")
    ratios = ", ".join(f"{e['ratio']:.2f}" for e in epochs)
    together = (sum(e["seconds"] for e in epochs)
                / sum(e["floors"]["R"]["total"] for e in epochs))
    print(f"epoch / floor: {wall / floor:.2f} (median of {len(epochs)}; target <= 1.15; all: "
          f"{ratios}; all measured epochs together {together:.2f}); "
          f"map passes / floor: {map_floor / floor:.2f}; epoch / map passes: "
          f"{wall / map_floor:.2f}")
    if params["jacobian_penalty"] > 0 and not chosen["shared"]:
        saving = chosen["floors"]["R"]["grad_forward"] * n
        print(f"the penalty's second evaluation of the map costs about {saving:.2f} s of "
              f"regularizer forward ({100 * saving / wall:.1f}% of the epoch)")
    print()
    rows = []
    order = sorted(exclusive.items(), key=lambda item: -item[1])
    for name, seconds in order:
        rows.append([name, f"{seconds:.2f}", f"{100 * seconds / wall:.1f}%", str(calls[name])])
    rows.append(["**epoch**", f"**{wall:.2f}**", "100%", "-"])
    print(markdown_table(["component (exclusive)", "s/epoch", "share", "calls"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
