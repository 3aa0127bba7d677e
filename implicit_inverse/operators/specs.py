"""Operators named by text: the one kernel grammar, ``"gaussian:9,1.6"`` -> ``Blur``.

The grammar is :data:`KERNEL_GRAMMAR`; the estimators accept it as ``operator=`` and the command
line as ``--kernel`` (which also reads ``.npy`` kernel files).

Examples
--------
>>> from implicit_inverse.operators.specs import parse_kernel, resolve_operator
>>> parse_kernel("gaussian:9,1.6").shape
(9, 9)
>>> resolve_operator("disk:2")
Blur(kernel shape (5, 5), boundary='circular')
"""

from __future__ import annotations

import math

from .base import LinearOperator
from .blur import Blur, disk_kernel, gaussian_kernel, motion_kernel

KERNEL_GRAMMAR = ("gaussian:SIZE,SIGMA, disk:RADIUS (defocus), motion:LENGTH,ANGLE (degrees, "
                  "counter-clockwise)")
"""The kernel specs :func:`parse_kernel` reads, as the help texts and error messages say it."""

KERNELS = {"gaussian": ("SIZE", "SIGMA"), "disk": ("RADIUS",), "motion": ("LENGTH", "ANGLE")}
"""Kernel families by name, with the numbers each takes after the colon."""


def is_kernel_spec(spec):
    """Whether ``spec`` names a kernel family of :data:`KERNELS` (well formed or not).

    Parameters
    ----------
    spec : object

    Returns
    -------
    bool
    """
    return isinstance(spec, str) and spec.partition(":")[0] in KERNELS


def parse_kernel(spec):
    """The 2-D kernel a spec of :data:`KERNEL_GRAMMAR` names.

    Parameters
    ----------
    spec : str
        ``gaussian:SIZE,SIGMA`` (SIZE a positive integer), ``disk:RADIUS`` or
        ``motion:LENGTH,ANGLE``.

    Returns
    -------
    ndarray of shape (kh, kw), float64, summing to 1

    Raises
    ------
    ValueError
        A malformed spec; the message starts with ``kernel 'SPEC':``.
    """
    name, _, rest = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if name not in KERNELS:
        raise ValueError(f"kernel {spec!r}: expected {KERNEL_GRAMMAR}")
    values = _numbers(spec, rest, KERNELS[name])
    try:
        if name == "gaussian":
            size, sigma = values
            if not size.is_integer() or size < 1:
                raise ValueError("SIZE must be a positive integer")
            return gaussian_kernel(int(size), sigma)
        if name == "disk":
            return disk_kernel(*values)
        return motion_kernel(*values)
    except ValueError as error:
        raise ValueError(f"kernel {spec!r}: {error}") from None


def resolve_operator(operator, boundary="circular"):
    """The operator an ``operator=`` parameter names: a ``LinearOperator`` as it is, a kernel
    spec as the circular ``Blur`` of its kernel.

    Parameters
    ----------
    operator : LinearOperator or str
    boundary : {"circular", "zero"}, default "circular"
        Boundary of the ``Blur`` a spec builds.

    Returns
    -------
    LinearOperator

    Raises
    ------
    ValueError
        A string that is not a kernel spec of :data:`KERNEL_GRAMMAR`.
    """
    if isinstance(operator, LinearOperator):
        return operator
    try:
        return Blur(parse_kernel(operator), boundary=boundary)
    except ValueError as error:
        raise ValueError(f"operator={operator!r} is neither a LinearOperator nor a kernel spec: "
                         f"{error}") from None


def _numbers(spec, text, names):
    parts = text.split(",") if text else []
    if len(parts) != len(names):
        raise ValueError(f"kernel {spec!r}: expected {len(names)} number(s) {','.join(names)} "
                         "after the colon")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"kernel {spec!r}: {text!r} is not {len(names)} number(s) "
                         f"{','.join(names)}") from None
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"kernel {spec!r}: values must be finite")
    return values
