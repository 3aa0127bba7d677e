import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from implicit_inverse.metrics import psnr, ssim
from implicit_inverse.plotting import (
    MARK_COLOURS,
    plot_convergence,
    plot_reconstructions,
    save_figure,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _batch(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


def test_plot_reconstructions_grid_titles_and_psnr():
    truth = _batch((8, 16, 16))
    measurement = _batch((8, 1, 8, 8), seed=1)  # smaller, channel axis
    estimate = torch.tensor(_batch((8, 16, 16), seed=2))
    fig = plot_reconstructions(
        [measurement, estimate, truth], ["measurement", "implicit", "truth"],
        n_images=3, psnrs=[21.5, 27.25, None],
    )  # fmt: skip
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 9
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["measurement\n21.50 dB", "implicit\n27.25 dB", "truth"]
    image = fig.axes[0].images[0]
    assert image.get_clim() == (0.0, 1.0)
    assert image.get_cmap().name == "gray"
    assert list(fig.axes[0].get_xticks()) == []


def test_plot_reconstructions_caps_rows_and_accepts_rgb():
    fig = plot_reconstructions([_batch((2, 3, 8, 8))], ["rgb"], n_images=6)
    assert len(fig.axes) == 2


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (([np.zeros((2, 8, 8))], ["a", "b"]), {}, "titles"),
    (([np.zeros((2, 8, 8)), np.zeros((3, 8, 8))], ["a", "b"]), {}, "same number"),
    (([np.zeros((2, 8, 8))], ["a"]), {"psnrs": [1.0, 2.0]}, "psnrs"),
    (([np.zeros((2, 2, 8, 8))], ["a"]), {}, r"columns\[0\]"),
    (([np.zeros((2, 8, 8))], ["a"]), {"n_images": 0}, "n_images"),
    (([], []), {}, "at least one"),
])  # fmt: skip
def test_plot_reconstructions_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_reconstructions(*args, **kwargs)


def test_panels_carry_their_own_scores_details_and_marks():
    truth = _batch((3, 16, 16))
    estimate = np.clip(truth + 0.05 * _batch((3, 16, 16), seed=1), 0, 1)
    fig = plot_reconstructions(
        [estimate, truth], ["estimate", "truth"], reference=1, detail=(4, 2, 8),
        marks={"best": [0, None, 0]}, row_titles=["a", "b", "c"],
    )  # fmt: skip
    assert len(fig.axes) == 12  # per row: two full panels, then their two details
    full, zoom = fig.axes[4], fig.axes[6]  # the second row, estimate column
    expected = f"{psnr(truth[1], estimate[1]):.2f} dB, SSIM {ssim(truth[1:2], estimate[1:2]):.3f}"
    assert full.get_xlabel() == expected  # not marked in this row
    assert fig.axes[0].get_xlabel() == f"{psnr(truth[0], estimate[0]):.2f} dB, SSIM " \
        f"{ssim(truth[0:1], estimate[0:1]):.3f}\nbest"
    assert fig.axes[0].xaxis.label.get_color() == MARK_COLOURS[0]
    assert fig.axes[0].spines["top"].get_edgecolor() == matplotlib.colors.to_rgba(MARK_COLOURS[0])
    assert fig.axes[1].get_xlabel() == ""  # the reference has no score
    np.testing.assert_array_equal(zoom.images[0].get_array(), estimate[1, 4:12, 2:10])
    assert len(full.patches) == 1  # the detail outlined
    assert [f._suptitle.get_text() for f in fig.subfigs] == ["a", "b", "c"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reference": 2}, "reference"),
    ({"detail": (10, 0, 8)}, "detail"),
    ({"detail": (0, 0, 0)}, "detail"),
    ({"marks": {"best": 2}}, "marks"),
    ({"marks": {"best": [0]}}, "marks"),
    ({"row_titles": ["a"]}, "row_titles"),
])  # fmt: skip
def test_scores_details_and_marks_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_reconstructions([np.zeros((2, 16, 16))] * 2, ["a", "b"], **kwargs)
    with pytest.raises(ValueError, match="one size"):
        plot_reconstructions([np.zeros((2, 8, 8)), np.zeros((2, 16, 16))], ["a", "b"],
                             detail=(0, 0, 4))


def test_plot_convergence_panels_and_nan_padding():
    padded = np.full((5, 30), np.nan)
    for i in range(5):
        padded[i, : 10 + 4 * i] = 0.7 ** np.arange(10 + 4 * i)
    histories = {"forward": padded, "anderson": 0.3 ** np.arange(8)}
    fig = plot_convergence(histories)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == ["forward", "anderson"]
    assert len(ax.collections) == 1  # one band, for the 2-D history only
    fig = plot_convergence(histories, train_loss=[0.1, 0.05], iterations_per_epoch=[12, 15])
    assert len(fig.axes) == 3
    fig = plot_convergence(histories, iterations_per_epoch=[12, 15])
    assert len(fig.axes) == 2


@pytest.mark.parametrize(("args", "kwargs", "error"), [
    (([1.0],), {}, TypeError), (({},), {}, ValueError),
    (({"a": np.zeros((2, 2, 2))},), {}, ValueError),
    (({"a": np.ones(3)},), {"train_loss": []}, ValueError),
])  # fmt: skip
def test_plot_convergence_validation(args, kwargs, error):
    with pytest.raises(error):
        plot_convergence(*args, **kwargs)


def test_save_figure_writes_png_and_closes(tmp_path):
    fig = plot_convergence({"a": 0.5 ** np.arange(5)})
    target = tmp_path / "nested" / "dir" / "conv.png"
    assert save_figure(fig, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in target.parent.iterdir()] == ["conv.png"]  # no temp file left


def test_save_figure_overwrites_and_validates(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    save_figure(plot_reconstructions([np.zeros((1, 4, 4))], ["a"]), str(target))
    assert target.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=".png"):
        save_figure(plt.figure(), tmp_path / "x.pdf")
    with pytest.raises(TypeError, match="fig"):
        save_figure("not a figure", target)
