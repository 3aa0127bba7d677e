"""The :class:`LinearOperator` base class, its algebra and the adjoint dot test.

Every forward model acts on batched images shaped ``(N, C, H, W)``. Subclasses implement
``_forward``, ``_adjoint`` and ``output_shape``; this module supplies validation, the adjoint as an
operator (``op.T``), composition (``a @ b``), sums, scalar multiples, the normal operator
(``op.gram()``), the operator norm by power iteration and regularised normal-equation solves
(``op.solve_normal(b, lam)``, conjugate gradients unless a subclass knows a closed form).
"""

from __future__ import annotations

import abc
import numbers

import torch


def check_image_batch(x, name="x"):
    """Raise a clear error unless ``x`` is a real floating tensor shaped (N, C, H, W).

    Parameters
    ----------
    x : object
        The value to check.
    name : str
        The argument name used in the error message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor shaped (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D shaped (N, C, H, W), got {x.ndim}-D with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")


class LinearOperator(abc.ABC):
    """A linear forward model A acting on image batches shaped (N, C, H, W).

    Subclasses implement ``_forward(x)``, ``_adjoint(y)``, ``output_shape(shape)`` and
    ``input_shape(shape)``; they may override ``_solve_normal`` with a closed form and
    ``_check_input_shape`` to reject images they cannot take.

    Operators are stateless with respect to their inputs: inputs are never modified in place and
    outputs keep the input's dtype and device.
    """

    # -- what subclasses provide ------------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x):
        """``A x`` on a validated batch."""

    @abc.abstractmethod
    def _adjoint(self, y):
        """``A^T y`` on a validated batch."""

    def output_shape(self, shape):
        """Shape of ``A x`` for an input of shape ``shape`` (N, C, H, W); same shape by default."""
        self._check_input_shape(tuple(shape))
        return tuple(shape)

    def input_shape(self, shape):
        """Shape of ``A^T y`` for a measurement of shape ``shape``; same shape by default."""
        return tuple(shape)

    def _check_input_shape(self, shape):
        """Raise ``ValueError`` if this operator cannot take images of ``shape``."""

    def fourier_multiplier(self, shape, dtype=torch.float32, device="cpu"):
        """``A``'s multiplier on the image's real FFT grid, or ``None``.

        Operators that are diagonal in the Fourier basis of the image itself (``A x =
        irfft2(K * rfft2(x))``: circular blur) return ``K``, letting maps fuse their FFTs; all
        others return ``None`` (the default).

        Parameters
        ----------
        shape : tuple (N, C, H, W)
            The image shape.
        dtype, device : of the images.

        Returns
        -------
        torch.Tensor of shape (H, W // 2 + 1), complex, or None
        """
        return None

    # -- public application -----------------------------------------------------------------
    def forward(self, x):
        """Apply the operator: ``A x``.

        Parameters
        ----------
        x : torch.Tensor of shape (N, C, H, W)
            Real floating image batch.

        Returns
        -------
        torch.Tensor of shape ``self.output_shape(x.shape)``
        """
        check_image_batch(x, "x")
        self._check_input_shape(tuple(x.shape))
        return self._forward(x)

    __call__ = forward

    def adjoint(self, y):
        """Apply the adjoint: ``A^T y``.

        Parameters
        ----------
        y : torch.Tensor of shape (N, C, H', W')
            Real floating measurement batch.

        Returns
        -------
        torch.Tensor of shape ``self.input_shape(y.shape)``
        """
        check_image_batch(y, "y")
        self._check_input_shape(self.input_shape(tuple(y.shape)))
        return self._adjoint(y)

    @property
    def T(self):
        """The adjoint operator ``A^T`` as a :class:`LinearOperator`."""
        return _Adjoint(self)

    def gram(self):
        """The normal operator ``A^T A`` as a :class:`LinearOperator`."""
        return self.T @ self

    # -- algebra ----------------------------------------------------------------------------
    def __matmul__(self, other):
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _Composed(self, other)

    def __add__(self, other):
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _Sum(self, other)

    def __sub__(self, other):
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _Sum(self, _Scaled(other, -1.0))

    def __mul__(self, scalar):
        if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
            return NotImplemented
        return _Scaled(self, float(scalar))

    __rmul__ = __mul__

    def __neg__(self):
        return _Scaled(self, -1.0)

    # -- numerical tools --------------------------------------------------------------------
    def norm(self, shape=(1, 1, 32, 32), max_iter=100, tol=1e-6, dtype=torch.float64,
             device="cpu", seed=0):
        """Operator norm ``||A||_2`` by power iteration on ``A^T A``.

        Parameters
        ----------
        shape : tuple of 4 ints, default (1, 1, 32, 32)
            Input shape on which the norm is estimated (it can depend on the image size).
        max_iter : int, default 100
            Maximum number of power iterations.
        tol : float, default 1e-6
            Stop when the relative change of the estimate falls below ``tol``.
        dtype, device : torch dtype and device of the iteration.
        seed : int, default 0
            Seed of the deterministic random starting vector.

        Returns
        -------
        float
            The estimated largest singular value.
        """
        _check_iteration_options(max_iter, tol)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"shape must be 4 positive ints (N, C, H, W), got {shape}")
        self._check_input_shape(shape)
        generator = torch.Generator().manual_seed(seed)
        v = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        v = v / v.norm()
        estimate = 0.0
        for _ in range(max_iter):
            w = self._adjoint(self._forward(v))
            new_estimate = float(torch.sum(v * w))
            w_norm = w.norm()
            if w_norm == 0:
                return 0.0
            v = w / w_norm
            if abs(new_estimate - estimate) <= tol * abs(new_estimate):
                estimate = new_estimate
                break
            estimate = new_estimate
        return max(estimate, 0.0) ** 0.5

    def solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        """Solve ``(A^T A + lam I) z = b`` for ``z``.

        Closed forms are used where the operator allows (circular blur, mask, downsampling,
        identity); conjugate gradients otherwise.

        Parameters
        ----------
        b : torch.Tensor of shape (N, C, H, W)
            Right-hand side in the image domain.
        lam : float
            Regularisation weight, > 0 (``lam = 0`` is allowed only where ``A^T A`` is
            invertible).
        max_iter, tol : conjugate-gradient cap and relative residual tolerance.

        Returns
        -------
        torch.Tensor of shape (N, C, H, W)
        """
        check_image_batch(b, "b")
        self._check_input_shape(tuple(b.shape))
        if not (isinstance(lam, numbers.Real) and lam >= 0):
            raise ValueError(f"lam must be a real number >= 0, got {lam!r}")
        _check_iteration_options(max_iter, tol)
        return self._solve_normal(b, float(lam), max_iter=max_iter, tol=tol)

    def tikhonov(self, d, lam):
        """The Tikhonov solution ``(A^T A + lam I)^{-1} A^T d``: the one Tikhonov
        reconstruction (baseline, and starting point of the fixed-point maps).

        Parameters
        ----------
        d : torch.Tensor of shape (N, C, H', W')
            Measurements.
        lam : float > 0

        Returns
        -------
        torch.Tensor of shape (N, C, H, W)
        """
        return self.solve_normal(self.adjoint(d), lam)

    def _solve_normal(self, b, lam, max_iter=200, tol=1e-8):
        return conjugate_gradient(lambda z: self._adjoint(self._forward(z)) + lam * z, b,
                                  max_iter=max_iter, tol=tol)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_iteration_options(max_iter, tol):
    """Raise ``ValueError`` unless ``max_iter`` is an integer >= 1 and ``tol`` a real >= 0."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a real number >= 0, got {tol!r}")


