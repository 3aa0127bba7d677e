import numpy as np
import pytest
import torch
from PIL import Image

from implicit_inverse.datasets import (
    PatchDataset,
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


def _fake_celeba(root, n=3):
    """A CelebA layout with ``n`` aligned 218x178 colour images (torchvision's MD5 check is
    bypassed by the test)."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray((rng.random((218, 178, 3)) * 255).astype(np.uint8)).save(
            base / "img_align_celeba" / name)
    rows = lambda values: "".join(f"{name} {values}\n" for name in names)  # noqa: E731
    (base / "list_eval_partition.txt").write_text(rows("0"))
    (base / "identity_CelebA.txt").write_text(rows("1"))
    (base / "list_bbox_celeba.txt").write_text(f"{n}\nx y w h\n" + rows("1 2 3 4"))
    (base / "list_landmarks_align_celeba.txt").write_text(f"{n}\na b\n" + rows("1 2"))
    (base / "list_attr_celeba.txt").write_text(f"{n}\nSmiling\n" + rows("1"))


@pytest.mark.parametrize(("grayscale", "shape"), [(True, (2, 24, 24)), (False, (2, 3, 24, 24))])
def test_load_celeba_in_colour_or_grayscale(tmp_path, monkeypatch, grayscale, shape):
    from torchvision.datasets import CelebA

    _fake_celeba(tmp_path)
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)
    images = load_celeba(tmp_path, size=24, n=2, grayscale=grayscale)
    assert images.shape == shape and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    if not grayscale:
        assert np.abs(images[:, 0] - images[:, 1]).max() > 0.05  # really colour


# -- PatchDataset: random crops streamed from disk -----------------------------------------------
def _photos(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        shape = (30 + 5 * i, 40) + ((3,) if i % 2 else ())
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.mark.parametrize(("grayscale", "channels"), [(True, 1), (False, 3)])
def test_patch_dataset_items(tmp_path, grayscale, channels):
    folder = _photos(tmp_path / "photos")
    patches = PatchDataset(folder, patch_size=16, patches_per_image=4, grayscale=grayscale)
    assert len(patches) == 12 and patches.channels == channels
    items = torch.stack([patches[i] for i in range(len(patches))])
    assert items.shape == (12, channels, 16, 16) and items.dtype == torch.float32
    assert 0 <= float(items.min()) and float(items.max()) <= 1
    assert len({tuple(item.flatten()[:8].tolist()) for item in items}) == 12  # all different
    with pytest.raises(IndexError):
        patches[12]


def test_patch_dataset_is_a_pure_function_of_seed_and_epoch(tmp_path):
    folder = _photos(tmp_path / "photos")
    first = PatchDataset(folder, patch_size=16, random_state=3)
    again = PatchDataset(folder, patch_size=16, random_state=3)
    other = PatchDataset(folder, patch_size=16, random_state=4)
    torch.testing.assert_close(first[5], again[5])
    assert not torch.equal(first[5], other[5])
    epoch0 = [first[i] for i in range(len(first))]
    first.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, (first[i] for i in range(12))))
    first.set_epoch(0)
    assert all(torch.equal(a, first[i]) for i, a in enumerate(epoch0))


def test_patch_dataset_crops_come_from_the_photos(tmp_path):
    from implicit_inverse.data.image_files import read_image

    folder = _photos(tmp_path / "photos", n=1)
    pixels = read_image(folder / "p0.png")[0][0]
    patches = PatchDataset(folder, patch_size=8, patches_per_image=5)
    for i in range(5):
        patch = patches[i][0].numpy()
        windows = np.lib.stride_tricks.sliding_window_view(pixels, (8, 8))
        assert (np.abs(windows - patch).max(axis=(2, 3)) == 0).any()


def test_patch_dataset_works_with_a_data_loader_and_workers(tmp_path):
    folder = _photos(tmp_path / "photos")
    patches = PatchDataset(folder, patch_size=16, patches_per_image=2)
    batches = list(torch.utils.data.DataLoader(patches, batch_size=4, num_workers=1))
    assert [tuple(b.shape) for b in batches] == [(4, 1, 16, 16), (2, 1, 16, 16)]
    torch.testing.assert_close(batches[0][1], patches[1])


def test_patch_dataset_decodes_one_photo_at_a_time(tmp_path, monkeypatch):
    import implicit_inverse.data.patches as module

    folder = _photos(tmp_path / "photos")
    reads = []
    real = module.read_image
    monkeypatch.setattr(module, "read_image", lambda path, **kw: reads.append(path) or
                        real(path, **kw))
    patches = PatchDataset(folder, patch_size=16, patches_per_image=4)
    for i in range(len(patches)):
        patches[i]
    assert len(reads) == 3  # consecutive crops of a photo decode it once
    assert patches._last[0] is not None  # only the last photo is kept


def test_patch_dataset_errors(tmp_path):
    folder = _photos(tmp_path / "photos")
    with pytest.raises(ValueError, match="p0.png.*smaller than the 32x32 patches"):
        PatchDataset(folder, patch_size=32)
    with pytest.raises(ValueError, match="over the limit"):
        PatchDataset(folder, patch_size=16, max_pixels=1000)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="bad.png"):
        PatchDataset(folder, patch_size=16)
    with pytest.raises(ValueError, match="no image files"):
        PatchDataset([], patch_size=16)
    for kwargs in ({"patch_size": 4}, {"patch_size": 16, "patches_per_image": 0},
                   {"patch_size": 16.0}):
        with pytest.raises(ValueError):
            PatchDataset(tmp_path / "photos" / "p0.png", **kwargs)
