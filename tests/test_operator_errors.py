"""Bad arguments to ``implicit_inverse.operators`` raise the right exception naming the argument."""

import numpy as np
import pytest
import torch

from implicit_inverse.operators import (
    Blur,
    Downsample,
    Identity,
    Mask,
    dot_test,
    gaussian_kernel,
    make_measurements,
)

GOOD_KERNEL = np.ones((3, 3)) / 9.0


def image(shape=(1, 1, 8, 8), dtype=torch.float64):
    return torch.zeros(shape, dtype=dtype)


def all_operators():
    return [Blur(GOOD_KERNEL), Blur(GOOD_KERNEL, boundary="zero"), Downsample(2),
            Mask(np.ones((8, 8))), Mask(fraction=0.5), Identity(),
            Blur(GOOD_KERNEL) @ Downsample(2).T @ Downsample(2),
            Blur(GOOD_KERNEL).T + 2.0 * Identity(), Mask(fraction=0.5).gram()]


# -- Blur kernel ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("as_torch", [False, True])
def test_non_finite_kernel(value, as_torch):
    kernel = np.ones((3, 3))
    kernel[1, 2] = value
    with pytest.raises(ValueError, match=r"kernel must contain only finite values"):
        Blur(torch.from_numpy(kernel) if as_torch else kernel)


@pytest.mark.parametrize("kernel", [np.ones(3), np.ones((2, 3, 3)), np.ones((1, 1, 3, 3)),
                                    np.float64(1.0), torch.ones(5)],
                         ids=["1-D", "3-D", "4-D", "0-D", "torch 1-D"])
def test_kernel_of_wrong_rank(kernel):
    with pytest.raises(ValueError, match=r"kernel must be 2-D"):
        Blur(kernel)


@pytest.mark.parametrize("kernel", [np.ones((0, 3)), np.ones((3, 0)), np.ones((0, 0))])
def test_empty_kernel(kernel):
    with pytest.raises(ValueError, match=r"kernel must be non-empty"):
        Blur(kernel)


def test_empty_list_kernel():
    with pytest.raises(ValueError, match=r"kernel must be"):
        Blur([])


@pytest.mark.parametrize("kernel", ["abc", [["a", "b"], ["c", "d"]], [[object(), 1]], None,
                                    {"a": 1}, np.ones((3, 3), dtype=bool),
                                    np.ones((3, 3), dtype=complex), [[1, 2], [3]]],
                         ids=["str", "str array", "object", "None", "dict", "bool", "complex",
                              "ragged"])
def test_kernel_not_real_numbers(kernel):
    with pytest.raises(TypeError, match=r"kernel must be a 2-D array of real numbers"):
        Blur(kernel)


@pytest.mark.parametrize("kernel_shape,image_shape", [((9, 3), (8, 8)), ((3, 9), (8, 8)),
                                                       ((4, 4), (3, 17))])
def test_kernel_larger_than_image_for_circular_boundary(kernel_shape, image_shape):
    op = Blur(np.ones(kernel_shape))
    x = image((1, 1) + image_shape)
    match = r"kernel of shape .* is larger than the image.*boundary='zero'"
    with pytest.raises(ValueError, match=match):
        op(x)
    with pytest.raises(ValueError, match=match):
        op.adjoint(x)
    with pytest.raises(ValueError, match=match):
        op.solve_normal(x, 1.0)
    with pytest.raises(ValueError, match=match):
        op.norm(shape=(1, 1) + image_shape)
    with pytest.raises(ValueError, match=match):  # also through the operator algebra
        (op.T + Identity())(x)
    Blur(np.ones(kernel_shape), boundary="zero")(x)  # the zero boundary takes any kernel


@pytest.mark.parametrize("boundary", ["periodic", "Circular", "", None, 0, "reflect"])
def test_unknown_boundary(boundary):
    with pytest.raises(ValueError, match=r"boundary must be one of \('circular', 'zero'\)"):
        Blur(GOOD_KERNEL, boundary=boundary)


# -- gaussian_kernel --------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0, 0.0, -1.0, np.nan, np.inf, True, "1", None])
def test_gaussian_kernel_bad_sigma(sigma):
    with pytest.raises(ValueError, match=r"sigma must be a finite number > 0"):
        gaussian_kernel(5, sigma)


@pytest.mark.parametrize("size", [0, -3, 2.5, 3.0, True, "5", None])
def test_gaussian_kernel_bad_size(size):
    with pytest.raises(ValueError, match=r"size must be a positive integer"):
        gaussian_kernel(size, 1.0)


# -- Downsample -------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0, -2, 2.0, 1.5, True, False, "2", None])
def test_bad_factor(factor):
    with pytest.raises(ValueError, match=r"factor must be an integer >= 1"):
        Downsample(factor)


