"""Reading model files of format 2 (written before format 3 stored the recipe), which described
every object by its constructor's arguments, the fitted network's layers included.

Only what format 3 stores is taken from such a file: the parameters, the fitted attributes, the
prior of the map, the module's weights, the optimizer state and the history; the network is then
rebuilt from the recipe exactly as for a file of format 3 (:func:`._network.restore_net`).
"""

from __future__ import annotations

import copy
import functools

import torch

from .._runtime import SeedStream
from ..networks import MixedPrecision
from ..networks.architectures import NETWORKS
from ..operators.base import _Adjoint, _Composed, _Scaled, _Sum
from ..training.recipe import ModelSpec
from ._network import restore_net
from ._values import Decoder, objects

DTYPES = {str(dtype).removeprefix("torch."): dtype
          for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


@functools.cache
def _objects():
    """Format 2's objects: those of format 3, composed operators and the recipe."""
    return {**objects(), **{cls.__name__: cls for cls in (_Adjoint, _Composed, _Sum, _Scaled,
                                                          ModelSpec)}}


class _Format2Decoder(Decoder):
    """The values of format 2: format 3's tags, and ``module``, ``device``, ``dtype``, indexed
    ``copy`` and format 2's ``object``."""

    def decode(self, value):
        kind = value.get("$type") if isinstance(value, dict) else None
        if kind == "module":
            cls = self.known(NETWORKS, value["class"])
            module = cls(**self.decode(value["args"]))
            if "state" in value:
                module.load_state_dict(self.state(value))
                frozen = set(value["frozen"])
                for name, parameter in module.named_parameters():
                    parameter.requires_grad_(name not in frozen)
            return module
        if kind == "object":
            return self.known(_objects(), value["class"])(**self.decode(value["args"]))
        if kind == "copy":
            original = self.values[value["name"]]
            return copy.deepcopy(original[value["index"]] if "index" in value else original)
        if kind == "device":
            return torch.device(value["name"])
        if kind == "dtype":
            return DTYPES[value["name"]]
        return super().decode(value)

    def state(self, value):
        return {name: self.tensors[key] for name, key in value["state"].items()}

    def prior(self, value):
        """The prior of the saved map (None: a copy of the user's module, as the recipe
        builds it), without its mixed-precision wrapper."""
        if value.get("$type") == "module" and value.get("class") == MixedPrecision.__name__:
            value = value["args"]["module"]
        return None if value.get("$type") == "copy" else self.decode(value)


def read_format2(cls, header, tensors, name, supplied):
    """The :class:`~.persistence.ModelFile` of a checked format-2 header and its tensors.

    Parameters
    ----------
    cls : type
        The estimator class the header names.
    header : dict
    tensors : dict of str to Tensor
    name : str
        The file, for the messages.
    supplied : dict
        The ``params`` passed again to ``load``.

    Returns
    -------
    ModelFile
    """
    from .persistence import ModelFile, use_available_device

    decoder = _Format2Decoder(name, tensors, supplied, header["params"])
    estimator = cls(**decoder.params())
    for attribute, value in header["attributes"].items():
        vars(estimator)[attribute] = decoder.attribute(attribute, value)
    use_available_device(estimator)
    net = header["net"]
    if net is not None:
        if "spec_" not in vars(estimator):  # written before the recipe was a fitted attribute
            estimator.spec_ = estimator._recipe(
                estimator.operator_, SeedStream.of(estimator.random_state).seed).replace(
                    lam=estimator.lam_, sigma=estimator.prior_sigma_)
        module = net["module"]
        step = module["args"]["layer"]["args"]["fixed_point_map"]["args"]
        cache = module["args"].get("cache")
        estimator.net_ = restore_net(estimator, {
            "prior": decoder.prior(step["regularizer"] if "regularizer" in step
                                   else step["denoiser"]),
            "cache": None if cache is None else list(decoder.decode(cache["args"]["image_shape"])),
            "hint": net["params"].get("divergence_hint", ""),
            "state": {key: tensors[value] for key, value in module["state"].items()
                      if not key.startswith("cache.")},
            "frozen": module["frozen"], "optimizer": decoder.decode(net["optimizer_state"]),
            "history": decoder.decode(net["history"]),
            "skipped": net["consecutive_skipped_"]})
    return ModelFile(estimator, header["metadata"])
