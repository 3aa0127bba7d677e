"""The ``implicit-inverse`` command: end-to-end runs on tiny settings, errors and help."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from implicit_inverse import __version__
from implicit_inverse.cli import load_model, main

TINY_TRAIN = ["--data", "faces", "--size", "16", "--n-images", "40", "--epochs", "1",
              "--blur", "5", "1.0", "--noise", "0.02", "--threads", "1"]


def run(argv, capsys):
    """Run ``main`` in-process; return (exit status, stdout, stderr)."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("implicit-inverse"), err
    assert "error:" in lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny model file written by ``implicit-inverse train``."""
    path = tmp_path_factory.mktemp("model") / "tiny.pkl"
    assert main(["train", *TINY_TRAIN, "--model", str(path)]) == 0
    return path


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, stderr = run(["demo", "--epochs", "1", "--out", str(out), "--size", "24",
                                "--n-train", "64", "--threads", "1"], capsys)
    assert code == 0, stderr
    # skorch's per-epoch table, then the comparison table
    assert "train_loss" in stdout
    for row in ("measurement", "direct inverse", "Tikhonov (lam=", "implicit (JFB)"):
        assert row in stdout
    assert "PSNR (dB)" in stdout and "SSIM" in stdout and "time (s)" in stdout
    for name in ("reconstructions.png", "convergence.png", "results.json", "results.md",
                 "model.pkl"):
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left"
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 1 and results["n_train"] == 64 and results["n_test"] == 20
    methods = {row["method"].split(" (")[0]: row for row in results["methods"]}
    assert set(methods) == {"measurement", "direct inverse", "Tikhonov", "implicit"}
    assert all(np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 for row in methods.values())
    assert 0 <= methods["implicit"]["converged_share"] <= 1
    assert methods["implicit"]["iterations"] >= 1
    assert "| implicit (JFB) |" in (out / "results.md").read_text()

    record = load_model(out / "model.pkl")
    assert record["blur"] == [9, 1.5] and record["noise"] == 0.01 and record["size"] == 24
    images = record["estimator"].predict(np.zeros((2, 24, 24), dtype=np.float32))
    assert images.shape == (2, 24, 24)


def test_train_then_evaluate(trained_model, capsys):
    record = load_model(trained_model)
    assert record["blur"] == [5, 1.0] and record["noise"] == 0.02 and record["size"] == 16
    assert record["data"] == "faces" and record["gradient"] == "jfb"
    assert len(record["estimator"].history) == 1

    code, stdout, stderr = run(["evaluate", "--model", str(trained_model), "--data", "faces",
                                "--n-images", "6"], capsys)
    assert code == 0, stderr
    assert "6 images from 'faces' (16x16" in stdout
    for row in ("measurement", "direct inverse", "Tikhonov (lam=", "implicit (JFB)"):
        assert row in stdout


def test_train_and_evaluate_on_a_folder(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        pixels = (rng.random((20, 20)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{i}.png")
    model = tmp_path / "folder.pkl"
    code, _, stderr = run(["train", "--data", str(folder), "--size", "16", "--epochs", "1",
                           "--blur", "3", "0.8", "--noise", "0.01", "--gradient", "exact",
                           "--model", str(model)], capsys)
    assert code == 0, stderr
    assert load_model(model)["gradient"] == "exact"
    code, stdout, stderr = run(["evaluate", "--model", str(model), "--data", str(folder)],
                               capsys)
    assert code == 0, stderr
    assert "implicit (EXACT)" in stdout


def test_existing_model_needs_force(trained_model, capsys):
    before = trained_model.read_bytes()
    code, _, err = run(["train", *TINY_TRAIN, "--model", str(trained_model)], capsys)
    assert code == 2
    assert_one_line_error(err, "already exists", "--force")
    assert trained_model.read_bytes() == before


def test_force_overwrites(tmp_path, capsys):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"old")
    code, _, err = run(["train", *TINY_TRAIN, "--model", str(path), "--force"], capsys)
    assert code == 0, err
    assert load_model(path)["size"] == 16


@pytest.mark.parametrize("argv, fragment", [
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["demo", "--epochs", "-1"], "--epochs"),
    (["demo", "--epochs", "0"], "--epochs"),
    (["demo", "--epochs", "two"], "--epochs"),
    (["demo", "--device", "tpu"], "--device"),
    (["demo", "--threads", "0"], "--threads"),
    (["train", "--data", "faces"], "--model"),
    (["train", "--data", "faces", "--noise", "-0.1", "--model", "m.pkl"], "--noise"),
    (["train", "--data", "faces", "--blur", "9", "--model", "m.pkl"], "--blur"),
    (["train", "--data", "faces", "--gradient", "newton", "--model", "m.pkl"], "--gradient"),
    (["evaluate", "--data", "faces"], "--model"),
])
def test_bad_arguments(argv, fragment, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--blur", "4.5", "1.0"], "--blur SIZE"),
    (["--blur", "9", "0"], "--blur SIGMA"),
    (["--blur", "9", "1.5", "--size", "8"], "larger than the images"),
])
def test_bad_blur(tmp_path, extra, fragment, capsys):
    model = tmp_path / "m.pkl"
    code, _, err = run(["train", "--data", "faces", *extra, "--model", str(model)], capsys)
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not model.exists()


def test_missing_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    code, _, err = run(["train", "--data", str(missing), "--model", str(tmp_path / "m.pkl")],
                       capsys)
    assert code == 2
    assert_one_line_error(err, "no such folder", "no_such_folder")


def test_empty_folder(tmp_path, capsys):
    code, _, err = run(["train", "--data", str(tmp_path), "--model", str(tmp_path / "m.pkl")],
                       capsys)
    assert code == 2
    assert_one_line_error(err, "No image files")


def test_evaluate_missing_or_foreign_model(tmp_path, capsys):
    code, _, err = run(["evaluate", "--model", str(tmp_path / "none.pkl"), "--data", "faces"],
                       capsys)
    assert code == 2
    assert_one_line_error(err, "no such file")

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    code, _, err = run(["evaluate", "--model", str(garbage), "--data", "faces"], capsys)
    assert code == 2
    assert_one_line_error(err, "not a readable model file")

    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"weights": [1, 2]}))
    code, _, err = run(["evaluate", "--model", str(foreign), "--data", "faces"], capsys)
    assert code == 2
    assert_one_line_error(err, "was not written by")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tmp_path, capsys):
    code, _, err = run(["demo", "--device", "cuda", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err, "CUDA is not available")


def test_threads_are_restored(trained_model, capsys):
    before = torch.get_num_threads()
    code, _, err = run(["evaluate", "--model", str(trained_model), "--data", "faces",
                        "--n-images", "4", "--threads", "1"], capsys)
    assert code == 0, err
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", [None, "demo", "train", "evaluate"])
def test_help(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    prog = "implicit-inverse" if command is None else f"implicit-inverse {command}"
    assert out.startswith(f"usage: {prog}")
    if command is None:
        assert all(name in out for name in ("demo", "train", "evaluate"))
    if command == "demo":  # reduced settings for tests stay out of the help
        assert "--n-train" not in out and "--size" not in out
    if command == "train":
        assert all(opt in out for opt in ("--data", "--blur", "--noise", "--gradient",
                                          "--epochs", "--size", "--seed", "--model", "--force"))


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
