"""Saving and loading estimators: one file with the hyperparameters, the fitted state and weights.

``save(estimator, path)`` writes a single file (``torch.save`` format) holding
``estimator.get_params(deep=False)``, every fitted attribute (``net_`` with its weights, optimizer
state and history, ``operator_``, ``lam_``, ...) and the estimator's class. The file is written to
a temporary file in the same folder and then moved over ``path`` with :func:`os.replace`, so a
failure while writing (a full disk, an unpicklable regularizer, an interrupt) never truncates or
corrupts an existing model file. ``save(estimator, path, metadata={...})`` also stores a small
dict of plain values (how the model was made: the command line stores its data set, kernel and
seed there), read back by :func:`read`.

The warm starts of training (``reuse_fixed_points``: the ``FixedPointCache`` of the network, one
image per training sample, most of the file's size) are not saved: the file holds an empty cache
in its place; nor are the last batch's fixed points and solver statistics. ``predict`` never
uses them, and continued training (``warm_start=True`` or ``partial_fit``) makes a fresh cache
for its images, so its first epoch starts its solves from the default starting points and later
epochs warm-start again. Checkpoints (skorch ``Checkpoint``, for resuming a run exactly) keep the
cache.

``load(path)`` rebuilds the estimator. A model trained on a GPU loads on a machine without CUDA:
every tensor is mapped to the CPU, and a ``device`` hyperparameter naming CUDA is replaced by
``"cpu"`` (with a warning) so that ``predict``, ``partial_fit`` and refits work there.

Both are also available as :meth:`ImplicitRegressor.save` and the class method
:meth:`ImplicitRegressor.load`.

.. warning::
   Model files are pickles (they hold the regularizer module and the operator as Python
   objects): load only files you trust, as with :mod:`pickle`.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from implicit_inverse import ImplicitDeblurRegressor
>>> est = ImplicitDeblurRegressor(eta=0.5)
>>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
>>> est.save(path)
>>> ImplicitDeblurRegressor.load(path).get_params()["eta"]
0.5
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import NamedTuple

import torch

from ..data.files import atomic_write
from .training import FixedPointCache

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFile", "atomic_write", "load", "read", "save",
           "use_available_device"]

FORMAT = "implicit_inverse.estimator"
FORMAT_VERSION = 1


class ModelFile(NamedTuple):
    """What :func:`read` returns: the estimator and the metadata stored beside it."""

    estimator: object
    metadata: dict


def save(estimator, path, *, metadata=None):
    """Write ``estimator`` (fitted or not) to ``path``, atomically.

    Parameters
    ----------
    estimator : ImplicitRegressor or another scikit-learn estimator
    path : str or os.PathLike
        File to write. An existing file is replaced only once the new one is complete.
    metadata : dict or None, default None
        Plain values (str, numbers, lists, dicts) stored beside the estimator, for :func:`read`.

    Raises
    ------
    IsADirectoryError
        ``path`` is a folder.
    Exception
        Whatever prevented writing (the existing file, if any, is left as it was).

    Notes
    -----
    Under ``torch.distributed`` (``torchrun``) only rank 0 writes; the other processes return
    at once without writing or waiting (their models are the same).
    """
    from .. import __version__
    from .distributed import is_main_process

    if not is_main_process():
        return

    params = estimator.get_params(deep=False)
    with _without_training_state(estimator):
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "class": type(estimator),
            "params": params,
            # fitted attributes (ending in "_") and any private state, but not the parameters
            "attributes": {name: value for name, value in vars(estimator).items()
                           if name not in params},
            "metadata": dict(metadata or {}),
        }
        atomic_write(path, lambda handle: torch.save(payload, handle))


@contextlib.contextmanager
def _without_training_state(estimator):
    """Leave out what only the last training or prediction call needs, for a save: the
    warm-start cache (an empty one stands in) and the last batch's fixed points and solver
    statistics (``module_.last_solution``, ``module_.layer.last_stats``)."""
    module = getattr(getattr(estimator, "net_", None), "module_", None)
    if module is None:
        yield
        return
    saved = {}
    cache = getattr(module, "cache", None)
    if isinstance(cache, FixedPointCache):
        saved[(module, "cache")] = cache
        # an empty cache matches no data: continued training makes a fresh one
        module.cache = FixedPointCache(0, tuple(cache.points.shape[1:]),
                                       device=cache.points.device)
    for owner, name in ((module, "last_solution"), (getattr(module, "layer", None), "last_stats")):
        if getattr(owner, name, None) is not None:
            saved[(owner, name)] = getattr(owner, name)
            setattr(owner, name, None)
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)


def load(path, expected_class=None):
    """Read an estimator written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    expected_class : type, optional
        Raise ``TypeError`` unless the stored estimator is an instance of this class.

    Returns
    -------
    estimator
        With the stored hyperparameters and, when it was fitted, its fitted attributes.
        Tensors are mapped to the CPU when CUDA is not available.

    Raises
    ------
    ValueError
        The file is not a model file written by :func:`save`, or by a newer format.
    TypeError
        The stored estimator is not an instance of ``expected_class``.
    """
    return read(path, expected_class).estimator


def read(path, expected_class=None):
    """Read an estimator written by :func:`save` and the metadata stored with it.

    Parameters
    ----------
    path : str or os.PathLike
    expected_class : type, optional
        Raise ``TypeError`` unless the stored estimator is an instance of this class.

    Returns
    -------
    ModelFile
        ``(estimator, metadata)``; ``metadata`` is ``{}`` when none was stored.

    Raises
    ------
    ValueError, TypeError
        As for :func:`load`.
    """
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # noqa: BLE001 - not a torch file, truncated, ...
        raise ValueError(f"{os.fspath(path)!r} is not a model file written by "
                         f"implicit_inverse save(): {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a model file written by implicit_inverse "
                         "save() (no format marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} was written by implicit_inverse "
            f"{payload.get('library_version')} in format version {payload['format_version']}; "
            f"this version reads format {FORMAT_VERSION} at most: upgrade implicit_inverse")
    cls = payload["class"]
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{os.fspath(path)!r} holds a {cls.__name__}, not a "
                        f"{expected_class.__name__}")
    estimator = cls(**payload["params"])
    vars(estimator).update(payload["attributes"])
    use_available_device(estimator)
    return ModelFile(estimator, dict(payload.get("metadata") or {}))


def use_available_device(estimator):
    """Replace a ``device`` hyperparameter naming CUDA by ``"cpu"`` when CUDA is unavailable.

    The fitted network itself is mapped by skorch when it is unpickled; this keeps the
    hyperparameter consistent with it, so that ``partial_fit`` and refits work on this machine.
    """
    device = getattr(estimator, "device", None)
    if device is None or torch.cuda.is_available():
        return
    if str(device).startswith("cuda"):
        warnings.warn(f"the model was saved with device={str(device)!r} but CUDA is not "
                      "available here: it is loaded on the CPU and device is set to 'cpu'",
                      UserWarning, stacklevel=3)
        estimator.device = "cpu"
