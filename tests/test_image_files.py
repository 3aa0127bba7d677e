"""Reading and writing photos: every format, bit depth and channel count; refused files."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from implicit_inverse.data.image_files import (ImageFileError, ImageInfo, encode_png16, list_images,
                                          probe_image, read_image, write_image)

CASES = [(fmt, depth, channels) for fmt in ("PNG", "TIFF") for depth in (8, 16)
         for channels in (1, 2, 3, 4)] + [("JPEG", 8, 1), ("JPEG", 8, 3)]


@pytest.mark.parametrize("fmt, depth, channels", CASES)
def test_round_trip(fmt, depth, channels, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.random((channels, 9, 13)).astype(np.float32)
    if fmt == "JPEG":
        pixels = np.kron(rng.random((channels, 3, 4)), np.ones((1, 3, 4)))[:, :9, :13]
    path = tmp_path / f"x.{fmt.lower()}"
    write_image(path, pixels, ImageInfo(fmt, depth, channels, 9, 13))
    back, info = read_image(path)
    assert info == ImageInfo(fmt, depth, channels, 9, 13) == probe_image(path)
    assert back.dtype == np.float32 and back.shape == (channels, 9, 13)
    tolerance = {8: 0.5 / 255, 16: 0.5 / 65535}[depth] + 1e-6
    if fmt == "JPEG":
        tolerance = 0.05  # lossy
    np.testing.assert_allclose(back, pixels, atol=tolerance)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_sixteen_bit_files_are_read_by_other_libraries(tmp_path):
    samples = (np.random.default_rng(1).random((5, 7, 3)) * 65535).astype(np.uint16)
    (tmp_path / "rgb16.png").write_bytes(encode_png16(samples))
    pixels, info = read_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(np.rint(np.moveaxis(pixels, 0, -1) * 65535), samples)
    gray = samples[..., :1]
    (tmp_path / "gray16.png").write_bytes(encode_png16(gray))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gray16.png")), gray[..., 0])
    assert info == ImageInfo("PNG", 16, 3, 5, 7)
    write_image(tmp_path / "rgb16.tif", pixels, ImageInfo("TIFF", 16, 3, 5, 7))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "rgb16.tif"), samples)


def test_palette_and_one_bit_png_and_cmyk_jpeg(tmp_path):
    image = Image.new("RGB", (6, 4), (10, 200, 30))
    image.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    pixels, info = read_image(tmp_path / "p.png")
    assert info.channels == 3 and info.bit_depth == 8
    np.testing.assert_allclose(pixels[:, 0, 0], np.array([10, 200, 30]) / 255, atol=1e-6)
    Image.new("1", (6, 4), 1).save(tmp_path / "b.png")
    pixels, info = read_image(tmp_path / "b.png")
    assert info.channels == 1 and info.bit_depth == 8 and pixels.min() == 1.0
    Image.new("CMYK", (6, 4)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg")[1].channels == 3


def test_format_is_recognised_from_the_content(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "looks.tif", format="PNG")
    assert read_image(tmp_path / "looks.tif")[1].format == "PNG"


def refused(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "header.png").write_bytes(data[:20])
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.bmp")
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 4, 5, 6), np.uint8),
                     photometric="minisblack")
    return {"truncated.png": "truncated", "header.png": "corrupt PNG", "text.jpg": "unsupported",
            "empty.png": "empty file", "x.bmp": "unsupported format",
            "float.tif": "float32", "stack.tif": "several images", "missing.png": "cannot open"}


def test_refused_files_name_the_file(tmp_path):
    for name, fragment in refused(tmp_path).items():
        with pytest.raises(ImageFileError, match=fragment) as error:
            read_image(tmp_path / name)
        assert str(error.value).startswith(repr(str(tmp_path / name))), name
        assert "\n" not in str(error.value)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", max_pixels=1200)[0].shape == (1, 30, 40)
    with pytest.raises(ImageFileError, match="40x30 = 1,200 pixels is over the limit of 1,199"):
        read_image(tmp_path / "a.png", max_pixels=1199)
    assert read_image(tmp_path / "a.png", max_pixels=None)[1].width == 40


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "sub/c.tiff", ".hidden.png", "notes.txt", "d.bmp"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == \
        ["a.jpg", "b.PNG", "sub/c.tiff"]
    assert list_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # files as given
    with pytest.raises(ImageFileError, match="no image files"):
        list_images([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFileError, match="no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(ImageFileError, match="no such file or folder"):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize("pixels, info, match", [
    (np.full((1, 3, 3), np.nan), ImageInfo("PNG", 8, 1, 3, 3), "finite"),
    (np.zeros((5, 3, 3)), ImageInfo("PNG", 8, 5, 3, 3), "C in 1..4"),
    (np.zeros((2, 3, 3)), ImageInfo("JPEG", 8, 2, 3, 3), "JPEG holds"),
    (np.zeros((1, 3, 3)), ImageInfo("GIF", 8, 1, 3, 3), "cannot write"),
])
def test_write_refuses(pixels, info, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / "x", pixels, info)
    assert list(tmp_path.iterdir()) == []


def test_write_clips_and_rounds(tmp_path):
    write_image(tmp_path / "x.png", np.array([[[-0.5, 0.5, 2.0]]]), ImageInfo("PNG", 8, 1, 1, 3))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), [[0, 128, 255]])
