"""Clean image sets for training and evaluating reconstruction models.

Everything here returns float32 numpy arrays with values in [0, 1]:
``(n, size, size)`` for grayscale images, ``(n, 3, size, size)`` for colour.

Offline sources (no download ever happens):

- :func:`load_faces`: the 100 face images of ``skimage.data.lfw_subset()``;
- :func:`load_natural_patches`: patches of scikit-image's bundled sample photos;
- :func:`train_test_faces`: the held-out recipe built from the two above;
- :func:`load_image_folder`: any folder of image files on disk, every image resized whole and
  held in memory;
- :class:`PatchDataset`: random crops of a folder of photos, streamed from disk one file at a
  time (a torch ``Dataset``; memory does not grow with the number of files);
- :func:`load_celeba`: a CelebA copy already on disk, through torchvision.
"""

import functools
import numbers
import os
from pathlib import Path

import numpy as np
from skimage import color, data, transform
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.utils import check_random_state

from .patches import PatchDataset
from .photos import TRAINING_PHOTOS

__all__ = [
    "PatchDataset",
    "load_celeba",
    "load_faces",
    "load_image_folder",
    "load_natural_patches",
    "train_test_faces",
]

N_FACES = 100
"""Number of face images in ``skimage.data.lfw_subset()`` (its first 100 images)."""

NATURAL_IMAGES = TRAINING_PHOTOS
"""Names of the ``skimage.data`` images used by :func:`load_natural_patches` (all offline): the
training photos only; the held-out ``camera`` and ``coffee`` are never among them."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File extensions (case-insensitive) read by :func:`load_image_folder`."""

_PATCH_SCALE = 128  # source images are downscaled until their short side nears this
_MAX_DOWNSCALE = 4


