"""``fit`` on a torch Dataset of clean images, streamed batch by batch (see
:meth:`ImplicitRegressor.fit` and :mod:`~implicit_inverse.training.streaming`)."""

from __future__ import annotations

import torch

from .._image_regressor import check_channels
from .._runtime import float32_default, torch_threads
from .._validation import warn_if_out_of_range
from ..training import distributed, streaming


def fit_dataset(estimator, dataset, y, epochs):
    """Train ``estimator`` on ``dataset``, measured through its operator batch by batch.

    Parameters
    ----------
    estimator : ImplicitRegressor
    dataset : torch.utils.data.Dataset
        Of clean images.
    y : None
        Anything else is refused.
    epochs : int or None
        None for ``fit`` (``max_epochs``), 1 for ``partial_fit``.

    Returns
    -------
    estimator
    """
    if y is not None:
        raise ValueError("y must be None when X is a torch Dataset: its items are the clean "
                         "images, measured through the operator during training")
    device, continuing = estimator._fit_start(epochs)
    if distributed.world()[1] > 1:
        raise ValueError("fit on a torch Dataset is not supported under torch.distributed; "
                         "pass arrays X, y (each process trains on its shard)")
    if not continuing and isinstance(estimator.noise_std, str):
        raise ValueError("noise_std must be a float when X is a torch Dataset, got "
                         f"{estimator.noise_std!r}: there are no measurements to estimate the "
                         "noise from")
    operator = estimator._fit_operator(continuing)
    needs_sample = not continuing and (estimator.lam == "auto" or estimator.pretrain_epochs)
    clean = streaming.first_items(dataset, streaming.LAM_SAMPLES if needs_sample else 2)
    try:
        operator.output_shape(tuple(clean.shape))
    except ValueError as error:
        raise ValueError(f"dataset images of shape {tuple(clean.shape[1:])} cannot be "
                         f"measured by the operator: {error}") from None
    warn_if_out_of_range(clean, "X")
    with float32_default(), torch_threads(estimator.n_threads):
        with torch.no_grad():
            measurements = operator(clean)
        if continuing:
            check_channels(measurements, estimator.n_channels_)
            # warm starts are indexed by sample: a streamed dataset has none to match
            estimator.net_.module_.cache = None
        else:
            estimator._initialise(measurements, clean, operator, device,
                             reuse_fixed_points=False)
        estimator.net_.partial_fit(streaming.MeasuredDataset(dataset, operator), None,
                                   epochs=estimator.max_epochs if epochs is None else epochs)
    estimator.n_iter_ = len(estimator.net_.history)
    return estimator
