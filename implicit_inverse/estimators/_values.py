"""The values of a model file's header: JSON, tagged dicts for the rest, tensors kept apart.

A value is a JSON scalar, a list, a str-keyed dict, or a dict tagged ``"$type"``: ``tuple``,
``dict`` (other keys), ``tensor`` and ``ndarray`` (a key of the file's tensors), ``history`` (a
skorch ``History``), ``class`` (one of
torch's optimizers), ``object`` (an operator, solver or gradient strategy of the package: its
class name and constructor arguments), ``network`` (a network of
:mod:`~implicit_inverse.networks.architectures` and its weights), ``spec`` (a
:class:`~implicit_inverse.training.recipe.ModelSpec`), ``ref`` (the value of a parameter or
attribute stored before), ``copy`` (a copy of a parameter of the user's own class) and
``unsaved`` (a parameter of the user's own class: passed again to ``load``). Classes are looked
up in fixed allow-lists, by name; nothing is imported by name.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import numbers
import warnings

import numpy as np
import torch
from skorch.history import History
from torch import nn

from ..equilibrium.gradients import STRATEGIES
from ..equilibrium.solvers import SOLVERS
from ..networks.architectures import NETWORKS, build, describe
from ..operators import Blur, Downsample, Identity, Mask
from ..training.recipe import ModelSpec


class ModelFileError(ValueError):
    """A model file that cannot be read: not a model, damaged, of another format version, naming
    a class outside the allow-list, or needing parameters that were not passed again."""


class NotData(Exception):
    """A value of a class outside the allow-lists (the user's own code)."""

    def __init__(self, value):
        super().__init__(class_name(type(value)))
        self.kind = class_name(type(value))


def first_line(error):
    """The first line of ``error``'s message (at most 200 characters)."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def class_name(cls):
    """``module.QualifiedName`` of ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def estimator_classes():
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
def objects():
    """The package's objects stored as their constructor's arguments, by class name."""
    return {cls.__name__: cls for cls in (Blur, Mask, Downsample, Identity, *SOLVERS.values(),
                                          *STRATEGIES.values())}


@functools.cache
def classes():
    """The classes stored as values (torch's optimizers), by public name."""
    return {f"torch.optim.{name}": value for name, value in vars(torch.optim).items()
            if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)}


class Encoder:
    """Encodes parameters and fitted attributes; tensors go to :attr:`tensors`.

    Parameters
    ----------
    params : dict
        ``get_params(deep=False)`` of the estimator.
    """

    def __init__(self, params):
        self.source = params
        self.tensors = {}
        self.unsaved = set()
        self.names = {}

    def params(self):
        """The header's ``params``: values of the user's classes become ``unsaved`` entries."""
        encoded = {}
        for name, value in self.source.items():
            try:
                encoded[name] = self.encode(value, f"params.{name}")
            except NotData:
                kind = class_name(type(value))
                if isinstance(value, (list, tuple)):
                    kind += f" of {', '.join(class_name(type(item)) for item in value)}"
                encoded[name] = {"$type": "unsaved", "class": kind}
                if isinstance(value, nn.Module):
                    encoded[name].update(self.state(value, f"params.{name}"))
                self.unsaved.add(name)
            self.remember(name, value)
        return encoded

    def attribute(self, name, value):
        """A fitted attribute, encoded (values met before as ``ref``); :class:`NotData` if it
        cannot be stored."""
        encoded = self.encode(value, f"attributes.{name}", refs=True)
        self.remember(name, value)
        return encoded

    def remember(self, name, value):
        if not isinstance(value, (type(None), bool, numbers.Number, str)):
            self.names.setdefault(id(value), name)

    def tensor(self, key, value):
        """Store ``value`` (a copy on the CPU) under ``key``; returns the key."""
        self.tensors[key] = value.detach().to("cpu", copy=True)
        return key

    def state(self, module, key):
        """The weights of ``module`` (tensors ``key.NAME``) and which parameters are frozen."""
        for name, value in module.state_dict().items():
            self.tensor(f"{key}.{name}", value)
        return {"state": key, "frozen": [name for name, parameter in module.named_parameters()
                                         if not parameter.requires_grad]}

    def encode(self, value, key, refs=False):
        """The JSON value of ``value`` (``refs``: values met before become references)."""
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (np.bool_, numbers.Integral)):
            return value.item() if isinstance(value, np.generic) else int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if refs and id(value) in self.names:
            return {"$type": "ref", "name": self.names[id(value)]}
        if isinstance(value, torch.Tensor):
            return {"$type": "tensor", "key": self.tensor(key, value)}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return {"$type": "ndarray", "key": self.tensor(key, torch.from_numpy(value.copy()))}
        items = [self.encode(item, f"{key}.{i}", refs)
                 for i, item in enumerate(value)] if type(value) in (list, tuple) else None
        if type(value) is list:
            return items
        if type(value) is tuple:
            return {"$type": "tuple", "items": items}
        if type(value) is dict:
            if all(isinstance(name, str) for name in value) and "$type" not in value:
                return {name: self.encode(item, f"{key}.{name}", refs)
                        for name, item in value.items()}
            return {"$type": "dict", "items": [[self.encode(name, key), self.encode(
                item, f"{key}.{name}", refs)] for name, item in value.items()]}
        if type(value) is History:
            return {"$type": "history", "items": self.encode(list(value), key, refs)}
        if type(value) is ModelSpec:
            return {"$type": "spec", "fields": {
                field.name: self.encode(getattr(value, field.name), f"{key}.{field.name}", refs)
                for field in dataclasses.fields(value)}}
        if isinstance(value, type) and value in classes().values():
            return {"$type": "class", "name": next(name for name, cls in classes().items()
                                                   if cls is value)}
        if objects().get(type(value).__name__) is type(value):
            names = inspect.signature(type(value)).parameters
            if all(hasattr(value, name) for name in names):
                return {"$type": "object", "class": type(value).__name__, "args": {
                    name: self.encode(getattr(value, name), f"{key}.{name}", refs)
                    for name in names}}
        if isinstance(value, nn.Module) and describe(value) is not None:
            return {"$type": "network", "description": describe(value),
                    **self.state(value, key)}
        for param in self.unsaved if refs else ():  # a copy of a parameter of the user's own
            if type(self.source[param]) is type(value):
                return {"$type": "copy", "name": param}
        raise NotData(value)


