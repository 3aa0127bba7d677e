"""Forward iteration vs Anderson acceleration at prediction time, on trained and untrained models.

Models (``ImplicitDeblurRegressor`` on ``train_test_faces`` 32x32, 9x9 Gaussian blur, noise
0.01, default settings unless said):

- ``trained``: fitted for ``--epochs`` epochs (Tikhonov weight ``lam_`` found by ``"auto"``);
- ``untrained``: regularizer ``TikhonovPlusNetwork(DnCNN(depth=5, width=24), alpha=lam_)`` whose
  output layer gets small random weights (std ``--output-std``, 0.01) instead of zeros (with
  zeros the untrained map is the Tikhonov map, whose fixed point is the Tikhonov starting point:
  one iteration), fitted for one epoch at ``lr=1e-12`` so its parameters stay at their
  initialisation;
- ``untrained, no precond.``: the same with ``precondition=False`` (plain gradient step,
  ``eta=1``), whose linear part contracts slowly: the case Anderson is for.

Each model's fixed-point solve at prediction time is run with ``solver="forward"`` and
``solver="anderson"`` (memory 5) on the same weights, with a high iteration cap, from two
starting points: the estimator's (the Tikhonov solution) and a cold one (``A^T d``), through
``est.predict_with_stats(X_test)``. Reported: iterations to ``tol`` (mean and max over
samples), share converged, wall and CPU seconds of ``predict`` and test PSNR.

Switching the solver and starting point of a fitted model goes through the fitted layer
(``est.net_.module_.layer.solver``, ``.max_iter``, ``.tol``, ``.map.initializer``):
``set_params(solver=...)`` only takes effect at the next ``fit``.
"""

from __future__ import annotations

import argparse
import sys
import time

from run import deblur_problem, machine_line, markdown_table, quiet_warnings


def predict_with(estimator, X, solver, max_iter, tol, start):
    """``estimator.predict_with_stats(X)`` with another solver, cap, tol and start."""
    from implicit_inverse.equilibrium import get_solver
    layer = estimator.net_.module_.layer
    saved = layer.solver, layer.max_iter, layer.tol, layer.map.initializer
    layer.solver, layer.max_iter, layer.tol = get_solver(solver), max_iter, tol
    layer.map.initializer = start
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        images, stats = estimator.predict_with_stats(X)
        return images, stats, time.perf_counter() - wall, time.process_time() - cpu
    finally:
        layer.solver, layer.max_iter, layer.tol, layer.map.initializer = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default 8, quick 1")
    parser.add_argument("--n-patches", type=int, default=None, help="default 176, quick 0")
    parser.add_argument("--tols", default=None, help="comma-separated (default 1e-4,1e-6)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="iteration cap of the solves (default 1000, quick 100)")
    parser.add_argument("--output-std", type=float, default=0.01,
                        help="std of the untrained DnCNN's output layer weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor
    from implicit_inverse.metrics import psnr
    from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

    quick = args.quick
    epochs = args.epochs or (1 if quick else 8)
    n_patches = args.n_patches if args.n_patches is not None else (0 if quick else 176)
    tols = [float(t) for t in (args.tols or ("1e-4" if quick else "1e-4,1e-6")).split(",")]
    max_iter = args.max_iter or (100 if quick else 1000)
    operator, X, y, X_test, y_test = deblur_problem(n_patches, seed=args.seed)
    if quick:
        X, y = X[:32], y[:32]
    print(machine_line(args.threads))
    print(f"{len(X)} training images, {len(X_test)} test images (32x32); solves capped at "
          f"{max_iter} iterations\n")

    common = {"operator": operator, "random_state": args.seed, "n_threads": args.threads}
    trained = ImplicitDeblurRegressor(max_epochs=epochs, **common).fit(X, y)

    def untrained(**options):
        torch.manual_seed(args.seed)
        network = DnCNN(depth=5, width=24)
        torch.nn.init.normal_(network.body[-1].weight, std=args.output_std)
        regularizer = TikhonovPlusNetwork(network, alpha=trained.lam_)
        return ImplicitDeblurRegressor(regularizer=regularizer, lam=trained.lam_, max_epochs=1,
                                       lr=1e-12, **options, **common).fit(X, y)

    models = {f"trained ({epochs} ep)": trained, "untrained": untrained(),
              "untrained, no precond.": untrained(precondition=False)}
    rows = []
    for name, estimator in models.items():
        for start, start_name in (("tikhonov", "Tikhonov"), ("adjoint", "A^T d")):
            for tol in tols:
                for solver in ("forward", "anderson"):
                    images, stats, wall, cpu = predict_with(estimator, X_test, solver,
                                                            max_iter, tol, start)
                    iterations = stats.iterations.float()
                    rows.append([name, start_name, solver, f"{tol:g}",
                                 f"{float(iterations.mean()):.1f}", int(iterations.max()),
                                 f"{100 * float(stats.converged.float().mean()):.0f}%",
                                 f"{wall:.2f}", f"{cpu:.2f}", f"{psnr(y_test, images):.2f}"])
    print(markdown_table(["model", "start", "solver", "tol", "mean iter", "max iter", "converged",
                          "predict s", "CPU s", "PSNR"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
