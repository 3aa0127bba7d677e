"""Kernel constructors (disk, motion), the kernel grammar ("gaussian:9,1.6") and the norm of a
mask that fixes its own shape."""

import numpy as np
import pytest
import torch

from implicit_inverse.operators import Blur, Mask, dot_test, gaussian_kernel
from implicit_inverse.operators.blur import disk_kernel, motion_kernel
from implicit_inverse.operators.specs import parse_kernel, resolve_operator


@pytest.mark.parametrize("radius, side", [(0.2, 1), (0.5, 1), (1.0, 3), (1.5, 3), (1.6, 5),
                                          (3.0, 7)])
def test_disk_kernel(radius, side):
    kernel = disk_kernel(radius)
    assert kernel.shape == (side, side)
    assert np.isclose(kernel.sum(), 1.0) and kernel.min() >= 0
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])
    assert kernel[side // 2, side // 2] == kernel.max()


def test_disk_area_is_close_to_pi_r_squared():
    kernel = disk_kernel(6.0)
    support = kernel / kernel.max()  # 1 inside, fractional at the rim
    assert abs(support.sum() - np.pi * 36) < 0.5


def test_motion_kernel_shapes_and_symmetry():
    np.testing.assert_allclose(motion_kernel(5, 0), np.full((1, 5), 0.2))
    np.testing.assert_allclose(motion_kernel(5, 90), np.full((5, 1), 0.2))
    diagonal = motion_kernel(7, 45)
    assert diagonal.shape == (5, 5)  # 7 pixels of motion span 5 pixels along each axis
    np.testing.assert_allclose(diagonal, diagonal[::-1, ::-1])
    assert diagonal[0, -1] > 0 and diagonal[-1, 0] > 0 and diagonal[0, 0] == 0  # up-right
    np.testing.assert_allclose(motion_kernel(7, 45), motion_kernel(7, 225))
    for length, angle in [(1, 0), (3.5, 17), (12, 100)]:
        kernel = motion_kernel(length, angle)
        assert np.isclose(kernel.sum(), 1) and all(s % 2 == 1 for s in kernel.shape)


@pytest.mark.parametrize("call, match", [
    (lambda: disk_kernel(0), "radius"), (lambda: disk_kernel(-1), "radius"),
    (lambda: disk_kernel(float("nan")), "radius"), (lambda: disk_kernel(True), "radius"),
    (lambda: motion_kernel(0.5, 0), "length"), (lambda: motion_kernel(3, float("inf")), "angle"),
])
def test_kernel_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kernel", [disk_kernel(2.5), motion_kernel(6, 30)])
@pytest.mark.parametrize("boundary", ["circular", "zero"])
def test_new_kernels_blur_with_an_exact_adjoint(kernel, boundary):
    operator = Blur(kernel, boundary=boundary)
    assert dot_test(operator, (2, 3, 20, 17)) < 1e-10
    flat = operator(torch.ones(1, 1, 20, 17, dtype=torch.float64))
    if boundary == "circular":
        torch.testing.assert_close(flat, torch.ones_like(flat))  # normalised: keeps brightness


def test_mask_norm_uses_the_mask_shape():
    mask = np.random.default_rng(0).random((13, 19)) < 0.5
    assert Mask(mask).norm() == pytest.approx(1.0)
    assert Mask(np.zeros((13, 19))).norm() == 0.0
    assert Mask(fraction=0.3, random_state=1).norm() == pytest.approx(1.0)
    assert Mask(mask).norm((2, 3, 13, 19)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not match"):
        Mask(mask).norm((1, 1, 32, 32))


@pytest.mark.parametrize("spec, kernel", [("gaussian:9,1.6", lambda: gaussian_kernel(9, 1.6)),
                                          ("disk:2", lambda: disk_kernel(2.0)),
                                          ("motion:9,30", lambda: motion_kernel(9.0, 30.0))])
def test_kernel_specs_name_the_kernels(spec, kernel):
    np.testing.assert_array_equal(parse_kernel(spec), kernel())
    operator = resolve_operator(spec)
    assert isinstance(operator, Blur) and operator.boundary == "circular"
    np.testing.assert_array_equal(operator.kernel.numpy(), kernel())


@pytest.mark.parametrize("spec, fragment", [
    ("gaussian:4.5,1", "SIZE must be a positive integer"), ("gaussian:9", "expected 2 number"),
    ("disk:0", "radius"), ("disk:x", "is not 1 number"), ("motion:0.5,0", "length"),
    ("disk:inf", "finite"), ("box:3", "expected gaussian:SIZE,SIGMA"), ("", "expected")])
def test_bad_kernel_specs(spec, fragment):
    with pytest.raises(ValueError, match=f"kernel {spec!r}: .*{fragment}"):
        parse_kernel(spec)
    with pytest.raises(ValueError, match=f"operator={spec!r} is neither"):
        resolve_operator(spec)


def test_an_operator_resolves_to_itself():
    operator = Mask(fraction=0.5)
    assert resolve_operator(operator) is operator
