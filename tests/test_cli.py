"""The ``implicit-inverse`` command: end-to-end runs on tiny generated files, errors and help."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from implicit_inverse import ImplicitDeblurRegressor, ImplicitRegressor, __version__
from implicit_inverse.baselines import tuning
from implicit_inverse.cli import load_model, main
from implicit_inverse.cli._compare import format_table, markdown_table, summary_line
from implicit_inverse.cli._photo_demo import texture_window
from implicit_inverse.data.image_files import ImageInfo, read_image, write_image

TINY = ["--epochs", "1", "--threads", "1", "--max-iter", "5"]
TINY_FACES = ["--data", "faces", "--size", "16", "--n-images", "40", "--blur", "5", "1.0",
              "--noise", "0.02", *TINY]


# Every command in one torch thread: on a busy 2-core machine two threads are many times slower
# (the commands' --threads restores the caller's setting, checked below).
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def short_baseline_grids(monkeypatch):
    """One grid point per classical baseline, 2-fold, on at most 16 images: the tables keep
    all their rows, the tests stay fast (total variation runs an iterative solver per fit)."""
    monkeypatch.setattr(tuning, "BASELINES", {
        key: dataclasses.replace(baseline, grid=(baseline.grid[len(baseline.grid) // 2],))
        for key, baseline in tuning.BASELINES.items()})
    monkeypatch.setattr(tuning, "MAX_SAMPLES", 16)
    monkeypatch.setattr(tuning, "CV_FOLDS", 2)


def run(argv, capsys):
    """Run ``main`` in-process; return (exit status, stdout, stderr)."""
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("implicit-inverse"), err
    assert "error:" in lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def photo(shape, seed=0, dtype=np.uint8):
    """A smooth random photo (H, W) or (H, W, C) with values of ``dtype``."""
    rng = np.random.default_rng(seed)
    base = rng.random((shape[0] // 4 + 2, shape[1] // 4 + 2) + tuple(shape[2:]))
    image = np.kron(base, np.ones((4, 4) + (1,) * (len(shape) - 2)))[:shape[0], :shape[1]]
    return (image * np.iinfo(dtype).max).astype(dtype)


def save_pil(path, array):
    Image.fromarray(array).save(path)
    return path


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of 6 grayscale and colour PNG / JPEG photos of 24 to 40 pixels."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(4):
        save_pil(folder / f"gray{i}.png", photo((24 + 4 * i, 32), seed=i))
    save_pil(folder / "colour.jpg", photo((28, 36, 3), seed=7))
    save_pil(folder / "colour.png", photo((32, 24, 3), seed=8))
    return folder


@pytest.fixture(scope="module")
def gray_model(photos, tmp_path_factory):
    """A tiny grayscale model trained by ``train --data FOLDER``."""
    path = tmp_path_factory.mktemp("models") / "gray.pt"
    assert main(["train", "--data", str(photos), "--patch", "16", "--patches-per-image", "2",
                 "--kernel", "disk:1.5", "--model", str(path), *TINY]) == 0
    return path


@pytest.fixture(scope="module")
def rgb_model(photos, tmp_path_factory):
    """A tiny RGB model trained by ``train --data FOLDER --color``."""
    path = tmp_path_factory.mktemp("models") / "rgb.pt"
    assert main(["train", "--data", str(photos), "--patch", "16", "--color", "--kernel",
                 "motion:3,30", "--model", str(path), *TINY]) == 0
    return path


# -- demo, train, evaluate -----------------------------------------------------------------------
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, stderr = run(["demo", "--epochs", "1", "--out", out, "--size", "16",
                                "--n-train", "40", "--threads", "1", "--photo-crop", "24",
                                "--photo-train", "6", "--finetune-seconds", "0.5"], capsys)
    assert code == 0, stderr
    # part 1: the shipped prior on held-out photos, for each kernel, against tuned baselines
    assert stdout.index("Part 1") < stdout.index("Part 2")
    for kernel in ("gaussian:9,1.6", "disk:2", "motion:9,30"):
        assert f"Kernel {kernel}" in stdout
    assert stdout.count("zero-shot prior") >= 3 and stdout.count("fine-tuned prior (") == 3
    assert "train_loss" in stdout  # skorch's per-epoch table, then the comparison table
    for row in ("measurement", "direct inverse", "Tikhonov (lam=", "Wiener (balance=",
                "total variation (weight=", "implicit (JFB)"):
        assert row in stdout
    assert "PSNR (dB)" in stdout and "SSIM" in stdout and "time (s)" in stdout
    for name in ("photos.png", "reconstructions.png", "convergence.png", "results.json",
                 "results.md", "model.pt"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.pkl"))
    # the closing summary: one line per blur (the faces' too) with the gain and convergence
    summary = stdout[stdout.index("Summary"):].splitlines()[1:]
    kernels = ("gaussian:9,1.6", "disk:2", "motion:9,30", "gaussian:9,1.5")
    for kernel, line in zip(kernels, summary):
        assert line.strip().startswith(f"{kernel}, ") and " dB over " in line, line
        assert "of its solves converged" in line
    assert all(line.strip() in (out / "results.md").read_text() for line in summary if line)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left"
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 1 and results["n_train"] == 40 and results["n_test"] == 20
    methods = {row["key"]: row for row in results["methods"]}
    assert set(methods) == {"measurement", "direct", "tikhonov", "wiener", "tv", "implicit"}
    assert all(np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 for row in methods.values())
    assert 0 <= methods["implicit"]["converged_share"] <= 1
    assert methods["implicit"]["iterations"] >= 1
    assert "| implicit (JFB) |" in (out / "results.md").read_text()
    photos = {part["kernel"]: {row["key"] for row in part["methods"]}
              for part in results["photos"]}
    assert set(photos) == {"gaussian:9,1.6", "disk:2", "motion:9,30"}
    assert all({"tv", "implicit", "fine-tuned"} <= keys for keys in photos.values())

    # one model format: what est.save writes, loadable by ImplicitRegressor.load
    estimator = ImplicitRegressor.load(out / "model.pt")
    assert isinstance(estimator, ImplicitDeblurRegressor)
    assert estimator.predict(np.zeros((2, 16, 16), np.float32)).shape == (2, 16, 16)
    model = load_model(out / "model.pt")
    assert model.metadata["kernel"] == "gaussian:9,1.5" and model.metadata["size"] == 16
    assert (out / "model.pt").stat().st_size < 1_000_000  # no warm-start cache inside


def test_train_on_faces_then_evaluate(tmp_path, capsys):
    path = tmp_path / "faces.pt"
    code, stdout, stderr = run(["train", *TINY_FACES, "--model", path], capsys)
    assert code == 0, stderr
    assert "Saved the model" in stdout
    model = load_model(path)
    assert model.metadata["kernel"] == "gaussian:5,1" and model.metadata["noise"] == 0.02
    assert model.metadata["data"] == "faces" and model.metadata["gradient"] == "jfb"
    assert len(model.estimator.history) == 1
    assert isinstance(ImplicitRegressor.load(path), ImplicitDeblurRegressor)

    code, stdout, stderr = run(["evaluate", "--model", path, "--data", "faces", "--n-images",
                                "6", "--threads", "1"], capsys)
    assert code == 0, stderr
    assert "6 images from 'faces' (16x16, kernel gaussian:5,1" in stdout
    for row in ("measurement", "direct inverse", "Tikhonov (lam=", "implicit (JFB)"):
        assert row in stdout
    assert torch.get_num_threads() >= 1


def test_train_on_a_folder_streams_crops(gray_model, photos, capsys):
    model = load_model(gray_model)
    estimator = model.estimator
    assert estimator.n_channels_ == 1 and estimator.image_shape_ == (1, 16, 16)
    assert model.metadata["patches_per_image"] == 2 and model.metadata["n_images"] == 6
    assert estimator.reuse_fixed_points is False  # crops change every epoch
    code, stdout, stderr = run(["evaluate", "--model", gray_model, "--data", photos], capsys)
    assert code == 0, stderr
    assert "6 images from" in stdout and "kernel disk:1.5" in stdout
    code, stdout, stderr = run(["evaluate", "--model", gray_model, "--data", photos, "--size",
                                "20", "--crops", "2"], capsys)
    assert code == 0, stderr
    assert "12 images from" in stdout and "(20x20," in stdout
    code, _, err = run(["evaluate", "--model", gray_model, "--data", photos, "--n-images", "3"],
                       capsys)
    assert code == 2
    assert_one_line_error(err, "3 crop(s)", "at least 4", "--crops")


def test_train_on_a_folder_in_chunks(photos, tmp_path, capsys):
    path = tmp_path / "chunks.pt"
    code, stdout, stderr = run(["train", "--data", photos, "--patch", "16", "--chunk", "5",
                                "--epochs", "2", "--model", path, "--threads", "1",
                                "--max-iter", "3", "--gradient", "exact"], capsys)
    assert code == 0, stderr
    assert "2 epochs of 5 chunk(s) of up to 5 crops" in stdout  # 24 crops in 5 chunks
    estimator = load_model(path).estimator
    assert len(estimator.history) == 10 and estimator.max_epochs == 10
    assert estimator.gradient == "exact"


def test_train_with_a_zero_boundary(photos, tmp_path, capsys):
    path = tmp_path / "zero.pt"
    code, stdout, stderr = run(["train", "--data", photos, "--patch", "16", "--boundary", "zero",
                                "--kernel", "gaussian:5,1", "--model", path, *TINY], capsys)
    assert code == 0, stderr
    assert "Jacobian penalty is off" in stdout
    estimator = load_model(path).estimator
    assert estimator.operator_.boundary == "zero"
    assert all(bool(torch.isfinite(v.float()).all())
               for v in estimator.net_.module_.state_dict().values())
    out = tmp_path / "out"
    code, stdout, stderr = run(["restore", photos / "gray0.png", "--model", path, "--out", out],
                               capsys)
    assert code == 0, stderr
    assert "100% converged" in stdout


def test_train_in_colour(rgb_model, photos, tmp_path, capsys):
    model = load_model(rgb_model)
    assert model.estimator.n_channels_ == 3 and model.metadata["color"] is True
    assert model.estimator.operator_.kernel.shape == (3, 3)
    code, _, err = run(["evaluate", "--model", rgb_model, "--data", "faces"], capsys)
    assert code == 2
    assert_one_line_error(err, "RGB", "folder of colour photos")
    (tmp_path / "file").write_text("x")
    code, _, err = run(["restore", photos / "colour.png", "--model", rgb_model, "--out",
                        tmp_path / "file"], capsys)
    assert code == 2
    assert_one_line_error(err, "exists and is not a folder")


def test_existing_model_needs_force(gray_model, photos, capsys):
    before = gray_model.read_bytes()
    code, _, err = run(["train", "--data", photos, "--patch", "16", "--model", gray_model,
                        *TINY], capsys)
    assert code == 2
    assert_one_line_error(err, "already exists", "--force")
    assert gray_model.read_bytes() == before


def test_force_overwrites(tmp_path, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    code, _, err = run(["train", *TINY_FACES, "--model", path, "--force"], capsys)
    assert code == 0, err
    assert load_model(path).metadata["size"] == 16


# -- blur and restore ----------------------------------------------------------------------------
FORMATS = [("PNG", 8, 1, "a.png"), ("PNG", 16, 3, "b.png"), ("PNG", 8, 4, "c.png"),
           ("PNG", 16, 1, "d.png"), ("JPEG", 8, 3, "e.jpg"), ("TIFF", 16, 1, "f.tif"),
           ("TIFF", 8, 3, "g.tiff"), ("TIFF", 16, 4, "h.tif")]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Photos of every supported format, bit depth and channel count, 20 x 28 pixels."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for fmt, depth, channels, name in FORMATS:
        pixels = np.kron(rng.random((channels, 5, 7)), np.ones((1, 4, 4)))
        write_image(folder / name, pixels, ImageInfo(fmt, depth, channels, 20, 28))
    return folder


def test_blur_then_restore_keep_format_and_bit_depth(mixed, gray_model, tmp_path, capsys):
    blurred, restored = tmp_path / "blurred", tmp_path / "restored"
    code, stdout, stderr = run(["blur", mixed, "--kernel", "disk:1.5", "--noise", "0.01",
                                "--out", blurred], capsys)
    assert code == 0, stderr
    assert listing(blurred) == sorted(name for *_, name in FORMATS)
    assert "b.png: 28x20 RGB 16-bit PNG" in stdout
    code, stdout, stderr = run(["restore", blurred, "--model", gray_model, "--out", restored,
                                "--threads", "1"], capsys)
    assert code == 0, stderr
    assert listing(restored) == sorted(name for *_, name in FORMATS)
    for fmt, depth, channels, name in FORMATS:
        original, _ = read_image(mixed / name)
        measured, info = read_image(blurred / name)
        output, out_info = read_image(restored / name)
        assert (info.format, info.bit_depth, info.channels) == (fmt, depth, channels), name
        assert out_info == info, name
        assert output.shape == original.shape
        if info.has_alpha:  # alpha copied through both commands
            np.testing.assert_allclose(output[-1], original[-1], atol=1 / 255)
        assert not np.allclose(measured, original, atol=2e-3)  # it was blurred
        line = next(line for line in stdout.splitlines() if f"{name}:" in line)
        assert "FP iterations" in line and "% converged" in line and "28x20" in line
    rgb_line = next(line for line in stdout.splitlines() if "b.png:" in line)
    assert "per channel" in rgb_line  # grayscale model, colour photo


def test_restore_restores(photos, tmp_path, capsys):
    """A model trained a little restores better than the measurement it gets."""
    from implicit_inverse.metrics import psnr
    from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

    clean = np.stack([read_image(photos / f"gray{i}.png")[0][0, :24, :24] for i in range(4)])
    operator = Blur(gaussian_kernel(5, 1.0))
    est = ImplicitDeblurRegressor(operator, max_epochs=1, random_state=0, max_iter=10)
    est.fit(make_measurements(clean, operator, 0.01, random_state=0), clean)
    est.save(tmp_path / "model.pt")  # a model saved from Python serves the command line too
    measured = make_measurements(clean[:1], operator, 0.01, random_state=1)
    write_image(tmp_path / "x.png", measured, ImageInfo("PNG", 16, 1, 24, 24))
    code, _, err = run(["restore", tmp_path / "x.png", "--model", tmp_path / "model.pt",
                        "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    restored, _ = read_image(tmp_path / "out" / "x.png")
    assert psnr(clean[:1], restored) > psnr(clean[:1], measured) + 1.0


def test_restore_grayscale_photo_with_an_rgb_model(rgb_model, photos, tmp_path, capsys):
    code, stdout, err = run(["restore", photos / "gray0.png", photos / "colour.png", "--model",
                             rgb_model, "--out", tmp_path], capsys)
    assert code == 0, err
    assert "gray0.png: 32x24 grayscale 8-bit PNG, as gray RGB" in stdout
    assert read_image(tmp_path / "gray0.png")[1].channels == 1
    assert read_image(tmp_path / "colour.png")[1].channels == 3


def test_restore_keeps_existing_outputs_unless_force(gray_model, photos, tmp_path, capsys):
    target = tmp_path / "gray0.png"
    target.write_bytes(b"keep me")
    argv = ["restore", photos / "gray1.png", photos / "gray0.png", "--model", gray_model,
            "--out", tmp_path]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert_one_line_error(err, "gray0.png", "already exists", "--force")
    assert target.read_bytes() == b"keep me" and listing(tmp_path) == ["gray0.png"]
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0, err
    assert read_image(target)[1].describe() == "32x24 grayscale 8-bit PNG"


def test_restore_never_overwrites_its_input(gray_model, photos, capsys):
    before = (photos / "gray0.png").read_bytes()
    code, _, err = run(["restore", photos / "gray0.png", "--model", gray_model, "--out", photos,
                        "--force"], capsys)
    assert code == 2
    assert_one_line_error(err, "gray0.png", "overwrite this input")
    assert (photos / "gray0.png").read_bytes() == before


def test_interrupted_restore_leaves_no_partial_file(gray_model, photos, tmp_path, capsys,
                                                    monkeypatch):
    from implicit_inverse.data import image_files

    def interrupted(handle, samples, fmt):
        handle.write(b"\x89PNG half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(image_files, "_encode_pil", interrupted)
    code, _, err = run(["restore", photos / "gray0.png", "--model", gray_model, "--out",
                        tmp_path / "out"], capsys)
    assert code == 130 and "interrupted" in err
    assert listing(tmp_path / "out") == []  # neither the output nor a temporary file


# -- bad inputs: one line naming the file, exit status 2, nothing written ------------------------
def bad_files(folder):
    """Files that must each be refused, with a fragment of the expected message."""
    folder.mkdir(exist_ok=True)
    good = save_pil(folder / "good.png", photo((40, 40)))
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    (folder / "notes.png").write_text("not an image at all")
    Image.fromarray(photo((20, 20, 3))).save(folder / "image.bmp")
    (folder / "empty.tif").write_bytes(b"")
    return {"truncated.png": "truncated", "corrupt.jpg": "corrupt.jpg",
            "notes.png": "unsupported format", "image.bmp": "unsupported format",
            "empty.tif": "empty file"}


@pytest.mark.parametrize("command", ["blur", "restore"])
def test_bad_photos_are_refused_before_anything_is_written(command, gray_model, tmp_path,
                                                            capsys):
    expected = bad_files(tmp_path / "in")
    options = ["--kernel", "gaussian:3,1"] if command == "blur" else ["--model", gray_model]
    for name, fragment in expected.items():
        out = tmp_path / f"out-{name}"
        code, _, err = run([command, tmp_path / "in" / "good.png", tmp_path / "in" / name,
                            *options, "--out", out], capsys)
        assert code == 2, name
        assert_one_line_error(err, name, fragment)
        assert not out.exists(), name


@pytest.mark.parametrize("command", ["blur", "restore"])
def test_photo_over_the_pixel_limit(command, gray_model, tmp_path, capsys):
    big = save_pil(tmp_path / "big.png", photo((40, 50)))
    options = ["--kernel", "disk:1"] if command == "blur" else ["--model", gray_model]
    code, _, err = run([command, big, *options, "--out", tmp_path / "out", "--max-pixels",
                        "1999"], capsys)
    assert code == 2
    assert_one_line_error(err, "big.png", "2,000 pixels", "limit of 1,999")
    assert not (tmp_path / "out").exists()


def test_folder_without_images(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for argv in (["train", "--data", tmp_path, "--model", tmp_path / "m.pt"],
                 ["blur", tmp_path, "--kernel", "disk:1", "--out", tmp_path / "out"]):
        code, _, err = run(argv, capsys)
        assert code == 2
        assert_one_line_error(err, "no image files", str(tmp_path))
    assert listing(tmp_path) == ["notes.txt"]


def test_train_refuses_bad_photos_and_small_ones(tmp_path, capsys):
    expected = bad_files(tmp_path)
    (tmp_path / "image.bmp").unlink()  # folders are searched for .png, .jpg, .tif only
    for name in ("truncated.png", "corrupt.jpg", "notes.png", "empty.tif"):
        folder = tmp_path / f"set-{name}"
        folder.mkdir()
        os.link(tmp_path / "good.png", folder / "good.png")
        os.link(tmp_path / name, folder / name)
        code, _, err = run(["train", "--data", folder, "--patch", "16", "--model",
                            folder / "m.pt", *TINY], capsys)
        assert code == 2, name
        assert_one_line_error(err, name)
        assert expected[name].split()[0] in err or name == "truncated.png"
        assert not (folder / "m.pt").exists()
    small = tmp_path / "small"
    small.mkdir()
    save_pil(small / "tiny.png", photo((12, 40)))
    code, _, err = run(["train", "--data", small, "--patch", "16", "--model", small / "m.pt"],
                       capsys)
    assert code == 2
    assert_one_line_error(err, "tiny.png", "smaller than the 16x16 patches")


@pytest.mark.parametrize("array, fragment", [
    (np.ones((3, 3, 3)), "must hold a 2-D array, got shape (3, 3, 3)"),
    (np.array([[1.0, -1.0], [-1.0, 1.0]]), "sums to zero"),
    (np.array([[1.0, np.nan]]), "NaN"),
    (np.array([["a"]]), "real 2-D array"),
])
@pytest.mark.parametrize("command", ["blur", "train"])
def test_bad_kernel_files(command, array, fragment, photos, tmp_path, capsys):
    kernel = tmp_path / "kernel.npy"
    np.save(kernel, array)
    out = tmp_path / "out"
    out = out if command == "blur" else out.with_suffix(".pt")
    argv = (["blur", photos / "gray0.png", "--out", out] if command == "blur" else
            ["train", "--data", "faces", "--model", out])
    code, _, err = run([*argv, "--kernel", kernel], capsys)
    assert code == 2
    assert_one_line_error(err, "kernel.npy", fragment)
    assert not out.exists()


def test_kernel_files_and_specs(photos, tmp_path, capsys):
    np.save(tmp_path / "k.npy", np.array([[0.0, 2.0, 0.0], [2.0, 4.0, 2.0], [0.0, 2.0, 0.0]]))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    code, _, err = run(["blur", photos / "gray0.png", "--kernel", tmp_path / "k.npy", "--out",
                        tmp_path / "a", "--noise", "0"], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "a" / "gray0.png")[1].channels == 1
    for spec, fragment in [(tmp_path / "junk.npy", "not a readable .npy"),
                           (tmp_path / "missing.npy", "no such kernel file"),
                           ("gaussian:4.5,1", "SIZE must be a positive integer"),
                           ("gaussian:9", "expected 2 number"), ("disk:0", "radius"),
                           ("disk:x", "is not 1 number"), ("motion:0.5,0", "length"),
                           ("box:3", "expected gaussian:SIZE,SIGMA")]:
        code, _, err = run(["blur", photos / "gray0.png", "--kernel", spec, "--out",
                            tmp_path / "b"], capsys)
        assert code == 2, spec
        assert_one_line_error(err, fragment)
    assert not (tmp_path / "b").exists()


def test_kernel_larger_than_the_photo(photos, tmp_path, capsys):
    code, _, err = run(["blur", photos / "gray0.png", "--kernel", "gaussian:31,5", "--out",
                        tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line_error(err, "gray0.png", "larger than the image")
    code, _, err = run(["blur", photos / "gray0.png", "--kernel", "gaussian:31,5", "--boundary",
                        "zero", "--out", tmp_path / "out"], capsys)
    assert code == 0, err  # a zero boundary takes any kernel


def test_duplicate_output_names(photos, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    save_pil(other / "gray0.png", photo((30, 30)))
    code, _, err = run(["blur", photos / "gray0.png", other / "gray0.png", "--kernel", "disk:1",
                        "--out", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line_error(err, "would both be written")


@pytest.mark.parametrize("argv, fragment", [
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["demo", "--epochs", "-1"], "--epochs"),
    (["demo", "--epochs", "0"], "--epochs"),
    (["demo", "--epochs", "two"], "--epochs"),
    (["demo", "--device", "tpu"], "--device"),
    (["demo", "--threads", "0"], "--threads"),
    (["train", "--data", "faces"], "--model"),
    (["train", "--data", "faces", "--noise", "-0.1", "--model", "m.pt"], "--noise"),
    (["train", "--data", "faces", "--blur", "9", "--model", "m.pt"], "--blur"),
    (["train", "--data", "faces", "--blur", "9", "1", "--kernel", "disk:1", "--model", "m.pt"],
     "not allowed with"),
    (["train", "--data", "faces", "--gradient", "newton", "--model", "m.pt"], "--gradient"),
    (["train", "--data", "faces", "--boundary", "reflect", "--model", "m.pt"], "--boundary"),
    (["evaluate", "--data", "faces"], "--model"),
    (["blur", "x.png", "--out", "o"], "--kernel"),
    (["blur", "--kernel", "disk:1", "--out", "o"], "PHOTO"),
    (["restore", "x.png", "--out", "o"], "--model"),
    (["restore", "x.png", "--model", "m.pt", "--max-pixels", "0"], "--max-pixels"),
])
def test_bad_arguments(argv, fragment, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--blur", "4.5", "1.0"], "--blur SIZE"),
    (["--blur", "9", "0"], "--blur SIGMA"),
    (["--blur", "9", "1.5", "--size", "8"], "larger than the 8x8 training images"),
    (["--patch", "16"], "--patch applies to a folder"),
    (["--color"], "--color applies to a folder"),
])
def test_bad_training_options(tmp_path, extra, fragment, capsys):
    model = tmp_path / "m.pt"
    code, _, err = run(["train", "--data", "faces", *extra, "--model", model], capsys)
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not model.exists()


@pytest.mark.parametrize("name", ["model.pkl", "model", "model.PT"])
def test_model_files_written_end_in_pt(name, photos, tmp_path, capsys):
    code, _, err = run(["train", "--data", "faces", "--model", tmp_path / name], capsys)
    assert code == 2
    assert_one_line_error(err, name, "model.pt'")
    code, _, err = run(["pretrain", photos, "--out", tmp_path / name, "--checkpoint",
                        tmp_path / "ck"], capsys)
    assert code == 2
    assert_one_line_error(err, name, "model.pt'")
    assert listing(tmp_path) == []


def test_model_files_of_old_names_still_load(photos, tmp_path, capsys):
    est = ImplicitDeblurRegressor(max_iter=5, max_epochs=1).fit(
        np.zeros((4, 16, 16), np.float32), np.zeros((4, 16, 16), np.float32))
    est.save(tmp_path / "model.pkl")  # what 'demo' named its (data only) model file before
    code, _, err = run(["restore", photos / "gray0.png", "--model", tmp_path / "model.pkl",
                        "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert listing(tmp_path / "out") == ["gray0.png"]


def test_tables_flag_non_converged_rows_and_say_what_to_do():
    rows = [{"key": "tv", "method": "total variation (weight=0.002)", "psnr": 28.8, "ssim": 0.9,
             "time_s": 1.0, "param": "weight", "value": 0.002},
            {"key": "implicit", "method": "zero-shot prior", "psnr": 28.6, "ssim": 0.9,
             "time_s": 1.0, "iterations": 31.0, "converged_share": 1.0, "max_iter": 100,
             "tol": 1e-4},
            {"key": "fine-tuned", "method": "fine-tuned prior (60 s)", "psnr": 29.4, "ssim": 0.9,
             "time_s": 9.0, "iterations": 100.0, "converged_share": 0.5, "max_iter": 100,
             "tol": 1e-4}]
    for table in (format_table(rows), markdown_table(rows)):
        assert table.count("(!)") == 2  # the flagged row and the note
        assert "100% (!)" not in table and "50% (!)" in table
        assert table.splitlines()[-1].startswith("(!) not converged: some solves stopped at "
                                                 "max_iter=100 before tol=0.0001")
    assert summary_line("disk:2", rows) == ("disk:2: fine-tuned prior 29.40 dB, +0.60 dB over "
                                            "total variation (28.80 dB); 50% of its solves "
                                            "converged (!)")
    rows[2]["converged_share"] = 1.0
    assert "(!)" not in format_table(rows) + summary_line("disk:2", rows)
    rows[2]["psnr"] = 28.0
    assert summary_line("k", rows).startswith("k: zero-shot prior 28.60 dB, -0.20 dB over")


def test_the_photo_detail_is_the_most_textured_window():
    image = np.full((64, 64), 0.5)
    image[:, 50] = 1.0  # a strong edge, not texture
    image[40:60, 8:28] += 0.1 * np.random.default_rng(0).standard_normal((20, 20))
    top, left = texture_window(image, 16)
    assert 40 <= top <= 44 and 8 <= left <= 12  # inside the textured square


def test_missing_folder(tmp_path, capsys):
    code, _, err = run(["train", "--data", tmp_path / "no_such_folder", "--model",
                        tmp_path / "m.pt"], capsys)
    assert code == 2
    assert_one_line_error(err, "no such folder", "no_such_folder")
    code, _, err = run(["restore", tmp_path / "gone.png", "--model", tmp_path / "m.pt",
                        "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert_one_line_error(err, "no such file")


def test_missing_or_foreign_model(photos, tmp_path, capsys):
    code, _, err = run(["evaluate", "--model", tmp_path / "none.pt", "--data", "faces"], capsys)
    assert code == 2
    assert_one_line_error(err, "no such file")

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    old_format = tmp_path / "old.pkl"  # what 'train' wrote before: a pickled dict
    old_format.write_bytes(pickle.dumps({"format": "implicit-inverse-model", "estimator": 1}))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    unfitted = tmp_path / "unfitted.pt"
    ImplicitDeblurRegressor().save(unfitted)
    for path, fragment in [(garbage, "is not a model file"), (old_format, "is not a model file"),
                           (foreign, "no format marker"), (unfitted, "unfitted")]:
        code, _, err = run(["restore", photos / "gray0.png", "--model", path, "--out",
                            tmp_path / "out"], capsys)
        assert code == 2
        assert_one_line_error(err, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tmp_path, capsys):
    code, _, err = run(["demo", "--device", "cuda", "--out", tmp_path], capsys)
    assert code == 2
    assert_one_line_error(err, "CUDA is not available")


def test_threads_are_restored(gray_model, photos, tmp_path, capsys):
    before = torch.get_num_threads()
    code, _, err = run(["restore", photos / "gray0.png", "--model", gray_model, "--out",
                        tmp_path, "--threads", "1"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", [None, "demo", "train", "evaluate", "blur", "restore"])
def test_help(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    prog = "implicit-inverse" if command is None else f"implicit-inverse {command}"
    assert out.startswith(f"usage: {prog}")
    if command is None:
        assert all(name in out for name in ("demo", "train", "evaluate", "blur", "restore"))
    if command == "demo":  # reduced settings for tests stay out of the help
        assert "--n-train" not in out and "--size" not in out
    if command == "train":
        assert all(opt in out for opt in ("--data", "--kernel", "--noise", "--gradient",
                                          "--epochs", "--patch", "--color", "--boundary",
                                          "--seed", "--model", "--force"))
        assert "--max-iter" not in out and "--chunk" not in out
    if command in ("blur", "restore"):
        assert all(opt in out for opt in ("PHOTO", "--out", "--force", "--max-pixels"))


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"implicit-inverse {__version__}"


def test_module_entry_point():
    """``python -m implicit_inverse.cli`` runs ``main`` and exits with its status."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "implicit_inverse.cli", "demo",
                             "--epochs", "-3"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("implicit-inverse demo: error:")
