"""Model files: a JSON header and tensors, data only, read without running code.

``save(estimator, path)`` writes with :func:`torch.save` the plain dict ``{"format": FORMAT,
"format_version": 3, "header": <JSON text>, "tensors": {name: tensor}, "optimizer": <the
optimizer's state dict> or None}``; ``load(path)`` reads it with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers.

The header holds the estimator's class name, ``get_params(deep=False)``, its fitted attributes
(``noise_std_``, ``lam_``, ``prior_sigma_``, ``spec_``: the :class:`ModelSpec` as plain values,
the operator ``operator_`` as its class and constructor arguments, a kernel or mask as a tensor),
the ``metadata`` given to :func:`save` and, for a fitted implicit model, its network: the prior's
architecture (see :mod:`implicit_inverse.networks.architectures`), the shape of its warm starts,
the training history. The tensors hold the module's ``state_dict`` (``net.state.*``) and the
arrays among the values. Loading rebuilds the module through
:func:`~implicit_inverse.training.recipe.build_model` from ``spec_`` and loads the state into it:
the file never depends on how the package's classes build their layers. Values that are not
JSON are tagged dicts (:mod:`._values`) whose classes come from a fixed allow-list, looked up by
name, never imported. A file that names anything else, or is truncated or altered, is refused
with :class:`ModelFileError`, naming the file.

Parameters of the user's own classes (a custom regularizer module, operator, solver, skorch
callbacks, a ``RandomState``) are stored as their class name (and a module's weights), and
:func:`load` asks for them again: ``load(path, params={"regularizer": MyNet()})`` (the module
passed is copied and gets the saved weights). ``callbacks`` not passed again are None, with a
warning (they hold code and file paths). Hooks or layers added to a fitted network by hand are
not stored: the file holds what the recipe builds and its weights.

Not saved: the warm starts of training (one image per training sample: the loaded network has an
empty cache, continued training makes a fresh one; skorch ``Checkpoint`` files keep them), the
last batch's fixed points and solver statistics.

A failed save never truncates or replaces an existing file (the file is written beside ``path``
and then moved over it). A model trained on
a GPU loads without CUDA: tensors are read to the CPU and a ``device`` naming CUDA becomes
``"cpu"`` (with a warning). Files of format 2 (before model files held the recipe) are still
read (:mod:`._format2`); format 1 files are pickles, refused unless ``allow_pickle=True``
(:mod:`._format1`).

Examples
--------
>>> import tempfile, os
>>> from implicit_inverse import ImplicitDeblurRegressor
>>> est = ImplicitDeblurRegressor(eta=0.5)
>>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
>>> est.save(path)
>>> ImplicitDeblurRegressor.load(path).get_params()["eta"]
0.5
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from typing import NamedTuple

import torch

from ..data.files import atomic_write
from ..networks.architectures import describe
from ._format1 import PICKLE_FORMAT_VERSION, is_pickled_model, pickled_format_message
from ._values import (Decoder, Encoder, ModelFileError, NotData, check_supplied,
                      estimator_classes, first_line, unsaved_params)
from ._network import restore_net

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFile", "ModelFileError", "atomic_write", "load",
           "read", "save", "use_available_device"]

FORMAT = "implicit_inverse.estimator"
FORMAT_VERSION = 3
"""Version of the format written by :func:`save` (2 is still read; 1 was a pickle)."""
READ_VERSIONS = (2, 3)


class ModelFile(NamedTuple):
    """What :func:`read` returns: the estimator and the metadata stored beside it."""

    estimator: object
    metadata: dict

    def save(self, path):
        """Write the estimator and its metadata to ``path`` in the current format.

        Parameters
        ----------
        path : str or os.PathLike
        """
        save(self.estimator, path, metadata=self.metadata)


def save(estimator, path, *, metadata=None):
    """Write ``estimator`` (fitted or not) to ``path``, atomically, as data only.

    Parameters
    ----------
    estimator : one of implicit_inverse's estimators
        :class:`ImplicitRegressor` and its task subclasses, or a classical baseline.
    path : str or os.PathLike
        File to write. An existing file is replaced only once the new one is complete.
    metadata : dict or None, default None
        JSON values (str, numbers, bools, None, lists and str-keyed dicts of them) stored beside
        the estimator, for :func:`read`.

    Raises
    ------
    TypeError
        ``estimator`` is not one of the package's estimator classes, ``metadata`` is not JSON,
        or a fitted attribute cannot be stored as data (the message names it).
    IsADirectoryError
        ``path`` is a folder.

    Notes
    -----
    Under ``torch.distributed`` (``torchrun``) only rank 0 writes.
    """
    from .. import __version__
    from ..training.distributed import is_main_process

    if not is_main_process():
        return
    name = type(estimator).__name__
    if estimator_classes().get(name) is not type(estimator):
        raise TypeError(f"cannot save a {type(estimator).__qualname__}: model files hold the "
                        f"estimators of implicit_inverse ({', '.join(estimator_classes())})")
    try:
        metadata = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must hold JSON values (str, numbers, bools, None, lists and "
                        f"dicts): {error}") from None
    params = estimator.get_params(deep=False)
    encoder = Encoder(params)
    header = {"library_version": __version__, "class": name, "params": encoder.params(),
              "attributes": {}, "net": None, "metadata": metadata}
    optimizer, attribute = None, "net_.history"
    try:
        for attribute, value in vars(estimator).items():
            if attribute not in params and attribute != "net_":
                header["attributes"][attribute] = encoder.attribute(attribute, value)
        if "net_" in vars(estimator):
            attribute = "net_.history"
            header["net"], optimizer = _net_entry(estimator.net_, encoder)
    except NotData as error:
        raise TypeError(f"cannot save the {name}: {attribute} holds a {error.kind}, which a "
                        "model file cannot store as data") from None
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "header": json.dumps(header),
               "tensors": encoder.tensors, "optimizer": optimizer}
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _net_entry(net, encoder):
    """The header's ``net`` entry and the optimizer state of a fitted network (the module's
    state goes into ``encoder.tensors``)."""
    module = net.module_
    for name, value in module.state_dict().items():
        if not name.startswith("cache."):
            encoder.tensor(f"net.state.{name}", value)
    cache = module.cache
    entry = {"prior": describe(module.regularizer),
             "cache": None if cache is None else list(cache.points.shape[1:]),
             "frozen": [name for name, parameter in module.named_parameters()
                        if not parameter.requires_grad],
             "hint": net.divergence_hint,
             "history": encoder.encode(net.history_, "net.history"),
             "skipped": int(net.consecutive_skipped_)}
    return entry, net.optimizer_.state_dict()


def load(path, expected_class=None, *, params=None, allow_pickle=False):
    """Read an estimator written by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str or os.PathLike
    expected_class : type, optional
        Raise ``TypeError`` unless the stored estimator is an instance of this class.
    params : dict or None, default None
        Values of the parameters that the file could not store (those of your own classes),
        which it names when they are missing. A module passed is copied and gets the saved
        weights. ``callbacks`` not passed again are None (with a warning).
    allow_pickle : bool, default False
        **Unsafe**: also read a file of format 1 (implicit_inverse 0.1), a pickle that runs
        whatever code it holds. Only for files you trust, to convert them:
        ``read(path, allow_pickle=True).save(new_path)``.

    Returns
    -------
    estimator
        With the stored hyperparameters and, when it was fitted, its fitted attributes and
        network. Tensors are on the CPU when CUDA is not available.

    Raises
    ------
    ModelFileError
        (a ``ValueError``) The file is not a model file, is damaged, is of another format
        version (format 1: the message says how to convert it), names a class outside the
        allow-list, or needs ``params`` that were not passed.
    TypeError
        The stored estimator is not an instance of ``expected_class``, or ``params`` names a
        parameter that the file stores.
    FileNotFoundError, IsADirectoryError, PermissionError
        The file cannot be opened.
    """
    return read(path, expected_class, params=params, allow_pickle=allow_pickle).estimator


def read(path, expected_class=None, *, params=None, allow_pickle=False):
    """Read an estimator written by :func:`save` and the metadata stored with it.

    Parameters
    ----------
    path : str or os.PathLike
    expected_class : type, optional
    params : dict or None, default None
        As for :func:`load`.
    allow_pickle : bool, default False
        As for :func:`load` (unsafe).

    Returns
    -------
    ModelFile
        ``(estimator, metadata)``; ``metadata`` is ``{}`` when none was stored.

    Raises
    ------
    ModelFileError, TypeError, OSError
        As for :func:`load`.
    """
    name = os.fspath(path)
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        reason = ("it holds Python objects, which are never unpickled"
                  if isinstance(error, pickle.UnpicklingError)
                  else first_line(error).split(". ")[0])
        if not is_pickled_model(path, FORMAT):
            raise ModelFileError(f"{name!r} is not a model file written by implicit_inverse "
                                 f"save(), or it is damaged: {reason}") from None
        if not allow_pickle:
            raise ModelFileError(pickled_format_message(name)) from None
        from ._format1 import read_pickled

        return read_pickled(path, expected_class, params)
    version, header, tensors = _check_payload(payload, name)
    cls = estimator_classes().get(header["class"])
    if cls is None:
        raise ModelFileError(f"{name!r} names the estimator class {header['class']!r}, which is "
                             f"not one of implicit_inverse's ({', '.join(estimator_classes())})")
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{name!r} holds a {cls.__name__}, not a {expected_class.__name__}")
    supplied = dict(params or {})
    check_supplied(supplied, unsaved_params(header["params"]), name)
    try:
        if version == 2:
            from ._format2 import read_format2

            return read_format2(cls, header, tensors, name, supplied)
        decoder = Decoder(name, tensors, supplied, header["params"])
        estimator = cls(**decoder.params())
        for attribute, value in header["attributes"].items():
            vars(estimator)[attribute] = decoder.attribute(attribute, value)
        use_available_device(estimator)
        if header["net"] is not None:
            estimator.net_ = _restore_net(estimator, header["net"], tensors,
                                          payload.get("optimizer"), decoder)
    except ModelFileError:
        raise
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError,
            RecursionError) as error:  # a value that does not rebuild what it should
        raise ModelFileError(f"{name!r} is a damaged model file: {type(error).__name__}: "
                             f"{first_line(error)}") from None
    return ModelFile(estimator, header["metadata"])


NET_FIELDS = {"prior": (dict, type(None)), "cache": (list, type(None)), "frozen": list,
              "hint": str, "history": dict, "skipped": int}


def _restore_net(estimator, entry, tensors, optimizer, decoder):
    """The fitted network a format-3 ``net`` entry and its tensors describe."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(key), kind)
                                              for key, kind in NET_FIELDS.items()):
        raise ModelFileError(f"{decoder.name!r} is a damaged model file: its network entry "
                             f"lacks {', '.join(NET_FIELDS)}")
    if not isinstance(optimizer, dict):
        raise ModelFileError(f"{decoder.name!r} is a damaged model file: no optimizer state")
    prior = None if entry["prior"] is None else decoder.network(entry["prior"])
    prefix = "net.state."
    state = {key[len(prefix):]: value for key, value in tensors.items()
             if key.startswith(prefix)}
    return restore_net(estimator, {**entry, "prior": prior, "state": state,
                                   "history": decoder.decode(entry["history"]),
                                   "optimizer": optimizer})