def _check_int(value, name, low, high=None):
    """Check that ``value`` is an int in ``[low, high]`` and return it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}.")
    return int(value)


def _as_random_state(random_state):
    """Return a :class:`numpy.random.RandomState` for an int, None, RandomState or Generator."""
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(random_state.integers(2**32 - 1))
    try:
        return check_random_state(random_state)
    except ValueError as exc:
        raise TypeError(
            "random_state must be None, an int, a numpy RandomState or a numpy Generator, "
            f"got {type(random_state).__name__}."
        ) from exc


def load_faces(size=32, n=None):
    """Load the Labeled Faces in the Wild subset bundled with scikit-image.

    The first 100 images of :func:`skimage.data.lfw_subset` are faces (25x25,
    grayscale); they are resized with :func:`skimage.transform.resize`
    (bilinear, anti-aliased) to ``size x size``.

    Parameters
    ----------
    size : int, default=32
        Side of the returned square images, at least 8.
    n : int or None, default=None
        Number of faces, from 1 to 100, taken in order; None means all 100.

    Returns
    -------
    faces : ndarray of shape (n, size, size), dtype float32
        Values in [0, 1].

    Examples
    --------
    >>> load_faces(size=16, n=3).shape
    (3, 16, 16)
    """
    size = _check_int(size, "size", 8)
    n = N_FACES if n is None else _check_int(n, "n", 1, N_FACES)
    faces = data.lfw_subset()[:n]
    if faces.shape[1:] != (size, size):
        faces = transform.resize(faces, (n, size, size), order=1, anti_aliasing=True)
    return np.clip(faces, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _natural_sources():
    """Grayscale ``skimage.data`` images in [0, 1], each as an (H, W) float32 array.

    Cached: loading and converting the images takes most of a second.
    """
    images = []
    for name in NATURAL_IMAGES:
        image = getattr(data, name)()
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        image = image.astype(np.float32)
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        image.setflags(write=False)
        images.append(image)
    return tuple(images)


def _downscale(image, size):
    """Downscale ``image`` by an integer factor (1 to 4) by block averaging.

    The factor brings the short side near 128 pixels (never below ``2 * size``),
    so that patches hold face-scale structure rather than flat texture.
    """
    factor = min(image.shape) // max(_PATCH_SCALE, 2 * size)
    factor = int(np.clip(factor, 1, _MAX_DOWNSCALE))
    if factor == 1:
        return image
    return transform.downscale_local_mean(image, (factor, factor)).astype(np.float32)


def load_natural_patches(n, size=32, random_state=None):
    """Cut square patches from scikit-image's bundled sample photographs.

    The sources are the grayscale versions of the images in :data:`NATURAL_IMAGES`
    (astronaut, chelsea, ..., retina; never the held-out camera and coffee), each rescaled
    to [0, 1] by its own minimum and maximum, then downscaled 1 to 4 times by block averaging. The
    ``n`` patches are spread evenly across the sources that are at least ``size``
    pixels on each side (extra patches go to randomly chosen sources), cut at
    random positions with :func:`sklearn.feature_extraction.image.extract_patches_2d`,
    and returned in random order.

    Parameters
    ----------
    n : int
        Number of patches, at least 1.
    size : int, default=32
        Side of the square patches, from 8 to 172 (the shortest source image).
    random_state : int, RandomState, Generator or None, default=None
        Seed or generator; an int gives the same patches on every call.

    Returns
    -------
    patches : ndarray of shape (n, size, size), dtype float32
        Values in [0, 1].

    Examples
    --------
    >>> load_natural_patches(4, size=16, random_state=0).shape
    (4, 16, 16)
    """
    n = _check_int(n, "n", 1)
    size = _check_int(size, "size", 8)
    rng = _as_random_state(random_state)
    sources = [_downscale(image, size) for image in _natural_sources()]
    sources = [image for image in sources if min(image.shape) >= size]
    if not sources:
        raise ValueError(f"size={size} is larger than every source image; use a smaller size.")
    counts = np.full(len(sources), n // len(sources))
    counts[rng.choice(len(sources), n % len(sources), replace=False)] += 1
    patches = [
        extract_patches_2d(image, (size, size), max_patches=int(count), random_state=rng)
        for image, count in zip(sources, counts)
        if count > 0
    ]
    patches = np.concatenate(patches)[rng.permutation(n)]
    return np.clip(patches, 0.0, 1.0).astype(np.float32)


def train_test_faces(size=32, n_test=20, n_patches=600, random_state=0):
    """Clean training and held-out test images: the project's evaluation recipe.

    The test set is the last ``n_test`` of the 100 faces of :func:`load_faces`.
    The training set is the remaining faces (in order) followed by ``n_patches``
    natural-image patches from :func:`load_natural_patches`. No test face is in the
    training set, so test scores measure generalisation to unseen faces.

    Parameters
    ----------
    size : int, default=32
        Side of the square images, at least 8.
    n_test : int, default=20
        Number of held-out faces, from 1 to 99.
    n_patches : int, default=600
        Number of natural patches added to the training set, at least 0.
    random_state : int, RandomState, Generator or None, default=0
        Seed for the patches.

    Returns
    -------
    train : ndarray of shape (100 - n_test + n_patches, size, size), dtype float32
        Faces ``0 .. 99 - n_test`` then the patches, values in [0, 1].
    test : ndarray of shape (n_test, size, size), dtype float32
        Faces ``100 - n_test .. 99``, values in [0, 1].

    Examples
    --------
    >>> train, test = train_test_faces(size=16, n_test=10, n_patches=5)
    >>> train.shape, test.shape
    ((95, 16, 16), (10, 16, 16))
    """
    n_test = _check_int(n_test, "n_test", 1, N_FACES - 1)
    n_patches = _check_int(n_patches, "n_patches", 0)
    faces = load_faces(size=size)
    train, test = faces[: N_FACES - n_test], faces[N_FACES - n_test :]
    if n_patches > 0:
        patches = load_natural_patches(n_patches, size=size, random_state=random_state)
        train = np.concatenate([train, patches])
    return np.ascontiguousarray(train), np.ascontiguousarray(test)


def _image_transform(size, grayscale):
    """torchvision v2 transform: PIL image -> float32 tensor (C, size, size) in [0, 1]."""
    import torch
    from torchvision.transforms import v2

    # Convert to float first: grayscale and resizing then do not truncate to uint8.
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if grayscale:
        steps.append(v2.Grayscale(num_output_channels=1))
    steps.append(v2.Resize((size, size), antialias=True))
    return v2.Compose(steps)


def _stack(images, grayscale):
    """Stack (C, size, size) tensors into the documented numpy layout."""
    array = np.stack([image.numpy() for image in images]).astype(np.float32)
    array = np.clip(array, 0.0, 1.0)
    return array[:, 0] if grayscale else array


def load_image_folder(path, size, grayscale=True):
    """Load every image of a folder (recursively), resized to ``size x size``.

    Files whose extension is in :data:`IMAGE_EXTENSIONS` (png, jpg, jpeg, bmp, tif,
    tiff; any case) and whose name does not start with a dot (hidden files, such as
    macOS ``._*`` files, are skipped) are read in sorted path order with torchvision's default
    loader (PIL), converted to grayscale (ITU-R 601-2 luma) when asked, and resized
    with anti-aliasing to exactly ``size x size`` (the aspect ratio is not kept).

    Parameters
    ----------
    path : str or path-like
        Folder to search; sub-folders are searched too.
    size : int
        Side of the returned square images, at least 1.
    grayscale : bool, default=True
        Return one channel (True) or RGB (False).

    Returns
    -------
    images : ndarray of shape (n, size, size) or (n, 3, size, size), dtype float32
        ``(n, size, size)`` when ``grayscale`` else ``(n, 3, size, size)``; values in [0, 1].

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    NotADirectoryError
        If ``path`` is not a folder.
    ValueError
        If the folder holds no image file, or a file cannot be decoded.
    """
    from PIL import UnidentifiedImageError
    from torchvision.datasets.folder import default_loader

    size = _check_int(size, "size", 1)
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"Image folder not found: {str(folder)!r}.")
    if not folder.is_dir():
        raise NotADirectoryError(f"path must be a folder of images, got a file: {str(folder)!r}.")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise ValueError(
            f"No image files found in {str(folder)!r} (searched recursively for extensions "
            f"{', '.join(IMAGE_EXTENSIONS)})."
        )
    to_tensor = _image_transform(size, grayscale)
    images = []
    for file in files:
        try:
            images.append(to_tensor(default_loader(os.fspath(file))))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"Cannot read image file {str(file)!r}: {exc}") from exc
    return _stack(images, grayscale)


_CELEBA_SPLITS = ("train", "valid", "test", "all")
_CELEBA_FILES = (
    "list_eval_partition.txt",
    "list_attr_celeba.txt",
    "identity_CelebA.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
)


def load_celeba(root, split="train", size=64, n=None, grayscale=True):
    """Load aligned CelebA faces from a local copy, in grayscale or colour.

    Reads through :class:`torchvision.datasets.CelebA` with ``download=False``:
    nothing is ever downloaded. The files must already be at
    ``root/celeba/img_align_celeba/*.jpg`` together with
    ``root/celeba/list_eval_partition.txt``, ``list_attr_celeba.txt``,
    ``identity_CelebA.txt``, ``list_bbox_celeba.txt`` and
    ``list_landmarks_align_celeba.txt`` (torchvision checks their MD5 sums).
    Images (178x218, RGB) are converted to grayscale when asked and resized with
    anti-aliasing to ``size x size`` (the aspect ratio is not kept).

    Parameters
    ----------
    root : str or path-like
        Folder that contains the ``celeba`` folder.
    split : {"train", "valid", "test", "all"}, default="train"
        Official partition to read.
    size : int, default=64
        Side of the returned square images, at least 8.
    n : int or None, default=None
        Number of images, taken in order from the split (at most its length); None
        reads the whole split (162,770 images for "train": slow, and about 2.7 GB at
        size 64 in grayscale, three times more in colour).
    grayscale : bool, default True
        One channel (ITU-R 601-2 luma) or RGB (False).

    Returns
    -------
    images : ndarray of shape (n, size, size) or (n, 3, size, size), dtype float32
        ``(n, size, size)`` when ``grayscale`` else ``(n, 3, size, size)``; values in [0, 1].

    Examples
    --------
    Colour faces of 128 x 128 pixels, for a model trained with ``grayscale=False``::

        faces = load_celeba("~/data", split="train", size=128, n=2000, grayscale=False)

    Raises
    ------
    FileNotFoundError
        If the CelebA files are missing or corrupted under ``root``.
    """
    from torchvision.datasets import CelebA

    if split not in _CELEBA_SPLITS:
        raise ValueError(f"split must be one of {_CELEBA_SPLITS}, got {split!r}.")
    size = _check_int(size, "size", 8)
    if n is not None:
        n = _check_int(n, "n", 1)
    base = Path(root).expanduser() / "celeba"
    try:
        dataset = CelebA(
            os.path.expanduser(root), split=split, target_type=[],
            transform=_image_transform(size, grayscale), download=False,
        )  # fmt: skip
    except (RuntimeError, OSError) as exc:
        raise FileNotFoundError(
            f"CelebA not found or corrupted under {str(base)!r}: expected the images in "
            f"{str(base / 'img_align_celeba')!r} and the files {', '.join(_CELEBA_FILES)} in "
            f"{str(base)!r}. Nothing is downloaded; fetch CelebA yourself and place it there."
        ) from exc
    if n is not None and n > len(dataset):
        raise ValueError(f"n={n} exceeds the {len(dataset)} images of the {split!r} split.")
    count = len(dataset) if n is None else n
    return _stack([dataset[i][0] for i in range(count)], grayscale=grayscale)
