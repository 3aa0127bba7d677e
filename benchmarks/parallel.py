"""``GridSearchCV(ImplicitDeblurRegressor(...), n_jobs=k)``: speed-up and thread oversubscription.

A grid of ``--grid`` learning rates x 2 folds (each fit: ``--epochs`` epochs on ``--n-train``
faces, 32x32, 9x9 Gaussian blur) is searched with joblib (loky processes) in several settings:

- ``n_jobs=1`` with the estimator's ``n_threads=1`` (the reference);
- ``n_jobs=1`` with ``n_threads=2`` (one fit at a time using both cores);
- ``n_jobs=2`` with ``n_threads=1`` (one fit per core: the recommended setting);
- ``n_jobs=2`` with ``n_threads=2`` (each of the two fits asks for both cores: 4 threads on 2
  cores, oversubscribed).

``--quick`` runs the first and third only.

Reported: wall seconds, speed-up over the reference, the best parameters and score, whether
every cross-validated score equals the reference's, and the torch thread count that a loky
worker starts with. The workers are started (and warmed up with a tiny fit) before the timings,
so worker start-up is not counted; the parent's torch thread count is set by
``--threads`` and restored by the estimator after each fit.
"""

from __future__ import annotations

import argparse
import sys
import time

from run import deblur_problem, machine_line, markdown_table, quiet_warnings


def _warm_up(X, y):
    """Run in a joblib worker: a tiny fit (imports, first-call costs); its torch threads."""
    import warnings

    import torch
    from implicit_inverse import ImplicitDeblurRegressor
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImplicitDeblurRegressor(max_epochs=1, batch_size=4, max_iter=3, lam=0.01).fit(X, y)
    return threads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the parent")
    parser.add_argument("--epochs", type=int, default=None, help="default 3, quick 1")
    parser.add_argument("--n-train", type=int, default=None, help="default 80, quick 24")
    parser.add_argument("--grid", default="1e-3,3e-3", help="learning rates searched")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from joblib import Parallel, delayed
    from sklearn.model_selection import GridSearchCV
    torch.set_num_threads(args.threads)
    quiet_warnings()
    from implicit_inverse import ImplicitDeblurRegressor

    quick = args.quick
    epochs = args.epochs or (1 if quick else 3)
    n_train = args.n_train or (24 if quick else 80)
    operator, X, y, _, _ = deblur_problem(0, seed=args.seed)
    X, y = X[:n_train], y[:n_train]
    grid = {"lr": [float(v) for v in args.grid.split(",")]}
    worker_threads = sorted(set(Parallel(n_jobs=2)(delayed(_warm_up)(X[:4], y[:4])
                                                   for _ in range(6))))
    print(machine_line(args.threads))
    print(f"GridSearchCV over lr={grid['lr']}, cv=2, {epochs} epoch(s) on {n_train} images; "
          f"loky workers start with torch threads {worker_threads} (joblib limits native "
          f"thread pools in its workers to cpu_count // n_jobs)\n")

    settings = [(1, 1), (2, 1)] if quick else [(1, 1), (1, 2), (2, 1), (2, 2)]
    results = {}
    for n_jobs, n_threads in settings:
        estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=epochs, batch_size=16,
                                            random_state=args.seed, n_threads=n_threads)
        start = time.perf_counter()
        search = GridSearchCV(estimator, grid, cv=2, n_jobs=n_jobs).fit(X, y)
        results[n_jobs, n_threads] = (time.perf_counter() - start, search)
    reference_seconds, reference = results[1, 1]
    rows = []
    for (n_jobs, n_threads), (seconds, search) in results.items():
        same = np.array_equal(search.cv_results_["mean_test_score"],
                              reference.cv_results_["mean_test_score"])
        close = np.allclose(search.cv_results_["mean_test_score"],
                            reference.cv_results_["mean_test_score"], rtol=0, atol=1e-4)
        rows.append([n_jobs, n_threads, f"{seconds:.1f}", f"{reference_seconds / seconds:.2f}",
                     search.best_params_, f"{search.best_score_:.3f}",
                     "identical" if same else ("within 1e-4 dB" if close else "differ")])
    print(markdown_table(["n_jobs", "n_threads", "wall s", "speed-up", "best params",
                          "best PSNR", "CV scores vs reference"], rows))
    print(f"\nparent torch threads after the searches: {torch.get_num_threads()} "
          f"(set to {args.threads})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
