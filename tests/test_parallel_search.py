"""GridSearchCV over an implicit estimator in parallel (joblib) gives the sequential result."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.datasets import load_faces
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements


def _tiny_problem():
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = load_faces(size=16, n=12)
    return operator, make_measurements(clean, operator, 0.01, random_state=0), clean


@pytest.mark.slow  # starts two joblib worker processes (each imports torch)
def test_grid_search_n_jobs_2_matches_n_jobs_1():
    operator, X, y = _tiny_problem()
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=1, batch_size=4,
                                        max_iter=10, random_state=0, n_threads=1)
    grid = {"lr": [1e-3, 1e-2]}
    threads_before = torch.get_num_threads()

    sequential = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X, y)
    parallel = GridSearchCV(estimator, grid, cv=2, n_jobs=2).fit(X, y)

    assert parallel.best_params_ == sequential.best_params_
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               sequential.cv_results_["mean_test_score"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(parallel.best_score_, sequential.best_score_, rtol=0, atol=1e-6)
    assert np.isfinite(parallel.cv_results_["mean_test_score"]).all()
    # n_threads is applied during fit and predict only: the caller's setting is restored
    assert torch.get_num_threads() == threads_before


@pytest.mark.slow  # starts a local Dask cluster of two worker processes
def test_grid_search_on_dask_matches_n_jobs_1():
    """``GridSearchCV`` through joblib's Dask backend gives the sequential ``cv_results_``."""
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (the "
                                      "'dask' extra)")
    from joblib import parallel_config

    operator, X, y = _tiny_problem()
    estimator = ImplicitDeblurRegressor(operator=operator, max_epochs=1, batch_size=4,
                                        max_iter=10, random_state=0, n_threads=1)
    grid = {"eta": [0.5, 1.0], "noise_std": [0.005, 0.01]}
    sequential = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, parallel_config(backend="dask"):
        on_dask = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X, y)
        workers = client.run(lambda: torch.get_num_threads())  # the estimator restored them
    assert on_dask.best_params_ == sequential.best_params_
    for key in ("mean_test_score", "std_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], sequential.cv_results_[key],
                                      err_msg=key)
    assert on_dask.cv_results_["params"] == sequential.cv_results_["params"]
    assert np.isfinite(on_dask.cv_results_["mean_test_score"]).all()
    assert len(workers) == 2
