"""Reading and writing photographs: PNG, JPEG and TIFF, 8 or 16 bits, grayscale or colour.

:func:`read_image` returns the pixels as a float32 array of shape (C, H, W) with values in [0, 1]
(C = 1 grayscale, 2 grayscale + alpha, 3 RGB, 4 RGBA) and an :class:`ImageInfo` describing the
file, and :func:`write_image` writes such an array back in the format and bit depth the
:class:`ImageInfo` names, atomically (a temporary file beside the target, then a rename).

The format is recognised from the file's first bytes, not its name. Decoders: Pillow for 8-bit
PNG (palette images become RGB or RGBA, 1-, 2- and 4-bit grayscale becomes 8-bit) and for JPEG
(CMYK becomes RGB); :func:`torchvision.io.decode_png` for 16-bit PNG (Pillow reads 16-bit colour
as 8-bit); ``tifffile`` (a scikit-image dependency) for TIFF, 8- or 16-bit integer samples, one
image per file. Encoders: Pillow for 8-bit PNG and JPEG (quality 95, no chroma subsampling), a
small encoder in this module for 16-bit PNG, ``tifffile`` for TIFF (uncompressed).

Every failure to read is an :class:`ImageFileError` (a ``ValueError``) whose message starts with
the file's name.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from .files import atomic_write

__all__ = ["EXTENSIONS", "FORMATS", "MAX_PIXELS", "ImageFileError", "ImageInfo", "list_images",
           "probe_image", "read_image", "write_image"]

FORMATS = ("PNG", "JPEG", "TIFF")
"""Formats read and written."""

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""File extensions (any case) that :func:`list_images` picks up in folders."""

MAX_PIXELS = 4096 * 4096
"""Default limit on the pixels of one image (16.8 megapixels, for example 4096 x 4096 or a
12-megapixel phone photo): larger files are refused before they are decoded."""

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"))
_CHANNEL_NAMES = {1: "grayscale", 2: "grayscale+alpha", 3: "RGB", 4: "RGBA"}


class ImageFileError(ValueError):
    """An image file that cannot be read: missing, not an image, corrupt, unsupported, too large.

    The message starts with the file's path.
    """


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`write_image` needs to write pixels back as the file they came from.

    Attributes
    ----------
    format : {"PNG", "JPEG", "TIFF"}
    bit_depth : {8, 16}
        Bits per sample written (files of 1, 2 or 4 bits are read and written as 8-bit).
    channels : {1, 2, 3, 4}
        Grayscale, grayscale + alpha, RGB or RGBA.
    height, width : int
    """

    format: str
    bit_depth: int
    channels: int
    height: int
    width: int

    @property
    def has_alpha(self):
        """Whether the last channel is an alpha (opacity) channel."""
        return self.channels in (2, 4)

    @property
    def colour_channels(self):
        """1 (grayscale) or 3 (RGB)."""
        return 1 if self.channels <= 2 else 3

    def describe(self):
        """Short description, for example ``"640x480 RGB 8-bit PNG"``."""
        return (f"{self.width}x{self.height} {_CHANNEL_NAMES[self.channels]} "
                f"{self.bit_depth}-bit {self.format}")


def list_images(paths):
    """Image files named by ``paths``: files as given, folders searched recursively.

    Parameters
    ----------
    paths : str, path-like or sequence of them
        Files (taken whatever their extension) and folders (their files with an extension in
        :data:`EXTENSIONS`, any case, in sorted order; names starting with a dot are skipped).

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    ImageFileError
        A path does not exist, or no image file was found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file()
                            and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise ImageFileError(f"{str(path)!r}: no such file or folder")
    if not files:
        raise ImageFileError(f"{', '.join(repr(str(p)) for p in paths)}: no image files "
                             f"(searched for {', '.join(EXTENSIONS)}, recursively)")
    return files


def _sniff(path):
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError as error:
        raise ImageFileError(f"{str(path)!r}: cannot open: {error.strerror or error}") from None
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name, head
    if not head:
        raise ImageFileError(f"{str(path)!r}: empty file")
    raise ImageFileError(f"{str(path)!r}: unsupported format (not PNG, JPEG or TIFF)")


def _png_header(path, head):
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageFileError(f"{str(path)!r}: corrupt PNG (no IHDR header)")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16) or width == 0 or height == 0:
        raise ImageFileError(f"{str(path)!r}: corrupt PNG header")
    return height, width, max(depth, 8), channels


