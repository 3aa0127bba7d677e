"""Saving and loading estimators as data: a JSON header and a flat dict of tensors, never code.

``save(estimator, path)`` writes one file with :func:`torch.save`: the dict
``{"format": FORMAT, "format_version": 2, "header": <JSON text>, "tensors": {name: tensor}}``.
``load(path)`` reads it back with ``torch.load(weights_only=True)``, which only rebuilds tensors
and plain containers, so loading a file never runs code from it, whoever wrote the file.

The JSON header holds the estimator's class name, ``get_params(deep=False)``, every fitted
attribute (``lam_``, ``noise_std_``, ``image_shape_``, ``operator_``, ...), the fitted network
(``net_``: its layers' constructor arguments, optimizer state, history and training settings)
and the ``metadata`` given to :func:`save`. A value that is not plain JSON is stored as a
description that the loader rebuilds from a fixed allow-list of the package's own classes
(estimators, operators, solvers, gradient strategies, networks, skorch callbacks, torch
optimizers and schedulers), looked up by name, never imported by name; its tensors (weights,
kernels, masks, optimizer moments) are entries of ``tensors``. A file that names anything else,
or is truncated or altered, is refused with :class:`ModelFileError`, naming the file.

Parameters the file cannot store as data are values of the user's own classes: a custom
``torch.nn.Module`` regularizer, a custom operator, solver or gradient strategy, a
``RandomState``. ``save`` records their class name (and a module's weights) and :func:`load`
asks for them again: ``load(path, params={"regularizer": MyNet()})`` (the weights saved are
loaded into a copy of the module passed; the fitted network gets the trained ones). skorch
``callbacks`` are not stored either, but for ``LRScheduler`` and ``ProgressBar`` (a
``Checkpoint`` holds file paths that a crafted file could aim anywhere): passed again, they are
used as in ``fit``; otherwise the model loads with ``callbacks=None`` and a warning, which
changes nothing for ``predict``.
Instances of the package's classes must be what their constructor builds: one with an added
attribute, a hook or a replaced layer cannot be saved (``TypeError``).

The warm starts of training (``reuse_fixed_points``: the ``FixedPointCache`` of the network, one
image per training sample, which would be most of the file) are not saved: the loaded network
has an empty cache in its place; nor are the last batch's fixed points and solver statistics.
``predict`` never uses them, and continued training (``warm_start=True`` or ``partial_fit``)
makes a fresh cache for its images, so its first epoch starts its solves from the default
starting points and later epochs warm-start again. Checkpoints (skorch ``Checkpoint``, for
resuming a run exactly) keep the cache.

The file is written to a temporary file in the same folder and then moved over ``path`` with
:func:`os.replace`, so a failure while writing (a full disk, a value that cannot be stored, an
interrupt) never truncates or corrupts an existing model file. ``save(estimator, path,
metadata={...})`` also stores a small dict of JSON values (how the model was made: the command
line stores its data set, kernel and seed there), read back by :func:`read`.

A model trained on a GPU loads on a machine without CUDA: every tensor is read to the CPU, and a
``device`` naming CUDA is replaced by ``"cpu"`` (with a warning) so that ``predict``,
``partial_fit`` and refits work there.

Files written by implicit_inverse 0.1 (format 1) are pickles, which can run code when loaded:
:func:`load` refuses them with a message saying how to convert a file you trust:
``read(path, allow_pickle=True).save(new_path)``. ``allow_pickle=True`` is unsafe on purpose and
reads only files that carry the format-1 marker.

``save`` and ``load`` are also available as :meth:`ImplicitRegressor.save` and the class method
:meth:`ImplicitRegressor.load` (for files that need no ``params``).

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
import copy
import functools
import inspect
import json
import numbers
import os
import pickle
import pickletools
import warnings
import zipfile
from typing import NamedTuple

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.history import History
from torch import nn
from torch.nn.utils import parametrize

from .._runtime import float32_default
from ..data.files import atomic_write
from ..equilibrium import GradientStep, ImplicitLayer, ProximalStep
from ..equilibrium.gradients import STRATEGIES
from ..equilibrium.solvers import SOLVERS
from ..networks import (DnCNN, MixedPrecision, NoiseLevelDenoiser, NoiseLevelUNet,
                        TikhonovPlusNetwork)
from ..operators import Blur, Downsample, Identity, Mask
from ..operators.base import _Adjoint, _Composed, _Scaled, _Sum
from ..training.losses import CRITERIA
from ..training.recipe import ModelSpec
from ..training.streaming import SetEpoch
from ..training.engine import EquilibriumNet, ReconstructionModule
from ..training.measurements import TrainingMeasurements
from ..training.stats import SolverStatsLog
from ..training.warm_start import FixedPointCache

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFile", "ModelFileError", "atomic_write", "load",
           "read", "save", "use_available_device"]

FORMAT = "implicit_inverse.estimator"
FORMAT_VERSION = 2
"""Version of the data-only format written by :func:`save` (1 was a pickle)."""
PICKLE_FORMAT_VERSION = 1
"""The format of implicit_inverse 0.1: a pickled estimator, read only with ``allow_pickle``."""


class ModelFileError(ValueError):
    """A model file that cannot be read: not a model, damaged, of another format version, naming
    a class outside the allow-list, or needing parameters that were not passed again."""


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


# -- saving ----------------------------------------------------------------------------------------
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
        or a fitted attribute or a package object inside the estimator cannot be stored as data
        (the message names it).
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
    from ..training.distributed import is_main_process

    if not is_main_process():
        return
    name = type(estimator).__name__
    if _estimator_classes().get(name) is not type(estimator):
        raise TypeError(f"cannot save a {type(estimator).__qualname__}: model files hold the "
                        f"estimators of implicit_inverse ({', '.join(_estimator_classes())})")
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must hold JSON values (str, numbers, bools, None, lists and "
                        f"dicts): {error}") from None
    with _without_training_state(estimator):
        writer = _Writer(estimator)
        header = {"library_version": __version__, "class": name, **writer.estimator(),
                  "metadata": metadata}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "header": json.dumps(header), "tensors": writer.tensors}
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


class _NotData(Exception):
    """A value of a class outside the allow-list (the user's own code)."""

    def __init__(self, key, value):
        super().__init__(key, type(value).__qualname__)
        self.key, self.kind = key, _class_name(type(value))


class _Writer:
    """Encodes an estimator into JSON values and a flat dict of CPU tensors.

    Values keep their identity within the file: an object met again (the operator shared by
    ``operator_``, the fixed-point map and the training measurements) is stored as a reference
    to the parameter or attribute that holds it.
    """

    def __init__(self, estimator):
        self.source = estimator
        self.params = estimator.get_params(deep=False)
        self.tensors = {}
        self.refs = {}
        self.live = {"params": self.params, "attributes": {}}
        self.unsaved = set()

    def estimator(self):
        """The header's ``params``, ``attributes`` and ``net`` entries."""
        params = {}
        for name, value in self.params.items():
            try:
                params[name] = self.encode(value, f"params.{name}")
            except _NotData:
                params[name] = self.unsaved_param(name, value)
                self.unsaved.add(name)
            self.remember(value, "params", name)
        attributes = {}
        for name, value in vars(self.source).items():
            if name not in self.params and name != "net_":
                attributes[name] = self.checked(self.encode, value, f"attributes.{name}")
                self.live["attributes"][name] = value
                self.remember(value, "attributes", name)
        net = vars(self.source).get("net_")
        return {"params": params, "attributes": attributes,
                "net": None if net is None else self.checked(self.net, net)}

    def checked(self, encode, *args):
        """``encode(*args)``, with a value outside the allow-list reported as a ``TypeError``."""
        try:
            return encode(*args)
        except _NotData as error:
            raise TypeError(
                f"cannot save the {type(self.source).__name__}: {error.key} holds a {error.kind},"
                " which a model file cannot store as data (only parameters may be of your own "
                "classes: load() then asks for them again)") from None

    def remember(self, value, section, name):
        if not isinstance(value, (type(None), bool, numbers.Number, str)):
            self.refs.setdefault(id(value), (section, name))

    def unsaved_param(self, name, value):
        """A parameter of the user's own class: its class name and, for a module, its weights."""
        kind = _class_name(type(value))
        if isinstance(value, (list, tuple)):
            kind += f" of {', '.join(_class_name(type(item)) for item in value)}"
        entry = {"$type": "unsaved", "class": kind}
        if isinstance(value, nn.Module):
            entry.update(self.module_state(value, f"params.{name}"))
        return entry

    def tensor(self, key, value):
        while key in self.tensors:
            key += "'"
        self.tensors[key] = value.detach().to("cpu", copy=True)
        return key

    def encode(self, value, key, nested=False):
        """JSON for ``value``; ``nested`` within a module's constructor arguments."""
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if id(value) in self.refs:
            section, name = self.refs[id(value)]
            return {"$type": "ref", "section": section, "name": name}
        if isinstance(value, torch.Tensor):
            return {"$type": "tensor", "key": self.tensor(key, value)}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return {"$type": "ndarray", "key": self.tensor(key, torch.from_numpy(value.copy()))}
        if isinstance(value, torch.device):
            return {"$type": "device", "name": str(value)}
        if isinstance(value, torch.dtype) and value in _DTYPES.values():
            return {"$type": "dtype", "name": str(value).removeprefix("torch.")}
        if isinstance(value, torch.Generator) and value.device.type == "cpu":
            return {"$type": "generator", "seed": value.initial_seed()}
        if type(value) is History:
            return {"$type": "history", "items": self.encode(list(value), key, nested)}
        if type(value) is list:
            return [self.encode(item, f"{key}.{i}", nested) for i, item in enumerate(value)]
        if type(value) is tuple:
            return {"$type": "tuple",
                    "items": [self.encode(item, f"{key}.{i}", nested)
                              for i, item in enumerate(value)]}
        if type(value) is dict:
            return self.encode_dict(value, key, nested)
        if isinstance(value, type):
            if value not in _names(_classes):
                raise _NotData(key, value)
            return {"$type": "class", "name": _names(_classes)[value]}
        if type(value) in _names(_modules):
            return self.module(value, key, nested)
        if type(value) in _names(_objects):
            name = _names(_objects)[type(value)]
            arguments = _objects()[name][1](value, key)
            return {"$type": "object", "class": name, "args": self.arguments(arguments, key,
                                                                             nested)}
        for param in self.unsaved:  # a copy of a parameter of the user's own class
            if type(self.params[param]) is type(value):
                return {"$type": "copy", "name": param}
        raise _NotData(key, value)

    def encode_dict(self, value, key, nested):
        if all(isinstance(name, str) for name in value) and "$type" not in value:
            return {name: self.encode(item, f"{key}.{name}", nested)
                    for name, item in value.items()}
        return {"$type": "dict", "items": [[self.encode(name, key, nested),
                                            self.encode(item, f"{key}.{name}", nested)]
                                           for name, item in value.items()]}

    def arguments(self, arguments, key, nested):
        return {name: self.encode(value, f"{key}.{name}", nested)
                for name, value in arguments.items()}

    def module(self, module, key, nested):
        """A module of the package: its constructor arguments and, at the top, its weights,
        checked by rebuilding it (what cannot be rebuilt is refused)."""
        name = _names(_modules)[type(module)]
        encoded = {"$type": "module", "class": name,
                   "args": self.arguments(_modules()[name][1](module, key), key, nested=True)}
        if nested:
            return encoded
        encoded.update(self.module_state(module, key))
        rebuilt = _Reader("the estimator being saved", self.tensors, self.lookup, {}).decode(
            encoded)
        if _describe(rebuilt) != _describe(module):
            raise TypeError(f"cannot save {key}: this {type(module).__name__} differs from what "
                            "its constructor builds (an added attribute, a hook, a replaced or "
                            "converted layer), so a model file cannot store it as data")
        return encoded

    def module_state(self, module, key):
        return {"state": {name: self.tensor(f"{key}.{name}", value)
                          for name, value in module.state_dict().items()},
                "frozen": [name for name, parameter in module.named_parameters()
                           if not parameter.requires_grad]}

    def lookup(self, section, name):
        return self.live[section][name]

    def net(self, net):
        """The fitted skorch network: its constructor parameters (the module and callbacks
        among them), optimizer state, history and skipped-batch count."""
        params = {name: value for name, value in net.get_params(deep=False).items()
                  if name in _net_parameters()}
        callbacks = []
        for name, callback in net.callbacks:
            index = name.removeprefix("user_")
            users = self.params.get("callbacks") or []
            if ("callbacks" in self.unsaved and index.isdigit() and int(index) < len(users)
                    and type(users[int(index)]) is type(callback)):
                encoded = {"$type": "copy", "name": "callbacks", "index": int(index)}
            else:
                encoded = self.encode(callback, f"net.callbacks.{name}")
            callbacks.append([name, encoded])
        return {"module": self.encode(net.module_, "net.module"),
                "params": self.arguments(params, "net.params", nested=False),
                "callbacks": callbacks,
                "optimizer_state": self.encode(net.optimizer_.state_dict(), "net.optimizer"),
                "history": self.encode(net.history_, "net.history"),
                "consecutive_skipped_": int(net.consecutive_skipped_)}


def _describe(module):
    """What a rebuilt module must share with the original: its layers, their attributes and
    hooks, the plain values among them, and the names, shapes and dtypes of its tensors."""
    layers = []
    for name, layer in module.named_modules():
        attributes = vars(layer)
        plain = {key: value for key, value in attributes.items() if key != "training"
                 and isinstance(value, (type(None), bool, numbers.Number, str))}
        hooks = {key: len(value) for key, value in attributes.items()
                 if "hook" in key and isinstance(value, dict)}
        layers.append((name, _class_name(type(layer)), sorted(attributes), plain, hooks))
    tensors = [(name, tuple(value.shape), value.dtype)
               for name, value in module.state_dict().items()]
    return repr(module), layers, tensors


# -- loading ---------------------------------------------------------------------------------------
def load(path, expected_class=None, *, params=None, allow_pickle=False):
    """Read an estimator written by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str or os.PathLike
    expected_class : type, optional
        Raise ``TypeError`` unless the stored estimator is an instance of this class.
    params : dict or None, default None
        Values of the parameters that the file could not store (those of your own classes: a
        custom regularizer module, operator, solver, ...), which it names when they are
        missing. A module passed is copied and gets the saved weights. ``callbacks`` not passed
        again are None (with a warning).
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
        Raise ``TypeError`` unless the stored estimator is an instance of this class.
    params : dict or None, default None
        As for :func:`load`.
    allow_pickle : bool, default False
        As for :func:`load` (unsafe).

    Returns
    -------
    ModelFile
        ``(estimator, metadata)``; ``metadata`` is ``{}`` when none was stored.
        ``read(old, allow_pickle=True).save(new)`` converts a trusted file of format 1.

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
                  else _first_line(error).split(". ")[0])
        if not _is_pickled_model(path):
            raise ModelFileError(f"{name!r} is not a model file written by implicit_inverse "
                                 f"save(), or it is damaged: {reason}") from None
        if not allow_pickle:
            raise ModelFileError(_pickled_format_message(name)) from None
        return _read_pickled(path, expected_class, params)
    header, tensors = _check_payload(payload, name)
    return _rebuild(header, tensors, name, expected_class, dict(params or {}))


def _check_payload(payload, name):
    """The JSON header and the tensors of a data-only payload, or a :class:`ModelFileError`."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{name!r} is not a model file written by implicit_inverse save() "
                             "(no format marker)")
    version = payload.get("format_version")
    if version == PICKLE_FORMAT_VERSION:
        raise ModelFileError(_pickled_format_message(name))
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelFileError(
            f"{name!r} has model format version {version!r}; this implicit_inverse reads "
            f"version {FORMAT_VERSION}" + (": upgrade implicit_inverse" if newer else ""))
    header, tensors = payload.get("header"), payload.get("tensors")
    if not isinstance(header, str) or not isinstance(tensors, dict) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor)
            for key, value in tensors.items()):
        raise ModelFileError(f"{name!r} is a damaged model file: no JSON header and tensors")
    try:
        header = json.loads(header)
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{name!r} is a damaged model file: its header is not JSON "
                             f"({_first_line(error)})") from None
    fields = {"class": str, "params": dict, "attributes": dict, "net": (dict, type(None)),
              "metadata": dict}
    if not isinstance(header, dict) or not all(
            isinstance(header.get(key), kind) for key, kind in fields.items()):
        raise ModelFileError(f"{name!r} is a damaged model file: its header lacks "
                             f"{', '.join(fields)}")
    return header, tensors


