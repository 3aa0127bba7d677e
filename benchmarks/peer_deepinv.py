"""The same DE-GRAD deep equilibrium model trained with implicit_inverse and with deepinv.

Both sides get the same data (``train_test_faces`` 32x32, 9x9 Gaussian blur sigma 1.5, noise
0.01, fixed measurements), the same fixed-point map, starting point, regularizer architecture and
initial weights, solver (Anderson, memory 5, no mixing), tolerance and iteration cap, gradient
(Jacobian-free), loss (MSE), optimizer (Adam, same lr), batch size, epochs and torch threads::

    T(x; d) = x - eta * (A^T (A x - d) + alpha * (x + N(x)))      x0 = (A^T A + lam I)^{-1} A^T d

with ``N = DnCNN(depth=5, width=24)`` (zero output layer, so both start as Tikhonov with weight
``alpha = lam``). Only ``N`` is trained; ``eta`` and ``alpha`` stay fixed on both sides (deepinv
would train ``lambda`` directly, where Adam moves it by about ``lr`` per step: from 0.01 to
negative values within a few steps, while our ``alpha`` is a softplus).

- implicit_inverse: ``ImplicitDeblurRegressor(regularizer=TikhonovPlusNetwork(N, alpha=lam,
  learn_alpha=False), lam=lam, precondition=False, learn_step=False, augment=False,
  noise_std=0, gradient="jfb", solver="anderson", ...)``. A second row shows the estimator's
  own default map (preconditioned step, learned step size), everything else equal.
- deepinv: ``deepinv.optim.GD(data_fidelity=L2(), prior=RED(D), lambda_reg=lam, stepsize=eta,
  DEQ=DEQConfig(jacobian_free=True), anderson_acceleration=AndersonAccelerationConfig(
  history_size=5, beta=1.0, eps=...), early_stop=True, thres_conv=tol, max_iter=...,
  custom_init=<Tikhonov start>, trainable_params=[])`` with the denoiser
  ``D(x) = -N(x)``, so RED's gradient ``lambda * (x - D(x))`` is ``alpha * (x + N(x))``. The
  physics is ``LinearPhysics`` around our ``Blur`` (the same FFT operator on both sides).
  ``--api builder`` builds it with the deprecated ``deepinv.unfolded.DEQ_builder("GD", ...)``.
  deepinv's training loop is a plain PyTorch loop (shuffled ``DataLoader``).

A last row trains deepinv with its own fixed-point defaults instead of ours (``early_stop=False``:
every solve runs ``max_iter`` iterations; ``AndersonAccelerationConfig()``: history 10, beta
0.9, eps 0.1; ``thres_conv=1e-5``), the rest unchanged: what a user gets without tuning them.

Counted on both sides with a forward hook on ``N``: network evaluations per training sample and
epoch (forward iterations + 1). Differences that remain by construction: deepinv stops a batch
when the mean over the batch of ``||x_k - x_{k-1}|| / ||x_k||`` falls below ``tol`` (every
sample keeps iterating until then, and at least 3 iterations run), while implicit_inverse stops
each sample at ``||T(x) - x|| / ||x|| <= tol`` and removes it from the batch; deepinv's
Anderson regularizes its least-squares system with an absolute ``eps`` (``--eps``), ours with
``1e-8`` times its scale; deepinv's L2 gradient applies ``A^T`` to ``d`` at every iteration.

If deepinv is not installed, prints one line and exits 0 (``pip install "deepinv>=0.5,<0.6"``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

from run import deblur_problem, machine_line, markdown_table, quiet_warnings


def _count_calls(network, counter):
    def hook(module, inputs, output):
        if module.training:
            counter[0] += inputs[0].shape[0]
    return network.register_forward_hook(hook)


def build_deepinv(operator, network, *, lam, eta, max_iter, tol, eps, api,
                  solver_defaults=False):
    """deepinv's DEQ with our ``Blur`` as physics and ``D = -network`` inside RED.

    ``solver_defaults=True`` keeps deepinv's own fixed-point settings instead of ours:
    ``early_stop=False`` (every solve runs ``max_iter`` iterations), the default
    ``AndersonAccelerationConfig()`` (history 10, beta 0.9, eps 0.1) and ``thres_conv=1e-5``.
    """
    import deepinv as dinv
    import torch
    from torch import nn

    class NegatedNetwork(nn.Module):
        """deepinv denoiser ``D(x, sigma) = -N(x)`` (RED's gradient is then ``x + N(x)``)."""

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x, sigma=None, **kwargs):
            return -self.module(x)

    physics = dinv.physics.LinearPhysics(A=lambda x, **kwargs: operator(x),
                                         A_adjoint=lambda y, **kwargs: operator.adjoint(y))

    def tikhonov_start(y, physics):
        with torch.no_grad():
            return operator.solve_normal(operator.adjoint(y), lam)

    prior = dinv.optim.prior.RED(NegatedNetwork(network))
    anderson = dinv.optim.AndersonAccelerationConfig(history_size=5, beta=1.0, eps=eps)
    options = dict(max_iter=max_iter, crit_conv="residual", thres_conv=tol, early_stop=True,
                   custom_init=tikhonov_start, trainable_params=[],
                   anderson_acceleration=anderson)
    if solver_defaults:
        options.update(anderson_acceleration=dinv.optim.AndersonAccelerationConfig(),
                       early_stop=False, thres_conv=1e-5)
    if api == "builder":
        model = dinv.unfolded.DEQ_builder(
            "GD", params_algo={"lambda": lam, "stepsize": eta, "g_param": None},
            data_fidelity=dinv.optim.data_fidelity.L2(), prior=prior, jacobian_free=True,
            **options)
    else:
        model = dinv.optim.GD(data_fidelity=dinv.optim.data_fidelity.L2(), prior=prior,
                              lambda_reg=lam, stepsize=eta,
                              DEQ=dinv.optim.DEQConfig(jacobian_free=True), **options)
    return model, physics