def _tiff_series(path, tif):
    if not tif.series:
        raise ImageFileError(f"{str(path)!r}: TIFF without image data")
    series = tif.series[0]
    axes, shape, dtype = series.axes, series.shape, np.dtype(series.dtype)
    if len(tif.series) > 1 or axes not in ("YX", "YXS", "SYX"):
        raise ImageFileError(f"{str(path)!r}: TIFF holding several images or planes (axes "
                             f"{axes!r}, shape {shape}); one 2-D grayscale or colour image "
                             "per file is supported")
    if dtype not in (np.uint8, np.uint16):
        raise ImageFileError(f"{str(path)!r}: unsupported TIFF samples {dtype} (8- or 16-bit "
                             "unsigned integers are supported)")
    channels = 1 if axes == "YX" else shape[axes.index("S")]
    if channels not in (1, 2, 3, 4):
        raise ImageFileError(f"{str(path)!r}: unsupported TIFF with {channels} channels")
    return series, shape[axes.index("Y")], shape[axes.index("X")], 8 * dtype.itemsize, channels


def probe_image(path):
    """Read a file's header only: format, size, channels and bit depth.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ImageInfo

    Raises
    ------
    ImageFileError
        Not a readable PNG, JPEG or TIFF file (pixel data is not decoded, so a truncated file
        can pass here and fail in :func:`read_image`).
    """
    kind, head = _sniff(path)
    if kind == "PNG":
        height, width, depth, channels = _png_header(path, head)
        return ImageInfo("PNG", depth, channels, height, width)
    if kind == "TIFF":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                _, height, width, depth, channels = _tiff_series(path, tif)
        except ImageFileError:
            raise
        except Exception as error:  # noqa: BLE001 - any parse failure of a corrupt file
            raise ImageFileError(f"{str(path)!r}: corrupt TIFF ({_reason(error)})") from None
        return ImageInfo("TIFF", depth, channels, height, width)
    image = _open_pil(path)
    with image:
        channels = {"L": 1, "RGB": 3, "CMYK": 3, "YCbCr": 3}.get(image.mode)
        if channels is None:
            raise ImageFileError(f"{str(path)!r}: unsupported JPEG mode {image.mode!r}")
        return ImageInfo("JPEG", 8, channels, image.height, image.width)


def _open_pil(path):
    from PIL import Image

    try:
        return Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageFileError(f"{str(path)!r}: too large ({error})") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ImageFileError(f"{str(path)!r}: cannot read ({_reason(error)})") from None


def _reason(error):
    message = " ".join(str(error).split())
    if ".cpp:" in message:  # torchvision's C++ errors start with the source location
        message = message.rsplit(", ", 1)[-1]
    return f"{type(error).__name__}: {message}"


def _check_pixels(path, info, max_pixels):
    if max_pixels is not None and info.height * info.width > max_pixels:
        raise ImageFileError(
            f"{str(path)!r}: {info.width}x{info.height} = {info.height * info.width:,} pixels is "
            f"over the limit of {max_pixels:,} pixels (raise the limit, for example with "
            "--max-pixels, or downscale the photo)")


def read_image(path, max_pixels=MAX_PIXELS):
    """Read a PNG, JPEG or TIFF file as float32 pixels in [0, 1].

    Parameters
    ----------
    path : str or path-like
    max_pixels : int or None, default :data:`MAX_PIXELS`
        Refuse images with more pixels (checked on the header, before decoding). None: no limit.

    Returns
    -------
    pixels : ndarray of shape (C, H, W), float32
        C = 1 (grayscale), 2 (grayscale + alpha), 3 (RGB) or 4 (RGBA); samples divided by 255
        (8-bit) or 65535 (16-bit).
    info : ImageInfo
        Format, bit depth, channels and size, for :func:`write_image`.

    Raises
    ------
    ImageFileError
        Missing, unsupported, corrupt or truncated file, or one over ``max_pixels``.
    """
    info = probe_image(path)
    _check_pixels(path, info, max_pixels)
    try:
        if info.format == "TIFF":
            samples = _decode_tiff(path)
        elif info.format == "PNG" and info.bit_depth == 16:
            samples = _decode_png16(path)
        else:
            samples = _decode_pil(path, info)
    except ImageFileError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data, whatever the decoder
        raise ImageFileError(f"{str(path)!r}: corrupt or truncated {info.format} file "
                             f"({_reason(error)})") from None
    if samples.shape[1:] != (info.height, info.width):
        raise ImageFileError(f"{str(path)!r}: decoded size {samples.shape[1:]} differs from the "
                             f"header's {(info.height, info.width)}")
    info = dataclasses.replace(info, channels=samples.shape[0])
    scale = np.float32(1.0 / (2 ** info.bit_depth - 1))
    return samples.astype(np.float32) * scale, info


def _decode_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = _tiff_series(path, tif)[0]
        array = series.asarray()
        axes = series.axes
    if axes == "YX":
        return array[None]
    return array if axes == "SYX" else np.moveaxis(array, -1, 0)


