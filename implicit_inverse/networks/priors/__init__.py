"""Pretrained priors shipped as package data, and the data-only file format that holds them.

A prior file is written with :func:`torch.save` and read with ``torch.load(weights_only=True)``,
which unpickles only tensors and plain containers: loading never runs code from the file. It holds
``{"format": "implicit_inverse.prior", "version": 1, "architecture": {...},
"state_dict": {...}, "card": {...}}``, where ``card`` records how the weights were trained and
``architecture`` holds the denoiser's ``kind`` (see :data:`DENOISER_KINDS`; files written before
the U-Net have none and are DnCNNs) and its constructor's arguments.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..denoiser import NoiseLevelDenoiser
from ..unet import NoiseLevelUNet

FORMAT = "implicit_inverse.prior"
VERSION = 1
PRIORS_DIR = Path(__file__).resolve().parent
DEFAULT_PRIOR = "unet-gray"
"""Name of the prior used when none is named (``regularizer="pretrained"``)."""
DENOISER_KINDS = {cls.KIND: cls for cls in (NoiseLevelDenoiser, NoiseLevelUNet)}
"""The denoiser classes a prior file can hold, by the ``kind`` stored in its architecture."""

__all__ = ["DEFAULT_PRIOR", "DENOISER_KINDS", "PriorFileError", "available_priors", "load_prior",
           "load_prior_file", "save_prior_file"]


class PriorFileError(ValueError):
    """A prior file that is missing, unreadable or not in the prior format."""


def available_priors():
    """Names of the priors shipped with the package, sorted.

    Returns
    -------
    list of str
    """
    return sorted(path.stem for path in PRIORS_DIR.glob("*.pt"))


def save_prior_file(path, denoiser, card):
    """Write ``denoiser`` (one of :data:`DENOISER_KINDS`) and its model card to ``path``.

    Parameters
    ----------
    path : str or Path
        Destination; written atomically (an existing file is replaced only when complete).
    denoiser : NoiseLevelPrior
    card : dict
        Plain values (str, int, float, lists and dicts of them) describing the training.
    """
    from ...data.files import atomic_write

    state = {name: tensor.detach().to("cpu", torch.float32).contiguous()
             for name, tensor in denoiser.state_dict().items()}
    architecture = {"kind": denoiser.KIND, **denoiser.architecture()}
    payload = {"format": FORMAT, "version": VERSION, "architecture": architecture,
               "state_dict": state, "card": dict(card)}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_prior_file(path):
    """Read a prior file without unpickling code.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    denoiser : NoiseLevelPrior
        In evaluation mode, float32, on the CPU.
    card : dict
        The model card stored with it.

    Raises
    ------
    PriorFileError
        One line naming the file: missing, unreadable, not a prior file, or a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise PriorFileError(f"prior file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or crafted files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PriorFileError(f"prior file {str(path)!r} cannot be read as data only: "
                             f"{reason[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PriorFileError(f"prior file {str(path)!r} is not an implicit_inverse prior")
    if payload.get("version") != VERSION:
        raise PriorFileError(f"prior file {str(path)!r} has format version "
                             f"{payload.get('version')!r}; this version reads {VERSION}")
    architecture = payload.get("architecture")
    architecture = dict(architecture) if isinstance(architecture, dict) else {}
    kind = architecture.pop("kind", NoiseLevelDenoiser.KIND)
    if not isinstance(kind, str) or kind not in DENOISER_KINDS:
        raise PriorFileError(f"prior file {str(path)!r} holds a denoiser of kind {kind!r}; "
                             f"this version reads {sorted(DENOISER_KINDS)}")
    try:
        denoiser = DENOISER_KINDS[kind](**architecture)
        denoiser.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise PriorFileError(f"prior file {str(path)!r} does not match its architecture: "
                             f"{str(error).splitlines()[0][:200]}") from None
    return denoiser.eval(), dict(payload.get("card", {}))


def load_prior(name=None):
    """Load a shipped prior by name.

    Parameters
    ----------
    name : str or None
        One of :func:`available_priors`; None means :data:`DEFAULT_PRIOR`.

    Returns
    -------
    denoiser : NoiseLevelPrior
    card : dict

    Raises
    ------
    ValueError
        For an unknown name, listing the available ones.
    """
    name = DEFAULT_PRIOR if name is None else name
    names = available_priors()
    if name not in names:
        raise ValueError(f"unknown prior {name!r}; available priors: {', '.join(names) or 'none'}")
    return load_prior_file(PRIORS_DIR / f"{name}.pt")