def _rebuild(header, tensors, name, expected_class, supplied):
    """The :class:`ModelFile` a checked header and its tensors describe."""
    cls = _estimator_classes().get(header["class"])
    if cls is None:
        raise ModelFileError(f"{name!r} names the estimator class {header['class']!r}, which is "
                             f"not one of implicit_inverse's ({', '.join(_estimator_classes())})")
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{name!r} holds a {cls.__name__}, not a {expected_class.__name__}")
    unsaved = {param: str(value.get("class")) for param, value in header["params"].items()
               if isinstance(value, dict) and value.get("$type") == "unsaved"}
    _check_supplied(supplied, unsaved, name)
    values = {"params": {}, "attributes": {}}
    reader = _Reader(name, tensors, lambda section, key: values[section][key], supplied)
    try:
        for param, encoded in header["params"].items():
            values["params"][param] = reader.decode(encoded, param)
        estimator = cls(**values["params"])
        for attribute, encoded in header["attributes"].items():
            values["attributes"][attribute] = vars(estimator)[attribute] = reader.decode(encoded)
        if header["net"] is not None:
            estimator.net_ = _build_net(header["net"], reader, estimator.device)
    except ModelFileError:
        raise
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError,
            RecursionError) as error:  # a value that does not rebuild what it should
        raise ModelFileError(f"{name!r} is a damaged model file: {type(error).__name__}: "
                             f"{_first_line(error)}") from None
    use_available_device(estimator)
    return ModelFile(estimator, header["metadata"])