def train_deepinv(model, physics, X, y, X_test, y_test, *, epochs, batch_size, lr, seed,
                  counter):
    """Plain PyTorch training loop; returns per-epoch wall and CPU seconds, evaluations, PSNR."""
    import numpy as np
    import torch
    from implicit_inverse.metrics import psnr
    data = torch.utils.data.TensorDataset(torch.from_numpy(X[:, None]),
                                          torch.from_numpy(y[:, None]))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_function = torch.nn.MSELoss()
    history = []
    for _ in range(epochs):
        model.train()
        counter[0] = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for measurement, clean in loader:
            optimizer.zero_grad()
            loss = loss_function(model(measurement, physics), clean)
            loss.backward()
            optimizer.step()
        history.append({"dur": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                        "evaluations": counter[0] / len(X)})
    model.eval()
    with torch.no_grad():
        prediction = torch.cat([model(torch.from_numpy(X_test[i:i + 64, None]), physics)
                                for i in range(0, len(X_test), 64)])
    return history, psnr(y_test, np.asarray(prediction[:, 0]))


def train_ours(estimator, X, y, X_test, y_test, *, epochs, counter_network, counter):
    """Epoch by epoch with ``partial_fit``; per-epoch wall (skorch ``dur``) and CPU seconds."""
    history = []
    for _ in range(epochs):
        counter[0] = 0
        cpu = time.process_time()
        estimator.partial_fit(X, y)
        if not history:  # the first call built the network: hook its copy of N
            _count_calls(counter_network(estimator), counter)
            # the first epoch ran before the hook existed: count it from the solver stats
            counter[0] = (estimator.history[-1, "fp_iter"] + 1) * len(X)
        history.append({"dur": estimator.history[-1, "dur"], "cpu": time.process_time() - cpu,
                        "evaluations": counter[0] / len(X)})
    return history, estimator.score(X_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default 5, quick 1")
    parser.add_argument("--n-patches", type=int, default=None, help="default 176, quick 0")
    parser.add_argument("--n-train", type=int, default=None, help="quick: 32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=1e-2, help="Tikhonov weight (alpha, lam)")
    parser.add_argument("--eta", type=float, default=1.0, help="step size of the plain map")
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--eps", type=float, default=1e-6,
                        help="deepinv Anderson regularization (absolute)")
    parser.add_argument("--api", choices=["gd", "builder"], default="gd")
    parser.add_argument("--no-defaults-row", action="store_true",
                        help="skip the row of deepinv with its own solver defaults")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import deepinv
    except ImportError:
        print("peer: deepinv is not installed (pip install \"deepinv>=0.5,<0.6\"); skipped")
        return 0
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

    quick = args.quick
    epochs = args.epochs or (1 if quick else 5)
    n_patches = args.n_patches if args.n_patches is not None else (0 if quick else 176)
    n_train = args.n_train or (32 if quick else None)
    operator, X, y, X_test, y_test = deblur_problem(n_patches, seed=args.seed)
    if n_train:
        X, y = X[:n_train], y[:n_train]
    print(machine_line(args.threads))
    print(f"deepinv {deepinv.__version__} ({args.api} API); {len(X)} training images 32x32, "
          f"batch {args.batch_size}, {epochs} epochs, Adam lr {args.lr}, lam {args.lam}, eta "
          f"{args.eta}, Anderson m=5, tol {args.tol}, max_iter {args.max_iter}\n")

    torch.manual_seed(args.seed)
    network = DnCNN(depth=5, width=24)
    rows = []

    common = dict(operator=operator, lam=args.lam, noise_std=0.0, augment=False,
                  gradient="jfb", solver="anderson", max_iter=args.max_iter, tol=args.tol,
                  batch_size=args.batch_size, lr=args.lr, optimizer=torch.optim.Adam,
                  random_state=args.seed, n_threads=args.threads, max_epochs=1)
    variants = {
        "implicit_inverse (same map)": ImplicitDeblurRegressor(
            regularizer=TikhonovPlusNetwork(copy.deepcopy(network), alpha=args.lam,
                                            learn_alpha=False),
            precondition=False, learn_step=False, eta=args.eta, **common),
        "implicit_inverse (default map)": ImplicitDeblurRegressor(
            regularizer=TikhonovPlusNetwork(copy.deepcopy(network), alpha=args.lam,
                                            learn_alpha=False), **common),
    }
    results = {}
    for name, estimator in variants.items():
        counter = [0]
        history, score = train_ours(
            estimator, X, y, X_test, y_test, epochs=epochs, counter=counter,
            counter_network=lambda est: est.net_.module_.layer.map.regularizer.network)
        results[name] = (history, score)

    peers = {"deepinv": False}
    if not args.no_defaults_row:
        peers["deepinv, its solver defaults"] = True
    for name, solver_defaults in peers.items():
        counter = [0]
        deepinv_network = copy.deepcopy(network)
        model, physics = build_deepinv(operator, deepinv_network, lam=args.lam, eta=args.eta,
                                       max_iter=args.max_iter, tol=args.tol, eps=args.eps,
                                       api=args.api, solver_defaults=solver_defaults)
        _count_calls(deepinv_network, counter)
        results[name] = train_deepinv(model, physics, X, y, X_test, y_test, epochs=epochs,
                                      batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                      counter=counter)
    reference = sum(e["dur"] for e in results["deepinv"][0]) / epochs
    for name, (history, score) in results.items():
        seconds = sum(e["dur"] for e in history) / epochs
        rows.append([name, f"{seconds:.2f}", f"{sum(e['cpu'] for e in history) / epochs:.2f}",
                     f"{seconds / reference:.2f}",
                     f"{sum(e['evaluations'] for e in history) / epochs:.1f}",
                     f"{score:.2f}"])
    print(markdown_table(["model", "s/epoch", "CPU s/epoch", "time vs deepinv",
                          "N evals /sample/epoch", f"test PSNR @{epochs} ep"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
