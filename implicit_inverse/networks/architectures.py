"""The package's networks as data: a module answers ``architecture()``, rebuilt by name.

:func:`describe` gives a network's class name and constructor arguments as plain values (a
network inside another is described in turn); :func:`build` makes a fresh network from such a
description, with untrained weights: the state dict stored beside the description holds the
trained ones. Model files use it for the prior of a fitted estimator and for a regularizer
module passed as a parameter.

Examples
--------
>>> from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
>>> described = describe(TikhonovPlusNetwork(DnCNN(depth=2, width=4)))
>>> described["class"], described["args"]["network"]["args"]["width"]
('TikhonovPlusNetwork', 4)
>>> type(build(described).network).__name__
'DnCNN'
"""

from __future__ import annotations

import torch
from torch import nn

from .denoiser import NoiseLevelDenoiser
from .dncnn import DnCNN, TikhonovPlusNetwork
from .unet import NoiseLevelUNet

NETWORKS = {cls.__name__: cls for cls in (DnCNN, TikhonovPlusNetwork, NoiseLevelDenoiser,
                                          NoiseLevelUNet)}
"""The networks :func:`build` makes, by class name."""


def describe(module):
    """The description of ``module``, or None when it is not one of :data:`NETWORKS`.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    dict or None
        ``{"class": name, "args": {...}}`` of plain values (nested networks described too).
    """
    if NETWORKS.get(type(module).__name__) is not type(module):
        return None
    args = {}
    for name, value in module.architecture().items():
        if isinstance(value, nn.Module):
            value = describe(value)
            if value is None:
                return None
        args[name] = value
    return {"class": type(module).__name__, "args": args}


def build(description):
    """A fresh network (float32, on the CPU, seeded) from :func:`describe`'s description.

    Parameters
    ----------
    description : dict

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        A class outside :data:`NETWORKS` or a malformed description.
    """
    if not isinstance(description, dict) or description.get("class") not in NETWORKS \
            or not isinstance(description.get("args"), dict):
        raise ValueError(f"not a description of one of the networks {sorted(NETWORKS)}: "
                         f"{str(description)[:120]}")
    args = {name: build(value) if isinstance(value, dict) else value
            for name, value in description["args"].items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return NETWORKS[description["class"]](**args)