@pytest.mark.parametrize("shape", [(1, 1, 9, 8), (1, 1, 8, 9), (2, 3, 5, 5)])
def test_image_size_not_multiple_of_factor(shape):
    op = Downsample(2)
    match = r"image size .* is not a multiple of factor=2"
    with pytest.raises(ValueError, match=match):
        op(image(shape))
    with pytest.raises(ValueError, match=match):
        op.output_shape(shape)
    with pytest.raises(ValueError, match=match):
        op.solve_normal(image(shape), 1.0)
    with pytest.raises(ValueError, match=match):
        op.norm(shape=shape)
    with pytest.raises(ValueError, match=match):
        dot_test(op, shape)
    with pytest.raises(ValueError, match=match):
        make_measurements(image(shape), op)


# -- input tensors ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", all_operators(), ids=repr)
@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 1, 1, 8, 8), ()])
def test_input_not_4d(op, shape):
    x = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^x must be 4-D shaped \(N, C, H, W\)"):
        op(x)
    with pytest.raises(ValueError, match=r"^y must be 4-D shaped \(N, C, H, W\)"):
        op.adjoint(x)
    with pytest.raises(ValueError, match=r"^b must be 4-D shaped \(N, C, H, W\)"):
        op.solve_normal(x, 1.0)


@pytest.mark.parametrize("op", all_operators(), ids=repr)
@pytest.mark.parametrize("value", [np.zeros((1, 1, 8, 8)), [[[[0.0] * 8] * 8]], None, 1.0],
                         ids=["numpy", "list", "None", "float"])
def test_input_not_a_tensor(op, value):
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        op(value)
    with pytest.raises(TypeError, match=r"^y must be a torch.Tensor"):
        op.adjoint(value)
    with pytest.raises(TypeError, match=r"^b must be a torch.Tensor"):
        op.solve_normal(value, 1.0)


@pytest.mark.parametrize("op", all_operators(), ids=repr)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool,
                                   torch.complex64, torch.complex128])
def test_input_not_real_floating(op, dtype):
    x = torch.zeros((1, 1, 8, 8), dtype=dtype)
    with pytest.raises(TypeError, match=r"^x must have a real floating dtype"):
        op(x)
    with pytest.raises(TypeError, match=r"^y must have a real floating dtype"):
        op.adjoint(x)
    with pytest.raises(TypeError, match=r"^b must have a real floating dtype"):
        op.solve_normal(x, 1.0)


# -- Mask -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 8, 9), (1, 1, 9, 8), (2, 2, 4, 4)])
def test_mask_shape_not_matching_image(shape):
    op = Mask(np.ones((8, 8)))
    match = r"mask of shape \(8, 8\) does not match the image size"
    with pytest.raises(ValueError, match=match):
        op(image(shape))
    with pytest.raises(ValueError, match=match):
        op.adjoint(image(shape))
    with pytest.raises(ValueError, match=match):
        op.solve_normal(image(shape), 1.0)
    with pytest.raises(ValueError, match=match):
        (Blur(GOOD_KERNEL) @ op)(image(shape))


@pytest.mark.parametrize("mask", [np.full((4, 4), 0.5), np.full((4, 4), 2), -np.ones((4, 4)),
                                  np.full((4, 4), np.nan), torch.full((4, 4), 0.3)],
                         ids=["0.5", "2", "-1", "nan", "torch 0.3"])
def test_mask_values_not_binary(mask):
    with pytest.raises(ValueError, match=r"mask must contain only 0/1"):
        Mask(mask)


@pytest.mark.parametrize("mask", [np.ones(4), np.ones((1, 4, 4))])
def test_mask_wrong_rank(mask):
    with pytest.raises(ValueError, match=r"mask must be 2-D"):
        Mask(mask)


def test_mask_ragged():
    with pytest.raises(TypeError, match=r"mask must be a boolean or 0/1 array"):
        Mask([[1, 0], [1]])


def test_mask_empty():
    with pytest.raises(ValueError, match=r"mask must be non-empty"):
        Mask(np.ones((0, 4)))


@pytest.mark.parametrize("mask", ["abc", [[object()]], np.ones((2, 2), dtype=complex) * 0],
                         ids=["str", "object", "complex"])
def test_mask_not_numbers(mask):
    with pytest.raises(TypeError, match=r"mask must be a boolean or 0/1 array"):
        Mask(mask)


def test_mask_and_fraction_both_or_neither():
    match = r"exactly one of mask .* or fraction"
    with pytest.raises(ValueError, match=match):
        Mask()
    with pytest.raises(ValueError, match=match):
        Mask(np.ones((4, 4)), fraction=0.5)


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.0001, 2, np.nan, np.inf, True, "0.5"])
def test_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match=r"fraction must be a float in \(0, 1\]"):
        Mask(fraction=fraction)


@pytest.mark.parametrize("random_state", [1.5, "0", True, np.random.default_rng(0)])
def test_mask_bad_random_state(random_state):
    with pytest.raises(TypeError, match=r"random_state must be an int or None"):
        Mask(fraction=0.5, random_state=random_state)