def _check_payload(payload, name):
    """``(version, header, tensors)`` of a data-only payload, or a :class:`ModelFileError`."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{name!r} is not a model file written by implicit_inverse save() "
                             "(no format marker)")
    version = payload.get("format_version")
    if version == PICKLE_FORMAT_VERSION:
        raise ModelFileError(pickled_format_message(name))
    if isinstance(version, bool) or version not in READ_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelFileError(
            f"{name!r} has model format version {version!r}; this implicit_inverse reads "
            f"versions {' and '.join(map(str, READ_VERSIONS))}"
            + (": upgrade implicit_inverse" if newer else ""))
    header, tensors = payload.get("header"), payload.get("tensors")
    if not isinstance(header, str) or not isinstance(tensors, dict) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor)
            for key, value in tensors.items()):
        raise ModelFileError(f"{name!r} is a damaged model file: no JSON header and tensors")
    try:
        header = json.loads(header)
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{name!r} is a damaged model file: its header is not JSON "
                             f"({first_line(error)})") from None
    fields = {"class": str, "params": dict, "attributes": dict, "net": (dict, type(None)),
              "metadata": dict}
    if not isinstance(header, dict) or not all(
            isinstance(header.get(key), kind) for key, kind in fields.items()):
        raise ModelFileError(f"{name!r} is a damaged model file: its header lacks "
                             f"{', '.join(fields)}")
    return version, header, tensors


def use_available_device(estimator):
    """Replace a ``device`` hyperparameter naming CUDA by ``"cpu"`` when CUDA is unavailable.

    Parameters
    ----------
    estimator : estimator
        Changed in place when it has such a ``device``.
    """
    device = getattr(estimator, "device", None)
    if device is None or torch.cuda.is_available():
        return
    if str(device).startswith("cuda"):
        warnings.warn(f"the model was saved with device={str(device)!r} but CUDA is not "
                      "available here: it is loaded on the CPU and device is set to 'cpu'",
                      UserWarning, stacklevel=4)
        estimator.device = "cpu"
