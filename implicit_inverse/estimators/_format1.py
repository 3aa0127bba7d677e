"""Model files of implicit_inverse 0.1 (format 1): pickles, recognised without unpickling them,
refused with a message saying how to convert a trusted one, read only with ``allow_pickle``."""

from __future__ import annotations

import os
import pickletools
import zipfile

import torch

PICKLE_FORMAT_VERSION = 1
"""The format of implicit_inverse 0.1: a pickled estimator, read only with ``allow_pickle``."""


def pickled_format_message(name):
    """Why a format-1 file ``name`` is refused, and how to convert it (one line)."""
    return (f"{name!r} is a model file of implicit_inverse 0.1 (format "
            f"{PICKLE_FORMAT_VERSION}, a pickle): loading it could run any code it holds, so it "
            "is refused. If you trust the file, convert it once: from "
            "implicit_inverse.estimators import persistence; "
            f"persistence.read({name!r}, allow_pickle=True).save(NEW_PATH)")


def is_pickled_model(path, marker):
    """Whether ``path`` is a ``torch.save`` archive of a format-1 model (format ``marker``),
    read without unpickling: the opcodes of its pickle are listed, not run."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(entry for entry in archive.namelist() if entry.endswith("data.pkl"))
            arguments = [argument for opcode, argument, _ in pickletools.genops(
                archive.read(pickled)) if "PUT" not in opcode.name and opcode.name != "MEMOIZE"]
    except Exception:  # noqa: BLE001 - not a zip, no pickle, malformed opcodes: not one
        return False
    pairs = set(zip(arguments, arguments[1:]))
    return ("format", marker) in pairs and ("format_version", PICKLE_FORMAT_VERSION) in pairs


def read_pickled(path, expected_class, params):
    """Unpickle a format-1 file (``allow_pickle=True``: runs the code the file holds).

    Returns
    -------
    ModelFile
    """
    from ._values import check_supplied
    from .persistence import ModelFile, use_available_device

    check_supplied(dict(params or {}), {}, os.fspath(path))
    payload = torch.load(path, map_location="cpu", weights_only=False)
    cls = payload["class"]
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(f"{os.fspath(path)!r} holds a {cls.__name__}, not a "
                        f"{expected_class.__name__}")
    estimator = cls(**payload["params"])
    vars(estimator).update(payload["attributes"])
    use_available_device(estimator)
    return ModelFile(estimator, dict(payload.get("metadata") or {}))
