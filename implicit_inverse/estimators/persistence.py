"""Saving and loading estimators: one file with the hyperparameters, the fitted state and weights.

``save(estimator, path)`` writes a single file (``torch.save`` format) holding
``estimator.get_params(deep=False)``, every fitted attribute (``net_`` with its weights, optimizer
state and history, ``operator_``, ``lam_``, ...) and the estimator's class. The file is written to
a temporary file in the same folder and then moved over ``path`` with :func:`os.replace`, so a
failure while writing (a full disk, an unpicklable regularizer, an interrupt) never truncates or
corrupts an existing model file.

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
import uuid
import warnings

import torch

FORMAT = "implicit_inverse.estimator"
FORMAT_VERSION = 1


def save(estimator, path):
    """Write ``estimator`` (fitted or not) to ``path``, atomically.

    Parameters
    ----------
    estimator : ImplicitRegressor or another scikit-learn estimator
    path : str or os.PathLike
        File to write. An existing file is replaced only once the new one is complete.

    Raises
    ------
    IsADirectoryError
        ``path`` is a folder.
    Exception
        Whatever prevented writing (the existing file, if any, is left as it was).
    """
    from .. import __version__

    params = estimator.get_params(deep=False)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "class": type(estimator),
        "params": params,
        # fitted attributes (ending in "_") and any private state, but not the parameters
        "attributes": {name: value for name, value in vars(estimator).items()
                       if name not in params},
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))


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
    return estimator


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


def atomic_write(path, write):
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable taking a binary file handle

    Notes
    -----
    The temporary file is created in the same folder (so :func:`os.replace` is an atomic rename)
    with the permissions a new file would get; it is removed if anything fails, and ``path`` is
    then left untouched.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path must be a file name, got the folder {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
