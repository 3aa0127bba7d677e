"""Regularizers chosen by name: ``"dncnn:DEPTHxWIDTH"``, ``"pretrained[:NAME]"``,
``"red[:NAME]"`` or a module.

A spec string is searchable (``GridSearchCV(est, {"regularizer": ["dncnn:5x24",
"dncnn:17x64"]})``) and is built inside ``fit``, when the channel count and the fitted Tikhonov
weight ``lam_`` are known.
"""

from __future__ import annotations

import copy
import re

from torch import nn

from .dncnn import DnCNN, TikhonovPlusNetwork
from .priors import DEFAULT_PRIOR, load_prior

DEFAULT_REGULARIZER = "dncnn:5x24"
NETWORK_GAIN = 100.0
"""Gain of a DnCNN regularizer after preconditioning: its output is scaled by ``gain * lam``, so
that the amplification by ``(A^T A + lam I)^{-1}`` (up to ``scale / lam``) is the same at every
noise level."""

ACCEPTED = ('"dncnn:DEPTHxWIDTH" (for example "dncnn:5x24" or "dncnn:17x64"), "pretrained", '
            '"pretrained:NAME", "red", "red:NAME", or a torch.nn.Module')
_DNCNN = re.compile(r"dncnn:(\d+)x(\d+)")
_SHIPPED = re.compile(r"(pretrained|red)(?::([\w.-]+))?")
DENOISER_KINDS = ("pretrained", "red")
"""Kinds whose prior is a shipped denoiser ``D(x, sigma)``: the proximal map's, or the RED
gradient ``lam (x - D(x, sigma))`` of the DE-GRAD step."""


def parse_regularizer(spec):
    """Check a regularizer spec and split it into its kind and arguments.

    Parameters
    ----------
    spec : str, torch.nn.Module or None
        None means :data:`DEFAULT_REGULARIZER`.

    Returns
    -------
    kind : {"dncnn", "pretrained", "red", "module"}
        ``"pretrained"``: a shipped denoiser in the proximal map; ``"red"``: the same denoiser
        as the RED gradient of the DE-GRAD step.
    argument : tuple (depth, width), str or None (the prior's name, None for the default), or
        the module

    Raises
    ------
    ValueError
        Naming ``regularizer`` and the accepted forms.
    """
    if spec is None:
        spec = DEFAULT_REGULARIZER
    if isinstance(spec, nn.Module):
        return "module", spec
    if isinstance(spec, str):
        match = _DNCNN.fullmatch(spec)
        if match and int(match[1]) >= 2 and int(match[2]) >= 1:
            return "dncnn", (int(match[1]), int(match[2]))
        match = _SHIPPED.fullmatch(spec)
        if match:
            return match[1], match[2]
    raise ValueError(f"regularizer must be {ACCEPTED}; got {spec!r} (a DnCNN needs depth >= 2 "
                     "and width >= 1)")


def build_regularizer(spec, channels, lam):
    """The module a spec names, ready for training (a fresh copy every call).

    Parameters
    ----------
    spec : str, torch.nn.Module or None
        See :func:`parse_regularizer`.
    channels : int
        Image channels C of the data.
    lam : float
        The fitted Tikhonov weight ``lam_``: a DnCNN spec builds
        ``TikhonovPlusNetwork(DnCNN(depth, width, channels), alpha=lam, scale=100 * lam)``,
        whose output starts at zero (the untrained model is Tikhonov).

    Returns
    -------
    module : torch.nn.Module
        A regularizer ``R(x)`` for DE-GRAD, or for ``"pretrained"`` and ``"red"`` the shipped
        denoiser ``D(x, sigma)`` (:func:`~implicit_inverse.networks.priors.load_prior`;
        grayscale priors restore colour images channel by channel), which
        :func:`~implicit_inverse.training.recipe.build_model` places in its map.
    """
    kind, argument = parse_regularizer(spec)
    if kind == "module":
        return copy.deepcopy(argument)
    if kind in DENOISER_KINDS:
        denoiser, _ = load_prior(argument or DEFAULT_PRIOR)
        return denoiser.train()
    depth, width = argument
    return TikhonovPlusNetwork(DnCNN(depth=depth, width=width, channels=channels), alpha=lam,
                               scale=NETWORK_GAIN * lam)