def conjugate_gradient(apply, b, max_iter=200, tol=1e-8):
    """Batched conjugate gradients for a symmetric positive definite ``apply``.

    Each sample of the batch (first axis) is solved independently.

    Parameters
    ----------
    apply : callable mapping a tensor shaped like ``b`` to one of the same shape.
    b : torch.Tensor of shape (N, ...)
    max_iter : int
    tol : float
        Relative residual ``||r|| / ||b||`` per sample at which to stop.

    Returns
    -------
    torch.Tensor shaped like ``b``
    """
    dims = tuple(range(1, b.ndim))
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dims, keepdim=True)
    b_norm2 = rs.clone()
    for _ in range(max_iter):
        if bool(torch.all(rs <= (tol ** 2) * b_norm2)):
            break
        ap = apply(p)
        denominator = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(denominator > 0, rs / torch.where(denominator > 0, denominator, 1),
                            torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dims, keepdim=True)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1), torch.zeros_like(rs))
        p = r + beta * p
        rs = rs_new
    return x


def dot_test(operator, input_shape, dtype=torch.float64, seed=0):
    """Relative gap of the adjoint identity ``<A x, y> = <x, A^T y>`` on random tensors.

    Parameters
    ----------
    operator : LinearOperator
    input_shape : tuple of 4 ints
        Shape (N, C, H, W) of ``x``; ``y`` gets ``operator.output_shape(input_shape)``.
    dtype : torch.dtype, default torch.float64
    seed : int, default 0

    Returns
    -------
    float
        ``|<A x, y> - <x, A^T y>| / max(|<A x, y>|, tiny)``; about 1e-15 in float64 for a correct
        adjoint.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(input_shape), generator=generator, dtype=dtype)
    y = torch.randn(operator.output_shape(tuple(input_shape)), generator=generator, dtype=dtype)
    lhs = float(torch.sum(operator(x) * y))
    rhs = float(torch.sum(x * operator.adjoint(y)))
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs), torch.finfo(dtype).tiny)


class _Adjoint(LinearOperator):
    """The adjoint of an operator; ``op.T.T`` returns ``op`` itself."""

    def __init__(self, operator):
        self.operator = operator

    def _forward(self, x):
        return self.operator._adjoint(x)

    def _adjoint(self, y):
        return self.operator._forward(y)

    def output_shape(self, shape):
        return self.operator.input_shape(shape)

    def input_shape(self, shape):
        return self.operator.output_shape(shape)

    def _check_input_shape(self, shape):
        self.operator._check_input_shape(self.operator.input_shape(shape))

    @property
    def T(self):
        return self.operator

    def __repr__(self):
        return f"{self.operator!r}.T"


class _Composed(LinearOperator):
    """``outer @ inner``: apply ``inner`` first, then ``outer``."""

    def __init__(self, outer, inner):
        self.outer = outer
        self.inner = inner

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))

    def output_shape(self, shape):
        return self.outer.output_shape(self.inner.output_shape(shape))

    def input_shape(self, shape):
        return self.inner.input_shape(self.outer.input_shape(shape))

    def _check_input_shape(self, shape):
        self.inner._check_input_shape(shape)
        self.outer._check_input_shape(self.inner.output_shape(shape))

    def __repr__(self):
        return f"({self.outer!r} @ {self.inner!r})"


class _Sum(LinearOperator):
    """``left + right``; both must map the same input shape to the same output shape."""

    def __init__(self, left, right):
        self.left = left
        self.right = right

    def _forward(self, x):
        return self.left._forward(x) + self.right._forward(x)

    def _adjoint(self, y):
        return self.left._adjoint(y) + self.right._adjoint(y)

    def output_shape(self, shape):
        left, right = self.left.output_shape(shape), self.right.output_shape(shape)
        if left != right:
            raise ValueError(f"cannot add operators with output shapes {left} and {right}")
        return left

    def input_shape(self, shape):
        return self.left.input_shape(shape)

    def _check_input_shape(self, shape):
        self.left._check_input_shape(shape)
        self.right._check_input_shape(shape)
        self.output_shape(shape)

    def __repr__(self):
        return f"({self.left!r} + {self.right!r})"


class _Scaled(LinearOperator):
    """``scalar * operator``."""

    def __init__(self, operator, scalar):
        self.operator = operator
        self.scalar = scalar

    def _forward(self, x):
        return self.scalar * self.operator._forward(x)

    def _adjoint(self, y):
        return self.scalar * self.operator._adjoint(y)

    def output_shape(self, shape):
        return self.operator.output_shape(shape)

    def input_shape(self, shape):
        return self.operator.input_shape(shape)

    def _check_input_shape(self, shape):
        self.operator._check_input_shape(shape)

    def __repr__(self):
        return f"{self.scalar!r} * {self.operator!r}"
