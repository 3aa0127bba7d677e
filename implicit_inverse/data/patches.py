"""Random square crops of photos on disk, read one file at a time: a torch ``Dataset``.

:class:`PatchDataset` holds the list of files, not their pixels: reading patch ``i`` decodes
one photo (the last decoded photo is kept, so the patches of a photo, which are consecutive,
decode it once per epoch), so its memory is that of one photo whatever the number of files.
Also available as :class:`implicit_inverse.datasets.PatchDataset`.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .image_files import MAX_PIXELS, ImageFileError, list_images, probe_image, read_image

__all__ = ["LUMA_WEIGHTS", "PatchDataset"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights of R, G and B: colour photos read as grayscale (Pillow's "L")."""


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def to_channels(pixels, grayscale):
    """Colour channels of ``pixels`` (C, H, W) as 1 (luma) or 3 (RGB) channels; alpha dropped.

    Parameters
    ----------
    pixels : ndarray of shape (C, H, W)
        C = 1, 2 (with alpha), 3 or 4 (with alpha), as :func:`~implicit_inverse.image_files.
        read_image` returns.
    grayscale : bool
        True: one channel (colour is converted with :data:`LUMA_WEIGHTS`); False: RGB (a
        grayscale photo is repeated in the three channels).

    Returns
    -------
    ndarray of shape (1, H, W) or (3, H, W), float32
    """
    colour = pixels[:1] if pixels.shape[0] <= 2 else pixels[:3]
    if grayscale and colour.shape[0] == 3:
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32).reshape(3, 1, 1)
        colour = (colour * weights).sum(axis=0, keepdims=True)
    elif not grayscale and colour.shape[0] == 1:
        colour = np.repeat(colour, 3, axis=0)
    return np.ascontiguousarray(colour, dtype=np.float32)


class PatchDataset(torch.utils.data.Dataset):
    """Random ``patch_size x patch_size`` crops of photos, decoded from disk when asked for.

    Item ``i`` of an epoch is crop ``i % patches_per_image`` of photo ``order[i //
    patches_per_image]``, where ``order`` is a permutation of the files drawn for the epoch
    (:meth:`set_epoch`); each crop position is drawn independently, so the same photo gives new
    crops every epoch. Everything is a pure function of ``(random_state, epoch, i)``.

    Parameters
    ----------
    photos : str, path-like or sequence of them
        Files and folders (searched recursively for PNG, JPEG and TIFF files), as for
        :func:`~implicit_inverse.image_files.list_images`.
    patch_size : int
        Side of the square crops, >= 8. Every photo must be at least this large.
    patches_per_image : int, default 4
        Crops of each photo per epoch.
    grayscale : bool, default True
        One luma channel (True) or RGB (False); alpha channels are dropped.
    random_state : int, default 0
        Seed of the file order and the crop positions.
    max_pixels : int or None, default :data:`~implicit_inverse.image_files.MAX_PIXELS`
        Refuse photos with more pixels.

    Attributes
    ----------
    files : list of pathlib.Path
    epoch : int
        The current epoch (0 until :meth:`set_epoch`).

    Raises
    ------
    ImageFileError
        (a ``ValueError``) when no photo is found, or a photo is not a readable PNG, JPEG or
        TIFF, is over ``max_pixels`` or smaller than ``patch_size``: checked on every file's
        header when the dataset is made; a corrupt file whose header is sound fails when it is
        read.

    Notes
    -----
    The items are clean images. To train an estimator, measure them through its operator: the
    estimators re-measure the clean images of every batch (fresh noise of ``noise_std``), so
    noise-free measurements ``A y`` are enough, a bounded chunk at a time::

        loader = torch.utils.data.DataLoader(patches, batch_size=512)
        for epoch in range(10):
            patches.set_epoch(epoch)
            for clean in loader:
                est.partial_fit(operator(clean), clean)

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((40, 30), np.uint8)).save(folder / "a.png")
    >>> patches = PatchDataset(folder, patch_size=16, patches_per_image=3)
    >>> len(patches), tuple(patches[0].shape)
    (3, (1, 16, 16))
    """

    def __init__(self, photos, patch_size, patches_per_image=4, grayscale=True, random_state=0,
                 max_pixels=MAX_PIXELS):
        self.patch_size = _check_int(patch_size, "patch_size", 8)
        self.patches_per_image = _check_int(patches_per_image, "patches_per_image", 1)
        self.grayscale = bool(grayscale)
        self.random_state = _check_int(random_state, "random_state", 0)
        self.max_pixels = max_pixels
        self.files = list_images(photos)
        for path in self.files:
            info = probe_image(path)
            if max_pixels is not None and info.height * info.width > max_pixels:
                raise ImageFileError(f"{str(path)!r}: {info.width}x{info.height} pixels is over "
                                     f"the limit of {max_pixels:,} pixels")
            if min(info.height, info.width) < self.patch_size:
                raise ImageFileError(f"{str(path)!r}: {info.width}x{info.height} is smaller than "
                                     f"the {self.patch_size}x{self.patch_size} patches")
        self.epoch = 0
        self._order = self._draw_order()
        self._last = (None, None)

    @property
    def channels(self):
        """1 (grayscale) or 3 (RGB)."""
        return 1 if self.grayscale else 3

    def set_epoch(self, epoch):
        """Draw the file order and crop positions of ``epoch`` (an int >= 0)."""
        self.epoch = _check_int(epoch, "epoch", 0)
        self._order = self._draw_order()

    def _draw_order(self):
        rng = np.random.default_rng([self.random_state, self.epoch])
        return rng.permutation(len(self.files))

    def __len__(self):
        return len(self.files) * self.patches_per_image

    def __getitem__(self, index):
        """Patch ``index`` of the current epoch: a float32 tensor (C, patch_size, patch_size)."""
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} patches")
        index %= len(self)
        file_index = int(self._order[index // self.patches_per_image])
        pixels = self._photo(file_index)
        rng = np.random.default_rng([self.random_state, self.epoch, index, 1])
        height, width = pixels.shape[1:]
        top = int(rng.integers(0, height - self.patch_size + 1))
        left = int(rng.integers(0, width - self.patch_size + 1))
        patch = pixels[:, top:top + self.patch_size, left:left + self.patch_size]
        return torch.from_numpy(np.ascontiguousarray(patch))

    def _photo(self, file_index):
        cached_index, pixels = self._last
        if cached_index != file_index:
            self._last = (None, None)  # free the previous photo before decoding the next one
            pixels, _ = read_image(self.files[file_index], max_pixels=self.max_pixels)
            pixels = to_channels(pixels, self.grayscale)
            self._last = (file_index, pixels)
        return pixels

    def __repr__(self):
        return (f"PatchDataset({len(self.files)} photos, patch_size={self.patch_size}, "
                f"patches_per_image={self.patches_per_image}, grayscale={self.grayscale})")