def _decode_png16(path):
    import torch
    from torchvision.io import ImageReadMode, decode_png, read_file

    with warnings.catch_warnings():
        # torchvision 0.29 announces that its decoders move to torchcodec; pyproject pins
        # torchvision < 0.30, where decode_png still reads 16-bit colour (Pillow cannot)
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_png(read_file(os.fspath(path)), mode=ImageReadMode.UNCHANGED)
    if decoded.dtype == torch.uint16:
        decoded = decoded.to(torch.int32)  # numpy has no view of torch.uint16 in old versions
    return decoded.numpy().astype(np.uint16)


def _decode_pil(path, info):
    image = _open_pil(path)
    with image:
        image.load()  # raises on truncated data
        mode = image.mode
        if mode == "P":
            mode = "RGBA" if "transparency" in image.info else "RGB"
        conversions = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGB": "RGB",
                       "RGBA": "RGBA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
                       "I;16": None, "I": None}
        target = conversions.get(mode, "unsupported")
        if target == "unsupported" or target is None:
            raise ImageFileError(f"{str(path)!r}: unsupported {info.format} mode {image.mode!r}")
        if target != image.mode:
            image = image.convert(target)
        array = np.asarray(image)
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def write_image(path, pixels, info):
    """Write pixels in [0, 1] as the format and bit depth of ``info``, atomically.

    Parameters
    ----------
    path : str or path-like
        File to write; an existing file is replaced only once the new one is complete.
    pixels : array-like of shape (C, H, W) or (H, W)
        Values are clipped to [0, 1] and rounded to ``info.bit_depth`` bits.
    info : ImageInfo
        ``format`` and ``bit_depth`` of the file (its size and channels are taken from
        ``pixels``). JPEG is written with quality 95 and without chroma subsampling (JPEG is
        lossy: a rewritten JPEG is never bit-identical).

    Raises
    ------
    ValueError
        Non-finite pixels, or a layout the format cannot hold.
    """
    array = np.asarray(pixels, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be shaped (C, H, W) with C in 1..4, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("pixels must be finite (found NaN or inf)")
    if info.format not in FORMATS or info.bit_depth not in (8, 16):
        raise ValueError(f"cannot write {info.bit_depth}-bit {info.format}")
    if info.format == "JPEG" and (info.bit_depth != 8 or array.shape[0] not in (1, 3)):
        raise ValueError("JPEG holds 8-bit grayscale or RGB images only")
    top = 2 ** info.bit_depth - 1
    samples = np.rint(np.clip(array, 0.0, 1.0) * top).astype(np.uint8 if top == 255
                                                              else np.uint16)
    samples = np.ascontiguousarray(np.moveaxis(samples, 0, -1))  # (H, W, C)
    if info.format == "TIFF":
        atomic_write(path, lambda handle: _encode_tiff(handle, samples))
    elif info.format == "PNG" and info.bit_depth == 16:
        data = encode_png16(samples)
        atomic_write(path, lambda handle: handle.write(data))
    else:
        atomic_write(path, lambda handle: _encode_pil(handle, samples, info.format))


def _encode_pil(handle, samples, fmt):
    from PIL import Image

    image = Image.fromarray(samples[..., 0] if samples.shape[-1] == 1 else samples)
    if fmt == "JPEG":
        image.save(handle, format="JPEG", quality=95, subsampling=0)
    else:
        image.save(handle, format="PNG")


def _encode_tiff(handle, samples):
    import tifffile

    channels = samples.shape[-1]
    options = {"photometric": "minisblack" if channels <= 2 else "rgb"}
    if channels in (2, 4):
        options["extrasamples"] = [2]  # unassociated alpha
    buffer = io.BytesIO()  # tifffile wants a named file or a seekable buffer, not a descriptor
    tifffile.imwrite(buffer, samples[..., 0] if channels == 1 else samples, **options)
    handle.write(buffer.getvalue())


def encode_png16(samples):
    """A 16-bit PNG file's bytes (Pillow only writes 16-bit grayscale).

    Parameters
    ----------
    samples : ndarray of shape (H, W, C), uint16
        C = 1, 2, 3 or 4 (grayscale, grayscale + alpha, RGB, RGBA).

    Returns
    -------
    bytes
        Signature, IHDR, one zlib-compressed IDAT (every row with the "Sub" filter) and IEND.
    """
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, width * channels).view(np.uint8)
    step = 2 * channels  # bytes per pixel
    filtered = rows.copy()
    filtered[:, step:] -= rows[:, :-step]  # uint8 arithmetic wraps modulo 256, as PNG wants
    raw = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1).tobytes()

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))