class Decoder:
    """Decodes a header's values, building only the allow-listed classes.

    Parameters
    ----------
    name : str
        The file, for the messages.
    tensors : dict of str to Tensor
    supplied : dict
        The ``params`` passed again to ``load``.
    params : dict
        The header's ``params``.
    """

    def __init__(self, name, tensors, supplied, params):
        self.name = name
        self.tensors = tensors
        self.supplied = supplied
        self.header_params = params
        self.values = {}

    def params(self):
        """The constructor parameters of the estimator (those passed again among them)."""
        unsaved = unsaved_params(self.header_params)
        for param, value in self.header_params.items():
            if param in unsaved:
                state = self.state(value) if "state" in value else None
                self.values[param] = supplied_value(self.name, param, unsaved[param],
                                                    self.supplied, state, value.get("frozen", ()))
            else:
                self.values[param] = self.decode(value)
        return dict(self.values)

    def attribute(self, name, value):
        """A fitted attribute, decoded."""
        self.values[name] = self.decode(value)
        return self.values[name]

    def state(self, value):
        prefix = f"{value['state']}."
        return {key[len(prefix):]: tensor for key, tensor in self.tensors.items()
                if key.startswith(prefix)}

    def known(self, registry, name):
        """The class of ``registry`` named ``name``: never an import."""
        if not isinstance(name, str) or name not in registry:
            raise ModelFileError(f"{self.name!r} names the class {name!r}, which is not among "
                                 "those a model file may hold (the package's operators, "
                                 "solvers, networks and torch optimizers)")
        return registry[name]

    def network(self, description):
        """The network ``description`` names (its classes checked against the allow-list)."""
        def check(value):
            if isinstance(value, dict):
                self.known(NETWORKS, value.get("class"))
                for item in dict(value.get("args") or {}).values():
                    check(item)

        check(description)
        return build(description)

    def decode(self, value):
        """The value that ``value`` encodes."""
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        kind = value.get("$type")
        if kind is None:
            return {name: self.decode(item) for name, item in value.items()}
        decoders = {
            "tuple": lambda: tuple(self.decode(item) for item in value["items"]),
            "dict": lambda: {self.decode(name): self.decode(item)
                             for name, item in value["items"]},
            "tensor": lambda: self.tensors[value["key"]],
            "ndarray": lambda: self.tensors[value["key"]].numpy(),
            "class": lambda: self.known(classes(), value["name"]),
            "object": lambda: self.known(objects(), value["class"])(**self.decode(value["args"])),
            "spec": lambda: ModelSpec(**self.decode(value["fields"])),
            "history": lambda: History(self.decode(value["items"])),
            "network": lambda: self.weighted(self.network(value["description"]), value),
            "ref": lambda: self.values[value["name"]],
            "copy": lambda: copy.deepcopy(self.values[value["name"]]),
        }
        if kind not in decoders:
            raise ModelFileError(f"{self.name!r} is a damaged model file: it holds a value of "
                                 f"unknown type {kind!r}")
        return decoders[kind]()

    def weighted(self, module, value):
        """``module`` with the weights ``value`` names."""
        module.load_state_dict(self.state(value))
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(name not in set(value["frozen"]))
        return module


def supplied_value(name, param, kind, supplied, state=None, frozen=()):
    """The value of ``param`` passed again to ``load``, for a saved value of the user's class
    ``kind``: a module is copied and gets the saved weights ``state`` (None: it had none).
    ``callbacks`` not passed again are None, with a warning."""
    if param not in supplied:
        warnings.warn(f"{name!r} was saved with callbacks ({kind}), which a model file does not "
                      "store (they hold code and file paths): it is loaded with "
                      "callbacks=None; pass them again with load(path, params={'callbacks': "
                      "[...]}) to keep them", UserWarning, stacklevel=6)
        return None
    value = supplied[param]
    if state is None:
        return value
    if not isinstance(value, nn.Module):
        raise ModelFileError(f"{name!r}: params[{param!r}] must be a torch.nn.Module (the saved "
                             f"one was a {kind}), got {type(value).__name__}")
    module = copy.deepcopy(value)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{name!r}: params[{param!r}] does not match the saved {kind}: "
                             f"{first_line(error)}") from None
    for parameter_name, parameter in module.named_parameters():
        parameter.requires_grad_(parameter_name not in set(frozen))
    return module


def unsaved_params(params):
    """The parameters a header's ``params`` could not store, to the name of their class."""
    return {param: str(value.get("class")) for param, value in params.items()
            if isinstance(value, dict) and value.get("$type") == "unsaved"}


def check_supplied(supplied, unsaved, name):
    """Refuse ``params`` that are missing (but ``callbacks``) or that the file stores.

    Parameters
    ----------
    supplied : dict
        The ``params`` passed to ``load``.
    unsaved : dict
        The parameters the file could not store, to the name of their class.
    name : str
        The file, for the messages.
    """
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
