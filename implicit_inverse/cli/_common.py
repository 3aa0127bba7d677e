"""Pieces every subcommand shares: errors, argument types, kernels, model files, output files."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from ..operators.specs import KERNEL_GRAMMAR

PROG = "implicit-inverse"
KERNEL_HELP = f"{KERNEL_GRAMMAR} or a .npy file holding a 2-D kernel (divided by its sum)"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- argument types ------------------------------------------------------------------------------
def _bounded(convert, low, expected):
    """An argparse type: ``convert(text)``, finite and at least ``low``, else ``expected``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _bounded(int, 1, "a positive integer")
nonnegative_int = _bounded(int, 0, "an integer >= 0")
nonnegative_float = _bounded(float, 0.0, "a finite number >= 0")


def image_size(text):
    value = positive_int(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"image size must be at least 8, got {value}")
    return value


def add_threads_option(parser):
    parser.add_argument("--threads", type=positive_int, default=None, metavar="T",
                        help="torch CPU threads for this command (default: torch's default)")


def add_device_option(parser):
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="torch device; 'auto' uses CUDA when available (default: cpu)")


def add_max_pixels_option(parser):
    from ..data.image_files import MAX_PIXELS

    parser.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, metavar="N",
                        help=f"refuse photos of more than N pixels (default: {MAX_PIXELS:,}, "
                             "for example 4096x4096)")


def check_device(device):
    """The torch device name for ``--device`` (``auto`` resolved); a clear error without CUDA."""
    from .._runtime import resolve_device

    try:
        return resolve_device(device, option="--device")
    except ValueError as error:
        raise CommandError(str(error)) from None


# -- kernels -------------------------------------------------------------------------------------
def parse_kernel(spec):
    """The 2-D kernel named by ``--kernel SPEC``.

    Parameters
    ----------
    spec : str
        A spec of :data:`~implicit_inverse.operators.specs.KERNEL_GRAMMAR` or the path of a
        ``.npy`` file holding a 2-D array (finite, with a non-zero sum; it is divided by its sum).

    Returns
    -------
    ndarray of shape (kh, kw), float64, summing to 1

    Raises
    ------
    CommandError
        A malformed spec, or a kernel file that is missing, unreadable, not 2-D, not finite or
        summing to zero (the message names the file).
    """
    from ..operators import specs

    if specs.is_kernel_spec(spec):
        try:
            return specs.parse_kernel(spec)
        except ValueError as error:
            raise CommandError(f"--{error}") from None
    if spec.lower().endswith(".npy") or Path(spec).is_file():
        return _kernel_file(spec)
    raise CommandError(f"--kernel: expected {KERNEL_HELP}; got {spec!r}")


def _kernel_file(spec):
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"--kernel: no such kernel file: {spec!r}")
    try:
        kernel = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - not a .npy file, truncated, pickled objects
        raise CommandError(f"--kernel: {spec!r} is not a readable .npy array "
                           f"({type(error).__name__}: {' '.join(str(error).split())})") from None
    if not isinstance(kernel, np.ndarray) or kernel.dtype.kind not in "iuf":
        raise CommandError(f"--kernel: {spec!r} must hold a real 2-D array, got dtype "
                           f"{getattr(kernel, 'dtype', type(kernel).__name__)}")
    if kernel.ndim != 2 or kernel.size == 0:
        raise CommandError(f"--kernel: {spec!r} must hold a 2-D array, got shape "
                           f"{kernel.shape}")
    kernel = kernel.astype(np.float64)
    if not np.all(np.isfinite(kernel)):
        raise CommandError(f"--kernel: {spec!r} holds NaN or infinite values")
    total = kernel.sum()
    if abs(total) <= 1e-8 * np.abs(kernel).sum() or total == 0:
        raise CommandError(f"--kernel: {spec!r} sums to zero; a blur kernel must have a "
                           "non-zero sum (it is divided by its sum)")
    return kernel / total


def blur_operator(spec, boundary, fit_size=None):
    """``Blur`` for ``--kernel SPEC --boundary B``; checks the kernel fits ``fit_size`` pixels."""
    from ..operators import Blur

    kernel = parse_kernel(spec)
    if fit_size is not None and boundary == "circular" and max(kernel.shape) > fit_size:
        raise CommandError(f"--kernel {spec!r}: the kernel ({kernel.shape[0]}x{kernel.shape[1]}) "
                           f"is larger than the {fit_size}x{fit_size} training images; use a "
                           "smaller kernel, larger images or --boundary zero")
    return Blur(kernel, boundary=boundary)


