"""scikit-learn's estimator checks on every estimator of the package.

The fitting checks feed 2-D ``X`` of shape (n, F) with targets shaped (n,) or, for estimators
tagged multi-output like ours, (n, 1) (one check uses (n, 5)). An image-to-image regressor needs
``y`` to hold one clean image per sample that the operator maps to the sample's row of ``X``, so
those checks fail in ``fit`` with a ValueError about the shape of ``y``; they are listed in
``expected_failed_checks`` with that reason, and ``test_expected_failures_are_about_targets``
verifies that each listed check fails for exactly that reason and that no other check fails.
Every other check runs and passes.
"""

import functools
import re

import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from implicit_inverse import (DirectInverseRegressor, ImplicitDeblurRegressor,
                              ImplicitInpaintingRegressor, ImplicitRegressor,
                              ImplicitSuperResolutionRegressor, TikhonovRegressor,
                              TotalVariationRegressor, WienerRegressor)
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, Identity, gaussian_kernel


def _tiny_regularizer():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TikhonovPlusNetwork(DnCNN(depth=2, width=4), alpha=0.01)


TINY = dict(max_epochs=1, max_iter=5, batch_size=16, random_state=0)

# Operators that accept the checks' data: rows of F features are images (1, sqrt F, sqrt F)
# when F is a perfect square, else (1, 1, F), so blurs must fit a one-row image.
ESTIMATORS = [
    ImplicitRegressor(Identity(), regularizer=_tiny_regularizer(), **TINY),
    ImplicitDeblurRegressor(kernel_size=1, regularizer=_tiny_regularizer(), **TINY),
    ImplicitDeblurRegressor(Blur(gaussian_kernel(3, 0.8), boundary="zero"),
                            regularizer=_tiny_regularizer(), **TINY),
    ImplicitSuperResolutionRegressor(factor=1, regularizer=_tiny_regularizer(), **TINY),
    ImplicitInpaintingRegressor(fraction=0.5, regularizer=_tiny_regularizer(), **TINY),
    TikhonovRegressor(Identity()),
    TikhonovRegressor(Blur(gaussian_kernel(3, 0.8), boundary="zero")),
    DirectInverseRegressor(Identity()),
    WienerRegressor(Identity()),
    WienerRegressor(Blur(gaussian_kernel(3, 0.8), boundary="zero")),
    TotalVariationRegressor(Identity()),
    TotalVariationRegressor(Blur(gaussian_kernel(3, 0.8), boundary="zero")),
]

TARGET_REASON = ("image-to-image regressor: y must hold one clean image per sample, shaped so "
                 "that the operator maps it to the sample's row of X; this check fits with "
                 "{target} while X is {inputs}")

# check name -> the targets and inputs it fits with
_TARGET_SHAPED_CHECKS = {
    "check_fit_score_takes_y": ("y (n, 1)", "(n, 3)"),
    "check_estimators_overwrite_params": ("y (n, 1)", "(n, 2)"),
    "check_dont_overwrite_parameters": ("y (n, 1)", "(n, 3)"),
    "check_estimators_fit_returns_self": ("y (n, 1)", "(n, 2)"),
    "check_readonly_memmap_input": ("y (n, 1)", "(n, 2)"),
    "check_n_features_in_after_fitting": ("y (n, 1)", "(n, 4)"),
    "check_positive_only_tag_during_fit": ("iris targets (150, 1)", "(150, 4)"),
    "check_estimators_dtypes": ("y (n, 1)", "(n, 5)"),
    "check_dtype_object": ("y (n, 1)", "(n, 10)"),
    "check_pipeline_consistency": ("y (n, 1)", "(n, 3)"),
    "check_estimators_nan_inf": ("y (n, 1)", "(n, 3)"),
    "check_estimators_pickle": ("y (n, 1)", "(n, 3)"),
    "check_f_contiguous_array_estimator": ("y (n, 1)", "(n, 3)"),
    "check_regressors_train": ("y (n, 1)", "(n, 10)"),
    "check_regressor_data_not_an_array": ("y (n, 1)", "(n, 10)"),
    "check_regressor_multioutput": ("y (n, 5)", "(n, 10)"),
    "check_regressors_no_decision_function": ("y (n, 1)", "(n, 4)"),
    "check_regressors_int": ("integer y (n, 1)", "(n, 10)"),
    "check_methods_sample_order_invariance": ("y (n, 1)", "(n, 3)"),
    "check_methods_subset_invariance": ("y (n, 1)", "(n, 3)"),
    "check_dict_unchanged": ("y (n, 1)", "(n, 3)"),
    "check_fit_idempotent": ("y (n, 1)", "(n, 2)"),
    "check_fit_check_is_fitted": ("y (n, 1)", "(n, 2)"),
    "check_n_features_in": ("y (n, 1)", "(n, 2)"),
    "check_fit2d_predict1d": ("y (n, 1)", "(n, 3)"),
}
# only estimators with partial_fit / n_iter_ run these
_IMPLICIT_ONLY = {
    "check_estimators_partial_fit_n_features": ("y (n, 1)", "(n, 2)"),
    "check_non_transformer_estimators_n_iter": ("iris targets (150, 1)", "(150, 4)"),
}


def expected_failed_checks(estimator):
    """Checks that fit with targets shaped unlike images that X measures, with the reason."""
    checks = dict(_TARGET_SHAPED_CHECKS)
    if isinstance(estimator, ImplicitRegressor):
        checks.update(_IMPLICIT_ONLY)
    return {name: TARGET_REASON.format(target=target, inputs=inputs)
            for name, (target, inputs) in checks.items()}


def _check_name(check):
    while hasattr(check, "__wrapped__"):
        check = check.__wrapped__
    return check.func.__name__ if isinstance(check, functools.partial) else check.__name__


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks,
                         xfail_strict=True)
def test_sklearn_compatible_estimator(estimator, check):
    reason = expected_failed_checks(estimator).get(_check_name(check))
    if reason is None:
        check(estimator)
        return
    try:
        check(estimator)
    except Exception:  # noqa: BLE001 - test_expected_failures_are_about_targets checks why
        failed = True
    else:
        failed = False  # the strict xfail mark turns this into a failure
    if failed:
        # xfail here, outside the except block: pytest would otherwise spend about half a
        # second per check rendering the long traceback through estimator_checks.py
        pytest.xfail(reason)


# what fit raises on such targets: "y has 1 features per row, which cannot be images of ..."
TARGET_ERROR = re.compile(r"y has \d+ features per row, which cannot be images of shape")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda est: f"{type(est).__name__}"
                         f"({getattr(est, 'operator', None)!r})")
def test_expected_failures_are_about_targets(estimator):
    results = check_estimator(estimator, on_fail=None)
    failed = {}
    for result in results:
        if result["status"] != "failed":
            continue
        error = result["exception"]
        # some checks wrap fit's error in an AssertionError; the cause is fit's ValueError
        cause = error.__cause__ if error.__cause__ is not None else error
        failed.setdefault(result["check_name"], []).append(cause)
    assert set(failed) == set(expected_failed_checks(estimator)), (
        set(failed) ^ set(expected_failed_checks(estimator)))
    for name, errors in failed.items():
        for error in errors:
            assert isinstance(error, ValueError) and TARGET_ERROR.search(str(error)), (
                name, repr(error))
    assert sum(result["status"] == "passed" for result in results) >= 20