# -- norm, solve_normal, dot_test -------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [0, -1, 1.5, 10.0, True, None, "10"])
def test_norm_bad_max_iter(max_iter):
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1"):
        Identity().norm(max_iter=max_iter)


@pytest.mark.parametrize("tol", [-1e-6, np.nan, None, "1e-6"])
def test_norm_bad_tol(tol):
    with pytest.raises(ValueError, match=r"tol must be a real number >= 0"):
        Identity().norm(tol=tol)


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 8), (1, 1, 1, 8, 8), (1, 0, 8, 8), (0, 1, 8, 8)])
def test_norm_bad_shape(shape):
    with pytest.raises(ValueError, match=r"shape must be 4 positive ints"):
        Identity().norm(shape=shape)


@pytest.mark.parametrize("op", [Identity(), Blur(GOOD_KERNEL, boundary="zero"),
                                Blur(GOOD_KERNEL) @ Downsample(2).T], ids=repr)
@pytest.mark.parametrize("max_iter", [0, -1, 2.5, True, None])
def test_solve_normal_bad_max_iter(op, max_iter):
    b = image((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1"):
        op.solve_normal(b, 1.0, max_iter=max_iter)


@pytest.mark.parametrize("tol", [-1.0, np.nan, None])
def test_solve_normal_bad_tol(tol):
    with pytest.raises(ValueError, match=r"tol must be a real number >= 0"):
        Blur(GOOD_KERNEL, boundary="zero").solve_normal(image(), 1.0, tol=tol)


@pytest.mark.parametrize("lam", [-0.1, np.nan, None, "1"])
def test_solve_normal_bad_lam(lam):
    with pytest.raises(ValueError, match=r"lam must be a real number >= 0"):
        Identity().solve_normal(image(), lam)


@pytest.mark.parametrize("op", [Downsample(2), Mask(np.eye(8)),
                                Blur(np.array([[1.0, 1.0]]))], ids=repr)
def test_solve_normal_lam_zero_where_singular(op):
    with pytest.raises(ValueError, match=r"lam must be > 0"):
        op.solve_normal(image(), 0.0)


def test_dot_test_non_operator():
    with pytest.raises(TypeError, match=r"operator must be a LinearOperator"):
        dot_test(lambda x: x, (1, 1, 4, 4))


def test_sum_of_mismatched_shapes():
    with pytest.raises(ValueError, match=r"cannot add operators with output shapes"):
        (Downsample(2) + Identity())(image())


def test_algebra_with_non_operators():
    with pytest.raises(TypeError):
        Identity() @ 2.0
    with pytest.raises(TypeError):
        Identity() + 1.0
    with pytest.raises(TypeError):
        Identity() * "2"
    with pytest.raises(TypeError):
        Identity() * True


# -- make_measurements ------------------------------------------------------------------------


@pytest.mark.parametrize("noise_std", [-0.1, np.nan, np.inf, True, "0.1", None])
def test_make_measurements_bad_noise_std(noise_std):
    with pytest.raises(ValueError, match=r"noise_std must be a finite number >= 0"):
        make_measurements(np.zeros((1, 4, 4)), Identity(), noise_std=noise_std)


@pytest.mark.parametrize("operator", [None, lambda x: x, "blur", Blur], ids=repr)
def test_make_measurements_non_operator(operator):
    with pytest.raises(TypeError, match=r"operator must be a LinearOperator"):
        make_measurements(np.zeros((1, 4, 4)), operator)


@pytest.mark.parametrize("clean", [np.zeros((1, 4, 4), dtype=int), np.zeros((1, 4, 4), dtype=bool),
                                   torch.zeros((1, 4, 4), dtype=torch.int64),
                                   np.zeros((1, 4, 4), dtype=complex),
                                   np.zeros((1, 4, 4), dtype=object),
                                   torch.zeros((1, 4, 4), dtype=torch.complex64)],
                         ids=["int", "bool", "torch int", "complex", "object", "torch complex"])
def test_make_measurements_non_floating_clean(clean):
    with pytest.raises(TypeError, match=r"clean must have a real floating dtype"):
        make_measurements(clean, Identity())


@pytest.mark.parametrize("shape", [(4,), (4, 4), (1, 1, 1, 4, 4)])
@pytest.mark.parametrize("as_numpy", [True, False])
def test_make_measurements_wrong_rank(shape, as_numpy):
    clean = np.zeros(shape) if as_numpy else torch.zeros(shape)
    with pytest.raises(ValueError, match=r"clean must be shaped \(N, H, W\) or \(N, C, H, W\)"):
        make_measurements(clean, Identity())


@pytest.mark.parametrize("clean", [[[[0.0]]], None, "img"], ids=["list", "None", "str"])
def test_make_measurements_clean_not_an_array(clean):
    with pytest.raises(TypeError, match=r"clean must be a numpy array or torch tensor"):
        make_measurements(clean, Identity())
