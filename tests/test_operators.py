"""Property tests for ``implicit_inverse.operators``.

Operators are drawn at random (shapes 3..17, odd and non-square; random non-symmetric kernels of
odd and even size; both blur boundaries; downsampling factors; masks; the identity) and combined
with the operator algebra (``a @ b``, ``a + b``, ``a - b``, ``s * a``, ``-a``, ``.T``, ``gram()``)
up to two levels deep. Every check is made in float64 against a dense matrix, a direct
``conv2d`` or the defining equation.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from implicit_inverse.operators import (
    Blur,
    Downsample,
    Identity,
    LinearOperator,
    Mask,
    dot_test,
    gaussian_kernel,
    make_measurements,
)

SETTINGS = settings(max_examples=25, deadline=None)
DTYPE = torch.float64
ADJOINT_RTOL = 1e-10

# -- strategies -------------------------------------------------------------------------------


@st.composite
def image_shapes(draw, max_side=17):
    """(N, C, H, W) with H, W in 3..17 and a common divisor in 1..4 (so Downsample fits)."""
    factor = draw(st.integers(1, 4))
    low = max(1, math.ceil(3 / factor))
    height = factor * draw(st.integers(low, max_side // factor))
    width = factor * draw(st.integers(low, max_side // factor))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), height, width)


@st.composite
def kernels(draw, max_h=9, max_w=9):
    """A random non-symmetric kernel, odd or even size, with absolute sum 1 (so ||A|| <= 1)."""
    kh, kw = draw(st.integers(1, max_h)), draw(st.integers(1, max_w))
    kernel = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((kh, kw))
    kernel = kernel / np.abs(kernel).sum()
    return torch.from_numpy(kernel) if draw(st.booleans()) else kernel


@st.composite
def base_operators(draw, shape, preserving=False):
    """One of the concrete operators, valid for images of ``shape``."""
    kinds = ["blur_circular", "blur_zero", "mask_array", "mask_fraction", "identity"]
    if not preserving:
        kinds.append("downsample")
    kind = draw(st.sampled_from(kinds))
    height, width = shape[2:]
    if kind == "blur_circular":
        return Blur(draw(kernels(min(height, 9), min(width, 9))), boundary="circular")
    if kind == "blur_zero":  # the kernel may be larger than the image
        return Blur(draw(kernels()), boundary="zero")
    if kind == "mask_array":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        mask = rng.random((height, width)) < draw(st.floats(0.1, 0.9))
        as_type = draw(st.sampled_from(["bool", "float", "int", "torch"]))
        mask = {"bool": mask, "float": mask.astype(float), "int": mask.astype(int),
                "torch": torch.from_numpy(mask)}[as_type]
        return Mask(mask)
    if kind == "mask_fraction":
        return Mask(fraction=draw(st.floats(0.05, 1.0)),
                    random_state=draw(st.none() | st.integers(0, 1000)))
    if kind == "downsample":
        common = math.gcd(height, width)
        return Downsample(draw(st.sampled_from([f for f in range(1, 5) if common % f == 0])))
    return Identity()


@st.composite
def preserving_operators(draw, shape):
    """An operator mapping images of ``shape`` to the same shape (possibly transposed/scaled)."""
    op = draw(base_operators(shape, preserving=True))
    wrap = draw(st.sampled_from(["none", "T", "scaled", "gram"]))
    if wrap == "T":
        return op.T
    if wrap == "scaled":
        return draw(st.floats(-2, 2)) * op
    if wrap == "gram":
        return op.gram()
    return op


@st.composite
def operator_cases(draw, depth=2):
    """``(operator, input_shape)`` built with the operator algebra up to ``depth`` levels."""
    forms = ["base"] if depth == 0 else ["base", "compose", "sum", "sub", "scaled", "neg", "T",
                                         "gram"]
    form = draw(st.sampled_from(forms))
    if form == "base":
        shape = draw(image_shapes())
        return draw(base_operators(shape)), shape
    op, shape = draw(operator_cases(depth - 1))
    if form == "T":
        return op.T, op.output_shape(shape)
    if form == "gram":
        return op.gram(), shape
    if form == "scaled":
        return draw(st.floats(-2, 2)) * op, shape
    if form == "neg":
        return -op, shape
    out = op.output_shape(shape)
    if form == "compose":
        return draw(base_operators(out)) @ op, shape
    # sum / difference: the other term must map ``shape`` to ``out`` as well
    if out == shape:
        other = draw(preserving_operators(shape))
    elif out[2] < shape[2]:
        other = draw(preserving_operators(out)) @ Downsample(shape[2] // out[2])
    else:
        other = Downsample(out[2] // shape[2]).T @ draw(preserving_operators(shape))
    if draw(st.booleans()):
        op, other = other, op
    return (op + other if form == "sum" else op - other), shape


def single_channel(shape):
    return (1, 1) + tuple(shape[2:])


def dense_matrix(op, shape):
    """The matrix of ``op`` on single-channel images of ``shape``, built from basis vectors."""
    _, _, height, width = shape
    n = height * width
    basis = torch.eye(n, dtype=DTYPE).reshape(n, 1, height, width)
    columns = op(basis)  # the batch axis runs over the basis vectors
    return columns.reshape(n, -1).T.numpy()


def randn(shape, seed, dtype=DTYPE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def conv2d_reference(x, kernel, boundary):
    """The blur written directly with ``conv2d``: a true convolution centred at (kh//2, kw//2)."""
    kernel = torch.as_tensor(kernel, dtype=x.dtype)
    kh, kw = kernel.shape
    pad = (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2)
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    if boundary == "circular":
        padded = F.pad(flat, pad, mode="circular")
    else:
        padded = F.pad(flat, pad, mode="constant", value=0.0)
    return F.conv2d(padded, kernel.flip(0, 1)[None, None]).reshape(n, c, h, w)


def direct_blur(x, kernel, boundary):
    """The docstring's formula, summed term by term: (A x)[i, j] = sum k[p, q] x[i-p+ch, j-q+cw]."""
    kernel = np.asarray(kernel)
    kh, kw = kernel.shape
    ch, cw = kh // 2, kw // 2
    x = x.numpy()
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    for p in range(kh):
        for q in range(kw):
            for i in range(h):
                for j in range(w):
                    si, sj = i - p + ch, j - q + cw
                    if boundary == "circular":
                        si, sj = si % h, sj % w
                    elif not (0 <= si < h and 0 <= sj < w):
                        continue
                    out[..., i, j] += kernel[p, q] * x[..., si, sj]
    return torch.from_numpy(out)


# -- adjointness ------------------------------------------------------------------------------


@SETTINGS
@given(case=operator_cases(), seed=st.integers(0, 2**31 - 1))
def test_adjoint_identity(case, seed):
    op, shape = case
    assert dot_test(op, shape, seed=seed) <= ADJOINT_RTOL
    x = randn(shape, seed)
    y = randn(op.output_shape(shape), seed + 1)
    lhs = torch.sum(op(x) * y).item()
    rhs = torch.sum(x * op.adjoint(y)).item()
    assert abs(lhs - rhs) <= ADJOINT_RTOL * max(abs(lhs), abs(rhs), 1e-300)


@SETTINGS
@given(case=operator_cases(depth=1))
def test_dense_adjoint_is_transpose(case):
    op, shape = case
    shape = single_channel(shape)
    matrix = dense_matrix(op, shape)
    adjoint_matrix = dense_matrix(op.T, op.output_shape(shape))
    np.testing.assert_allclose(adjoint_matrix, matrix.T, rtol=0, atol=1e-12)


@SETTINGS
@given(case=operator_cases(), seed=st.integers(0, 2**31 - 1))
def test_double_transpose_is_the_operator(case, seed):
    op, shape = case
    double = op.T.T
    x = randn(shape, seed)
    y = randn(op.output_shape(shape), seed + 1)
    assert double.output_shape(shape) == op.output_shape(shape)
    torch.testing.assert_close(double(x), op(x), rtol=0, atol=0)
    torch.testing.assert_close(double.adjoint(y), op.adjoint(y), rtol=0, atol=0)


def test_transpose_of_transpose_is_same_object():
    op = Blur(np.ones((3, 2)))
    assert op.T.T is op


@SETTINGS
@given(case=operator_cases(depth=1), seed=st.integers(0, 2**31 - 1))
def test_algebra_matches_its_definition(case, seed):
    a, shape = case
    b = Mask(fraction=0.5, random_state=seed % 1000)
    out = a.output_shape(shape)
    x = randn(shape, seed)
    y = randn(out, seed + 1)
    torch.testing.assert_close((b @ a)(x), b(a(x)))
    torch.testing.assert_close((a.T @ b)(y), a.adjoint(b(y)))
    torch.testing.assert_close((2.5 * a)(x), 2.5 * a(x))
    torch.testing.assert_close((a * -1.5)(x), -1.5 * a(x))
    torch.testing.assert_close((-a)(x), -a(x))
    torch.testing.assert_close((a + a)(x), 2 * a(x))
    torch.testing.assert_close((a - a)(x), torch.zeros(out, dtype=DTYPE))
    torch.testing.assert_close(a.T(y), a.adjoint(y))
    torch.testing.assert_close(a.gram()(x), a.adjoint(a(x)))


# -- operator norm ----------------------------------------------------------------------------


@SETTINGS
@given(case=operator_cases(depth=1))
def test_norm_matches_dense_largest_singular_value(case):
    op, shape = case
    shape = single_channel(shape)
    singular_values = np.sort(np.linalg.svd(dense_matrix(op, shape), compute_uv=False))[::-1]
    expected = singular_values[0]
    # power iteration converges like (s2 / s1)^(2k): give it enough steps for the spectral gap
    # (20,000 steps resolve a gap of 1e-3 to e^-40); closer singular values only to 1e-3
    gap = (expected - singular_values[1]) / expected if len(singular_values) > 1 and expected > 0 \
        else 1.0
    estimate = op.norm(shape=shape, max_iter=1000 if gap >= 1e-2 else 20000, tol=1e-12)
    rel = 1e-4 if gap >= 1e-3 else 1e-3
    assert estimate == pytest.approx(expected, rel=rel, abs=1e-12)
    assert estimate <= expected * (1 + 1e-10) + 1e-12  # a Rayleigh quotient never overshoots


@pytest.mark.parametrize("op", [
    Blur(gaussian_kernel(5, 1.2)),
    Blur(gaussian_kernel(4, 1.0), boundary="zero"),
    Blur(np.arange(12.0).reshape(3, 4) - 4.0, boundary="zero"),
    Downsample(4),
    Mask(fraction=0.3, random_state=1),
    Identity(),
    3.0 * Downsample(2).T,
], ids=repr)
def test_norm_with_default_settings(op):
    shape = (1, 1, 16, 16)
    expected = np.linalg.svd(dense_matrix(op, shape), compute_uv=False).max()
    assert op.norm(shape=shape) == pytest.approx(expected, rel=1e-4)


# -- blur against a direct implementation -----------------------------------------------------


@SETTINGS
@given(shape=image_shapes(), data=st.data(), boundary=st.sampled_from(["circular", "zero"]),
       seed=st.integers(0, 2**31 - 1))
def test_blur_matches_conv2d(shape, data, boundary, seed):
    limit = (min(shape[2], 9), min(shape[3], 9)) if boundary == "circular" else (11, 11)
    kernel = data.draw(kernels(*limit))
    x = randn(shape, seed)
    expected = conv2d_reference(x, kernel, boundary)
    torch.testing.assert_close(Blur(kernel, boundary)(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("boundary", ["circular", "zero"])
@pytest.mark.parametrize("kernel_shape", [(1, 1), (3, 3), (2, 3), (4, 2), (5, 4)])
def test_blur_matches_the_documented_formula(boundary, kernel_shape):
    kernel = np.random.default_rng(7).standard_normal(kernel_shape)
    x = randn((1, 2, 5, 6), 3)
    expected = direct_blur(x, kernel, boundary)
    torch.testing.assert_close(Blur(kernel, boundary)(x), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conv2d_reference(x, kernel, boundary), expected, rtol=1e-10,
                               atol=1e-12)


def test_blur_delta_kernel_at_centre_is_identity():
    x = randn((2, 1, 7, 8), 0)
    for kh, kw in [(3, 3), (4, 4), (3, 2)]:
        kernel = np.zeros((kh, kw))
        kernel[kh // 2, kw // 2] = 1.0
        for boundary in ("circular", "zero"):
            torch.testing.assert_close(Blur(kernel, boundary)(x), x, rtol=0, atol=1e-12)


# -- regularised normal equations -------------------------------------------------------------


@SETTINGS
@given(case=operator_cases(), lam=st.sampled_from([0.1, 0.5, 1.0, 10.0]),
       seed=st.integers(0, 2**31 - 1))
def test_solve_normal_satisfies_the_normal_equations(case, lam, seed):
    op, shape = case
    b = randn(shape, seed)
    z = op.solve_normal(b, lam, max_iter=500, tol=1e-10)
    assert z.shape == b.shape and z.dtype == b.dtype
    residual = op.adjoint(op(z)) + lam * z - b
    assert residual.norm() <= 1e-7 * b.norm()


@pytest.mark.parametrize("op", [
    Blur(np.random.default_rng(0).random((4, 3))),
    Blur(np.random.default_rng(0).random((4, 3)), boundary="zero"),
    Downsample(2), Downsample(1), Mask(fraction=0.4, random_state=0), Identity(),
    Blur(gaussian_kernel(3, 1.0), boundary="zero") @ Downsample(2).T,
], ids=repr)
def test_solve_normal_matches_dense_solve(op):
    shape = (1, 1, 8, 10) if "T" not in repr(op) else (1, 1, 4, 5)
    matrix = dense_matrix(op, shape)
    b = randn(shape, 5)
    lam = 0.3
    z = op.solve_normal(b, lam)
    expected = np.linalg.solve(matrix.T @ matrix + lam * np.eye(matrix.shape[1]),
                               b.reshape(-1).numpy())
    np.testing.assert_allclose(z.reshape(-1).numpy(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", [Identity(), Downsample(1), Blur(np.ones((1, 1)) * 2.0)],
                         ids=repr)
def test_solve_normal_lam_zero_where_invertible(op):
    b = randn((1, 1, 6, 6), 0)
    z = op.solve_normal(b, 0)
    torch.testing.assert_close(op.adjoint(op(z)), b)


# -- dtype, device and purity -----------------------------------------------------------------


def example_operators():
    kernel = np.random.default_rng(1).random((4, 3))
    return [Blur(kernel), Blur(kernel, boundary="zero"), Downsample(2),
            Mask(fraction=0.5, random_state=3), Mask(np.eye(8, 12) > 0), Identity(),
            (Blur(kernel) @ Mask(fraction=0.5)).gram() + 0.5 * Identity()]


def _dtype_cases():
    for op in example_operators():
        for dtype in (torch.float32, torch.float64):
            yield op, dtype
        if isinstance(op, Blur):
            yield op, torch.float16


@pytest.mark.parametrize("op,dtype", list(_dtype_cases()), ids=lambda v: repr(v))
def test_dtype_is_preserved(op, dtype):
    shape = (2, 3, 8, 12)
    x = randn(shape, 0).to(dtype)
    y = op(x)
    assert y.dtype == dtype and y.shape == op.output_shape(shape)
    back = op.adjoint(y)
    assert back.dtype == dtype and back.shape == shape
    z = op.solve_normal(x, 0.5)
    assert z.dtype == dtype and z.shape == shape
    assert bool(torch.isfinite(z).all())
    if dtype != torch.float64:  # the low-precision result agrees with float64
        tolerance = 1e-2 if dtype == torch.float16 else 1e-5
        reference = op(x.double())
        assert (y.double() - reference).norm() <= tolerance * reference.norm()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("op", example_operators(), ids=repr)
def test_device_is_preserved(op):
    shape = (2, 1, 8, 12)
    x = randn(shape, 0)
    expected = op(x)
    y = op(x.cuda())
    assert y.device.type == "cuda"
    assert op.adjoint(y).device.type == "cuda"
    assert op.solve_normal(x.cuda(), 0.5).device.type == "cuda"
    torch.testing.assert_close(y.cpu(), expected)


@pytest.mark.parametrize("op", example_operators(), ids=repr)
def test_outputs_on_cpu_stay_on_cpu(op):
    x = randn((1, 1, 8, 12), 0)
    assert op(x).device == x.device
    assert op.adjoint(op(x)).device == x.device
    assert op.solve_normal(x, 1.0).device == x.device


@pytest.mark.parametrize("op", example_operators(), ids=repr)
def test_inputs_are_not_modified(op):
    shape = (2, 1, 8, 12)
    x = randn(shape, 0)
    y = randn(op.output_shape(shape), 1)
    x_copy, y_copy = x.clone(), y.clone()
    out = op(x)
    out += 1.0  # writing to the output must not reach the input either
    op.adjoint(y).mul_(2.0)
    op.solve_normal(x, 0.5).mul_(2.0)
    op.gram()(x)
    torch.testing.assert_close(x, x_copy, rtol=0, atol=0)
    torch.testing.assert_close(y, y_copy, rtol=0, atol=0)
    clean = x.numpy().copy()
    make_measurements(clean, op, noise_std=0.1, random_state=0)
    np.testing.assert_array_equal(clean, x_copy.numpy())


def test_kernel_argument_is_not_kept_by_reference():
    kernel = np.ones((3, 3))
    tensor_kernel = torch.ones(3, 3)
    op, op_t = Blur(kernel), Blur(tensor_kernel)
    x = randn((1, 1, 6, 6), 0)
    before, before_t = op(x), op_t(x)
    kernel[:] = 5.0
    tensor_kernel.fill_(5.0)
    torch.testing.assert_close(op(x), before)
    torch.testing.assert_close(op_t(x), before_t)


def test_kernel_with_grad_is_accepted():
    kernel = torch.ones(3, 3, requires_grad=True)
    Blur(kernel)(randn((1, 1, 5, 5), 0))


# -- gaussian kernel --------------------------------------------------------------------------


@SETTINGS
@given(size=st.integers(1, 25), sigma=st.floats(0.05, 20.0))
def test_gaussian_kernel_properties(size, sigma):
    kernel = gaussian_kernel(size, sigma)
    assert kernel.shape == (size, size) and kernel.dtype == np.float64
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(kernel >= 0)
    np.testing.assert_allclose(kernel, kernel.T, rtol=0, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1, :], rtol=0, atol=1e-15)
    if size % 2:
        centre = size // 2
        assert kernel[centre, centre] == kernel.max()
        assert np.unravel_index(np.argmax(kernel), kernel.shape) == (centre, centre)
    else:
        top = kernel[size // 2 - 1:size // 2 + 1, size // 2 - 1:size // 2 + 1]
        np.testing.assert_allclose(top, kernel.max(), rtol=1e-12)


def test_gaussian_kernel_accepts_numpy_scalars():
    np.testing.assert_array_equal(gaussian_kernel(np.int64(5), np.float32(1.5)),
                                  gaussian_kernel(5, 1.5))


# -- mask -------------------------------------------------------------------------------------


@SETTINGS
@given(fraction=st.floats(0.05, 1.0), random_state=st.none() | st.integers(0, 10_000),
       height=st.integers(3, 17), width=st.integers(3, 17), seed=st.integers(0, 2**31 - 1))
def test_mask_is_an_orthogonal_projection(fraction, random_state, height, width, seed):
    op = Mask(fraction=fraction, random_state=random_state)
    x = randn((2, 2, height, width), seed)
    once = op(x)
    torch.testing.assert_close(op(once), once, rtol=0, atol=0)
    torch.testing.assert_close(op.adjoint(x), once, rtol=0, atol=0)
    values = op.mask_for(height, width)
    assert set(torch.unique(values).tolist()) <= {0.0, 1.0}
    expected = 1.0 if values.any() else 0.0
    assert op.norm(shape=(1, 1, height, width)) == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(random_state=st.none() | st.integers(0, 10_000), fraction=st.floats(0.05, 1.0))
def test_mask_is_deterministic_for_a_random_state(random_state, fraction):
    a = Mask(fraction=fraction, random_state=random_state)
    b = Mask(fraction=fraction, random_state=random_state)
    x = randn((1, 1, 12, 9), 0)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)  # no state change between calls
    torch.testing.assert_close(a.mask_for(12, 9), b.mask_for(12, 9, dtype=torch.float64).float())


def test_mask_depends_on_random_state():
    a = Mask(fraction=0.5, random_state=1).mask_for(32, 32)
    b = Mask(fraction=0.5, random_state=2).mask_for(32, 32)
    assert not torch.equal(a, b)
    # None means seed 0
    torch.testing.assert_close(Mask(fraction=0.5).mask_for(32, 32),
                               Mask(fraction=0.5, random_state=0).mask_for(32, 32))


@SETTINGS
@given(fraction=st.floats(0.05, 1.0), random_state=st.integers(0, 10_000))
def test_mask_fraction_is_roughly_honoured(fraction, random_state):
    values = Mask(fraction=fraction, random_state=random_state).mask_for(64, 64)
    # binomial with n = 4096: 6 standard deviations is at most 0.047
    assert abs(values.mean().item() - fraction) <= 0.05


def test_mask_fraction_one_observes_everything():
    x = randn((1, 1, 9, 7), 0)
    torch.testing.assert_close(Mask(fraction=1.0)(x), x, rtol=0, atol=0)


def test_mask_from_array_is_applied_pixelwise():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = mask[3, 0] = True
    x = randn((2, 3, 4, 5), 0)
    expected = x * torch.from_numpy(mask).double()
    torch.testing.assert_close(Mask(mask)(x), expected, rtol=0, atol=0)
    assert Mask(np.zeros((4, 5))).norm(shape=(1, 1, 4, 5)) == 0.0


# -- make_measurements ------------------------------------------------------------------------


@pytest.mark.parametrize("as_numpy", [True, False])
@pytest.mark.parametrize("layout", [(3, 8, 8), (3, 2, 8, 8)])
@pytest.mark.parametrize("op", [Blur(gaussian_kernel(3, 1.0)), Downsample(2), Identity(),
                                Mask(fraction=0.5)], ids=repr)
def test_make_measurements_layout_and_type(as_numpy, layout, op):
    clean = np.random.default_rng(0).standard_normal(layout).astype(np.float32)
    data = clean if as_numpy else torch.from_numpy(clean)
    out = make_measurements(data, op, noise_std=0.1, random_state=3)
    assert isinstance(out, np.ndarray if as_numpy else torch.Tensor)
    assert out.dtype == (np.float32 if as_numpy else torch.float32)
    batch = (layout[0], 1, *layout[1:]) if len(layout) == 3 else layout
    expected = op.output_shape(batch)
    if len(layout) == 3:
        expected = (expected[0], *expected[2:])
    assert tuple(out.shape) == expected
    if isinstance(op, Downsample):
        assert tuple(out.shape[-2:]) == (4, 4)


@pytest.mark.parametrize("as_numpy", [True, False])
def test_make_measurements_is_reproducible(as_numpy):
    clean = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    data = clean if as_numpy else torch.from_numpy(clean)
    op = Blur(gaussian_kernel(3, 1.0))
    first = make_measurements(data, op, noise_std=0.2, random_state=11)
    second = make_measurements(data, op, noise_std=0.2, random_state=11)
    other = make_measurements(data, op, noise_std=0.2, random_state=12)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    # numpy and torch inputs give the same measurements for the same seed
    twin = make_measurements(torch.from_numpy(clean) if as_numpy else clean, op, noise_std=0.2,
                             random_state=11)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(twin))
    rng = make_measurements(data, op, noise_std=0.2, random_state=np.random.default_rng(11))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(rng))


def test_make_measurements_without_noise_is_the_operator():
    clean = randn((2, 1, 8, 8), 0)
    op = Downsample(2)
    torch.testing.assert_close(make_measurements(clean, op), op(clean), rtol=0, atol=0)
    out = make_measurements(clean.numpy(), op, noise_std=0.0)
    np.testing.assert_array_equal(out, op(clean).numpy())


@pytest.mark.parametrize("noise_std", [0.05, 0.3, 2.0])
def test_make_measurements_noise_std(noise_std):
    clean = torch.zeros(4, 1, 64, 64, dtype=torch.float64)
    noisy = make_measurements(clean, Identity(), noise_std=noise_std, random_state=0)
    # 16384 samples: the sample std is within 2% of the true one with near certainty
    assert noisy.std().item() == pytest.approx(noise_std, rel=0.03)
    assert abs(noisy.mean().item()) <= 0.05 * noise_std


def test_make_measurements_keeps_gradients_out():
    clean = randn((1, 1, 6, 6), 0).requires_grad_(True)
    out = make_measurements(clean, Identity(), noise_std=0.1, random_state=0)
    assert not out.requires_grad


def test_operators_are_linear_operators():
    for op in example_operators():
        assert isinstance(op, LinearOperator)
        assert isinstance(op.T, LinearOperator) and isinstance(op.gram(), LinearOperator)
