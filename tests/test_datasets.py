import numpy as np
import pytest
from PIL import Image

from implicit_inverse.datasets import (
    load_celeba,
    load_faces,
    load_image_folder,
    load_natural_patches,
    train_test_faces,
)


@pytest.mark.parametrize(("size", "n", "expected"), [(32, None, 100), (25, 7, 7), (8, 1, 1)])
def test_load_faces_shape_dtype_range(size, n, expected):
    faces = load_faces(size=size, n=n)
    assert faces.shape == (expected, size, size)
    assert faces.dtype == np.float32
    assert faces.min() >= 0.0 and faces.max() <= 1.0
    assert faces.std() > 0.05


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"size": 7}, ValueError), ({"size": 32.0}, TypeError), ({"n": 0}, ValueError),
    ({"n": 101}, ValueError), ({"n": True}, TypeError),
])  # fmt: skip
def test_load_faces_validation(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        load_faces(**kwargs)


def test_natural_patches_shape_range_and_determinism():
    a = load_natural_patches(40, size=16, random_state=0)
    b = load_natural_patches(40, size=16, random_state=0)
    c = load_natural_patches(40, size=16, random_state=1)
    assert a.shape == (40, 16, 16) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_natural_patches_accept_generators():
    a = load_natural_patches(5, size=8, random_state=np.random.default_rng(3))
    b = load_natural_patches(5, size=8, random_state=np.random.default_rng(3))
    c = load_natural_patches(5, size=8, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)
    assert c.shape == (5, 8, 8)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n": 0}, ValueError, "n"), ({"n": 3, "size": 4}, ValueError, "size"),
    ({"n": 3, "size": 10_000}, ValueError, "size"),
    ({"n": 3, "random_state": "seed"}, TypeError, "random_state"),
])  # fmt: skip
def test_natural_patches_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_natural_patches(**kwargs)


def test_train_test_faces_are_disjoint():
    train, test = train_test_faces(size=16, n_test=10, n_patches=20, random_state=0)
    assert train.shape == (110, 16, 16) and test.shape == (10, 16, 16)
    assert train.dtype == test.dtype == np.float32
    faces = load_faces(size=16)
    np.testing.assert_array_equal(test, faces[90:])
    np.testing.assert_array_equal(train[:90], faces[:90])
    distances = np.abs(test[:, None] - train[None]).max(axis=(2, 3))
    assert distances.min() > 1e-3  # no test face appears in the training set


def test_train_test_faces_without_patches_and_validation():
    train, test = train_test_faces(size=8, n_test=1, n_patches=0)
    assert train.shape == (99, 8, 8) and test.shape == (1, 8, 8)
    with pytest.raises(ValueError, match="n_test"):
        train_test_faces(n_test=100)


def _write_images(folder):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    gray = (rng.random((20, 30)) * 255).astype(np.uint8)
    rgb = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(gray).save(folder / "a.png")
    Image.fromarray(rgb).save(folder / "sub" / "b.PNG")
    Image.fromarray(rgb).save(folder / "c.bmp")
    (folder / "notes.txt").write_text("not an image")
    (folder / "._a.png").write_bytes(b"macOS resource fork, skipped")


@pytest.mark.parametrize(("grayscale", "shape"), [(True, (3, 16, 16)), (False, (3, 3, 16, 16))])
def test_load_image_folder(tmp_path, grayscale, shape):
    _write_images(tmp_path)
    images = load_image_folder(tmp_path, size=16, grayscale=grayscale)
    assert images.shape == shape and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.05


def test_load_image_folder_constant_image_values(tmp_path):
    Image.fromarray(np.full((10, 10), 51, dtype=np.uint8)).save(tmp_path / "x.png")
    images = load_image_folder(str(tmp_path), size=5)
    np.testing.assert_allclose(images, 0.2, atol=1e-3)  # luma weights sum to 0.9999


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing", size=8)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"No image files.*\.png"):
        load_image_folder(tmp_path, size=8)
    with pytest.raises(NotADirectoryError):
        load_image_folder(tmp_path / "notes.txt", size=8)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(tmp_path, size=8)


def test_load_celeba_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba.*Nothing is downloaded"):
        load_celeba(tmp_path, n=2)
    assert not (tmp_path / "celeba").exists()


def test_load_celeba_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_celeba(tmp_path, split="validation")