# -- model files ---------------------------------------------------------------------------------
MODEL_SUFFIX = ".pt"
"""What the name of every model or prior file the commands write ends in (files of any name
are read)."""


def check_model_suffix(option, path):
    """Refuse to write a model file whose name does not end in :data:`MODEL_SUFFIX`.

    Raises
    ------
    CommandError
        Naming the file and the name to use instead.
    """
    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise CommandError(f"{option}: model files are named *{MODEL_SUFFIX} (data read with "
                           f"torch.load, never pickled), got {str(path)!r}; write "
                           f"{str(path.with_suffix(MODEL_SUFFIX))!r}")


def save_model(path, estimator, metadata):
    """Write ``estimator`` with ``metadata`` in the one model format (``est.save``'s)."""
    from ..estimators import persistence

    persistence.save(estimator, path, metadata=metadata)
    return Path(path)


def load_model(path):
    """Read a model file written by ``est.save``, ``implicit-inverse train`` or ``demo``.

    Model files are data only: reading one never runs code from it (see
    :mod:`implicit_inverse.estimators.persistence`).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ModelFile
        ``(estimator, metadata)``: the fitted :class:`~implicit_inverse.ImplicitRegressor` and
        the dict the command line stores beside it (``{}`` for a file written by ``est.save``):
        ``command``, ``data``, ``kernel``, ``boundary``, ``noise``, ``size``, ``color``,
        ``seed``, ``gradient``, ``epochs``.

    Raises
    ------
    CommandError
        Missing file, not a model file, or an unfitted or non-implicit estimator.
    """
    from ..estimators import ImplicitRegressor, persistence

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--model: no such file: {str(path)!r}")
    try:
        model = persistence.read(path)
    except (ValueError, TypeError) as error:
        raise CommandError(f"--model: {error}") from None
    estimator = model.estimator
    if not isinstance(estimator, ImplicitRegressor):
        raise CommandError(f"--model: {str(path)!r} holds a {type(estimator).__name__}, not an "
                           "implicit model")
    if not hasattr(estimator, "net_"):
        raise CommandError(f"--model: {str(path)!r} holds an unfitted estimator; train it first")
    return model


def kernel_description(model):
    """How the model's blur was specified (its metadata), or the operator's repr."""
    metadata = model.metadata
    if "kernel" in metadata:
        return f"kernel {metadata['kernel']}, {metadata.get('boundary', 'circular')} boundary"
    return repr(model.estimator.operator_)


# -- output files --------------------------------------------------------------------------------
def plan_outputs(inputs, out, force):
    """Output paths ``out / input.name`` for ``inputs``; refuses every clash before any write.

    Raises
    ------
    CommandError
        ``out`` is a file; two inputs have the same name; an output would replace its own
        input (never allowed, even with ``force``); an output exists and ``force`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: {str(out)!r} exists and is not a folder")
    targets, seen = [], {}
    for source in inputs:
        target = out / source.name
        if target.name in seen:
            raise CommandError(f"{str(source)!r} and {str(seen[target.name])!r} would both be "
                               f"written to {str(target)!r}; give them different names")
        seen[target.name] = source
        if target.exists():
            if target.resolve() == source.resolve():
                raise CommandError(f"{str(source)!r}: --out would overwrite this input photo; "
                                   "choose another output folder")
            if target.is_dir():
                raise CommandError(f"{str(target)!r} is a folder")
            if not force:
                raise CommandError(f"{str(target)!r} already exists; pass --force to overwrite "
                                   "it")
        targets.append(target)
    return targets


def check_photos(paths, max_pixels, operator=None):
    """List the photos of ``paths`` and decode each once (nothing is kept in memory).

    With ``operator``, a photo whose size the operator cannot take (a kernel larger than the
    photo, a size the downsampling factor does not divide) is a ``CommandError`` naming the
    file. Returns the list of files.
    """
    from ..data.image_files import list_images, read_image

    files = list_images(paths)
    for path in files:
        _, info = read_image(path, max_pixels=max_pixels)
        if operator is not None:
            try:
                operator.output_shape((1, info.colour_channels, info.height, info.width))
            except ValueError as error:
                raise CommandError(f"{str(path)!r}: {' '.join(str(error).split())}") from None
    return files


def progress(items, description):
    """A tqdm progress bar over ``items`` on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="file", file=sys.stderr, disable=None,
                leave=False, dynamic_ncols=True)


def say(line):
    """Print a line on stdout without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