def _check_supplied(supplied, unsaved, name):
    """Refuse ``params`` that are missing (but ``callbacks``) or that the file stores."""
    stored = sorted(set(supplied) - set(unsaved))
    if stored:
        raise TypeError(f"params {stored} are stored in {name!r}: pass only the parameters the "
                        "file could not store; change the others with set_params after loading")
    missing = {param: kind for param, kind in unsaved.items()
               if param not in supplied and param != "callbacks"}
    if missing:
        listed = ", ".join(f"{param!r} (a {kind})" for param, kind in missing.items())
        raise ModelFileError(
            f"{name!r} does not store the parameters {listed}: they are of your own classes, "
            "which a model file holds as their class name only; pass them again with "
            "load(path, params={...})")


class _Reader:
    """Decodes the JSON values of a header, building only the allow-listed classes."""

    def __init__(self, name, tensors, lookup, supplied):
        self.name = name
        self.tensors = tensors
        self.lookup = lookup
        self.supplied = supplied

    def decode(self, value, param=None):
        """The value ``value`` encodes; ``param`` names the parameter being decoded."""
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        kind = value.get("$type")
        if kind is None:
            return {name: self.decode(item) for name, item in value.items()}
        if kind == "unsaved":
            return self.unsaved(value, param)
        decoders = {
            "tuple": lambda: tuple(self.decode(item) for item in value["items"]),
            "dict": lambda: {self.decode(name): self.decode(item)
                             for name, item in value["items"]},
            "tensor": lambda: self.tensors[value["key"]],
            "ndarray": lambda: self.tensors[value["key"]].numpy(),
            "device": lambda: torch.device(value["name"]),
            "dtype": lambda: _DTYPES[value["name"]],
            "generator": lambda: torch.Generator().manual_seed(value["seed"]),
            "history": lambda: History(self.decode(value["items"])),
            "class": lambda: self.known(_classes(), value["name"])[0],
            "ref": lambda: self.lookup(value["section"], value["name"]),
            "copy": lambda: self.copy(value),
            "object": lambda: self.build(_objects(), value),
            "module": lambda: self.module(value),
        }
        if kind not in decoders:
            raise ModelFileError(f"{self.name!r} is a damaged model file: it holds a value of "
                                 f"unknown type {kind!r}")
        return decoders[kind]()

    def known(self, registry, name):
        """The entry of ``registry`` for the class named ``name``: never an import."""
        if not isinstance(name, str) or name not in registry:
            raise ModelFileError(f"{self.name!r} names the class {name!r}, which is not among "
                                 "those a model file may hold (the package's operators, "
                                 "solvers, networks, callbacks and torch optimizers)")
        return registry[name]

    def copy(self, value):
        original = self.lookup("params", value["name"])
        if "index" in value:
            original = original[value["index"]]
        return copy.deepcopy(original)

    def build(self, registry, value):
        cls = self.known(registry, value["class"])[0]
        return cls(**{name: self.decode(item) for name, item in value["args"].items()})

    def module(self, value):
        with torch.random.fork_rng(devices=[]), float32_default():
            module = self.build(_modules(), value)
        if "state" in value:
            _load_weights(module, self.tensors, value)
        return module

    def unsaved(self, value, param):
        """A parameter of the user's own class, passed again to :func:`load` (``callbacks``
        not passed again are None, with a warning)."""
        if param == "callbacks" and param not in self.supplied:
            warnings.warn(f"{self.name!r} was saved with callbacks ({value['class']}), which a "
                          "model file does not store (they hold code and file paths): it is "
                          "loaded with callbacks=None; pass them again with load(path, "
                          "params={'callbacks': [...]}) to keep them", UserWarning, stacklevel=5)
            return None
        supplied = self.supplied[param]
        if "state" not in value:
            return supplied
        if not isinstance(supplied, nn.Module):
            raise ModelFileError(f"{self.name!r}: params[{param!r}] must be a torch.nn.Module "
                                 f"(the saved one was a {value['class']}), got "
                                 f"{type(supplied).__name__}")
        module = copy.deepcopy(supplied)
        try:
            _load_weights(module, self.tensors, value)
        except RuntimeError as error:
            raise ModelFileError(f"{self.name!r}: params[{param!r}] does not match the saved "
                                 f"{value['class']}: {_first_line(error)}") from None
        return module


def _load_weights(module, tensors, value):
    """Load the weights ``value["state"]`` names into ``module``, and which parameters train."""
    module.load_state_dict({name: tensors[key] for name, key in value["state"].items()})
    frozen = set(value["frozen"])
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name not in frozen)


def _build_net(spec, reader, estimator_device):
    """The fitted skorch network ``spec`` describes, on a device available here."""
    unknown = sorted(set(spec["params"]) - _net_parameters())
    if unknown:
        raise ValueError(f"unknown network parameters {unknown}")
    params = {name: reader.decode(value) for name, value in spec["params"].items()}
    device = str(params.get("device"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        params["device"] = "cpu"
        if not str(estimator_device).startswith("cuda"):  # else use_available_device warns
            warnings.warn(f"the model's network was saved on {device!r} but CUDA is not "
                          "available here: it is loaded on the CPU", UserWarning, stacklevel=4)
    # the user's callbacks are copies of the callbacks parameter: those it no longer has are
    # left out (callbacks=None when they were not passed again)
    users = reader.lookup("params", "callbacks") or []
    callbacks = [(name, reader.decode(callback)) for name, callback in spec["callbacks"]
                 if not (isinstance(callback, dict) and callback.get("index", -1) >= len(users))]
    net = EquilibriumNet(module=reader.decode(spec["module"]), callbacks=callbacks, **params)
    net.initialize()
    net.optimizer_.load_state_dict(reader.decode(spec["optimizer_state"]))
    net.history_ = reader.decode(spec["history"])
    net.consecutive_skipped_ = int(spec["consecutive_skipped_"])
    return net


def use_available_device(estimator):
    """Replace a ``device`` hyperparameter naming CUDA by ``"cpu"`` when CUDA is unavailable.

    The fitted network itself is placed on the CPU when it is loaded (or unpickled by skorch);
    this keeps the hyperparameter consistent with it, so that ``partial_fit`` and refits work on
    this machine.

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
                      UserWarning, stacklevel=3)
        estimator.device = "cpu"


# -- format 1: pickles -----------------------------------------------------------------------------
def _pickled_format_message(name):
    return (f"{name!r} is a model file of implicit_inverse 0.1 (format "
            f"{PICKLE_FORMAT_VERSION}, a pickle): loading it could run any code it holds, so it "
            "is refused. If you trust the file, convert it once: from "
            "implicit_inverse.estimators import persistence; "
            f"persistence.read({name!r}, allow_pickle=True).save(NEW_PATH)")


def _is_pickled_model(path):
    """Whether ``path`` is a ``torch.save`` archive of a format-1 model, read without unpickling
    (the opcodes of its pickle are listed, not run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(entry for entry in archive.namelist() if entry.endswith("data.pkl"))
            arguments = [argument for opcode, argument, _ in pickletools.genops(
                archive.read(pickled)) if "PUT" not in opcode.name and opcode.name != "MEMOIZE"]
    except Exception:  # noqa: BLE001 - not a zip, no pickle, malformed opcodes: not one
        return False
    pairs = set(zip(arguments, arguments[1:]))
    return ("format", FORMAT) in pairs and ("format_version", PICKLE_FORMAT_VERSION) in pairs


def _read_pickled(path, expected_class, params):
    """Unpickle a format-1 file (``allow_pickle=True``: runs the code the file holds)."""
    _check_supplied(dict(params or {}), {}, os.fspath(path))
    payload = torch.load(path, map_location="cpu", weights_only=False)
    cls = payload["class"]
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{os.fspath(path)!r} holds a {cls.__name__}, not a "
                        f"{expected_class.__name__}")
    estimator = cls(**payload["params"])
    vars(estimator).update(payload["attributes"])
    use_available_device(estimator)
    return ModelFile(estimator, dict(payload.get("metadata") or {}))


# -- the allow-list --------------------------------------------------------------------------------
_DTYPES = {str(dtype).removeprefix("torch."): dtype
           for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def _first_line(error):
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _class_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _estimator_classes():
    """The estimators a model file may hold, by class name."""
    from .. import (DirectInverseRegressor, ImplicitDeblurRegressor,
                    ImplicitInpaintingRegressor, ImplicitRegressor,
                    ImplicitSuperResolutionRegressor, TikhonovRegressor, TotalVariationRegressor,
                    WienerRegressor)

    return {cls.__name__: cls for cls in (
        ImplicitRegressor, ImplicitDeblurRegressor, ImplicitSuperResolutionRegressor,
        ImplicitInpaintingRegressor, TikhonovRegressor, WienerRegressor, TotalVariationRegressor,
        DirectInverseRegressor)}


@functools.cache
def _classes():
    """Classes a model file may hold as values, by public name: torch's optimizers and
    learning-rate schedulers, the losses, and the data loader and dataset skorch uses."""
    scheduler = torch.optim.lr_scheduler
    named = {f"{prefix}.{name}": (value,)
             for prefix, module, base in (("torch.optim", torch.optim, torch.optim.Optimizer),
                                          ("torch.optim.lr_scheduler", scheduler,
                                           scheduler.LRScheduler))
             for name, value in vars(module).items()
             if isinstance(value, type) and issubclass(value, base)}
    named.update({f"loss:{name}": (value,) for name, value in CRITERIA.items()})
    named.update({"torch.utils.data.DataLoader": (torch.utils.data.DataLoader,),
                  "skorch.dataset.Dataset": (Dataset,)})
    return named


@functools.cache
def _net_parameters():
    """The parameters of the fitted network that a model file holds: those of its constructor
    and the data loader's shuffling, but not the module and callbacks (stored apart) nor
    ``torch_load_kwargs`` (how skorch would load other files: left at its default)."""
    names = {name for cls in (NeuralNet, EquilibriumNet)
             for name, parameter in inspect.signature(cls).parameters.items()
             if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    return names - {"module", "callbacks", "torch_load_kwargs"} | {
        "iterator_train__shuffle", "iterator_train__generator"}


@functools.cache
def _names(registry):
    """``{class: name}`` of a registry (the first name of a class listed twice)."""
    names = {}
    for name, entry in registry().items():
        names.setdefault(entry[0], name)
    return names


def _constructor_arguments(*transient):
    """Arguments of an object whose attributes are its constructor's arguments (plus
    ``transient`` ones that its methods rebuild); one with other attributes is refused."""

    def arguments(value, key):
        names = list(inspect.signature(type(value)).parameters)
        extra = sorted(set(vars(value)) - set(names) - set(transient))
        if extra or not set(names) <= set(vars(value)):
            raise TypeError(f"cannot save {key}: this {type(value).__name__} has attributes "
                            f"that its constructor does not set ({', '.join(extra)}), so a "
                            "model file cannot store it as data")
        return {name: vars(value)[name] for name in names}

    return arguments


def _callback_arguments(value, key):
    return value.get_params(deep=False)


_RUN_STATE = ("_xs", "_fs", "last_stats", "last_input")
"""What the registered solvers and gradient strategies keep from their last call (not saved)."""


@functools.cache
def _objects():
    """Objects rebuilt by calling their class with their constructor's arguments, by name (the
    package's classes by their own name, which stays when they move between modules)."""
    entries = {
        Blur: _constructor_arguments("_cache"), Mask: _constructor_arguments("_cache"),
        Downsample: _constructor_arguments(), Identity: _constructor_arguments(),
        _Adjoint: _constructor_arguments(), _Composed: _constructor_arguments(),
        _Sum: _constructor_arguments(), _Scaled: _constructor_arguments(),
        **{cls: _constructor_arguments(*_RUN_STATE)
           for cls in (*SOLVERS.values(), *STRATEGIES.values())},
        TrainingMeasurements: _constructor_arguments("epoch", "_generators"),
        ModelSpec: _constructor_arguments(),
        SolverStatsLog: _callback_arguments, SetEpoch: _callback_arguments,
    }
    named = {cls.__name__: (cls, arguments) for cls, arguments in entries.items()}
    named.update({f"skorch.callbacks.{cls.__name__}": (cls, _callback_arguments)
                  for cls in (LRScheduler, ProgressBar)})
    return named


def _dncnn_arguments(network, key):
    convolutions = [layer for layer in network.body if isinstance(layer, nn.Conv2d)]
    normalised = [parametrize.is_parametrized(layer) for layer in convolutions]
    return {"depth": len(convolutions), "width": convolutions[0].out_channels,
            "channels": network.channels, "kernel_size": convolutions[0].kernel_size[0],
            "spectral_norm": any(normalised), "zero_output": not normalised[-1],
            "extra_inputs": convolutions[0].in_channels - network.channels}


@functools.cache
def _modules():
    """Modules rebuilt from constructor arguments read off them; the weights (placeholders
    below: ``alpha``, ``sigma``) come from the state dict."""
    entries = {
        DnCNN: _dncnn_arguments,
        TikhonovPlusNetwork: lambda module, key: {
            "network": module.network, "alpha": 1.0,
            "learn_alpha": module.raw_alpha.requires_grad, "scale": module.scale},
        NoiseLevelDenoiser: lambda module, key: module.architecture(),
        NoiseLevelUNet: lambda module, key: module.architecture(),
        MixedPrecision: lambda module, key: {"module": module.module, "dtype": module.dtype,
                                             "inference": module.inference},
        ReconstructionModule: lambda module, key: {"layer": module.layer, "cache": module.cache},
        ImplicitLayer: lambda module, key: {
            "fixed_point_map": module.map, "solver": module.solver, "gradient": module.gradient,
            "max_iter": module.max_iter, "tol": module.tol, "warn": module.warn,
            "train_max_iter": module.train_max_iter, "train_tol": module.train_tol},
        GradientStep: lambda module, key: {
            "operator": module.operator, "regularizer": module.regularizer, "eta": module.eta,
            "precondition": module.precondition, "lam": module.lam,
            "initializer": module.initializer, "learn_step": module.learn_step},
        ProximalStep: lambda module, key: {
            "operator": module.operator, "denoiser": module.denoiser, "lam": module.lam,
            "sigma": 1.0, "eta": module.eta, "precondition": module.precondition,
            "learn_sigma": module.log_sigma.requires_grad},
        FixedPointCache: lambda module, key: {"n_samples": module.points.shape[0],
                                              "image_shape": tuple(module.points.shape[1:])},
    }
    return {cls.__name__: (cls, arguments) for cls, arguments in entries.items()}
