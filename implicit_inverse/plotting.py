"""Figures: side-by-side reconstructions and solver convergence.

Every function returns a :class:`matplotlib.figure.Figure` made with
:mod:`matplotlib.pyplot` (so notebooks and sphinx-gallery pick it up) and never
calls ``plt.show``; the module works with any backend, including Agg. Save and
close a figure with :func:`save_figure`.
"""

import os
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from implicit_inverse.metrics import _as_numpy

__all__ = ["plot_convergence", "plot_reconstructions", "save_figure"]

_PANEL_INCHES = 1.6


def _as_display_images(images, name):
    """Return a batch of images in a layout ``imshow`` accepts.

    Parameters
    ----------
    images : ndarray or Tensor of shape (n, H, W), (n, 1, H, W) or (n, 3, H, W)
        The batch.
    name : str
        Name used in error messages.

    Returns
    -------
    ndarray of shape (n, H, W) or (n, H, W, 3)
    """
    array = _as_numpy(images, name)
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 4 and array.shape[1] == 3:
        return np.clip(np.moveaxis(array, 1, -1), 0.0, 1.0)
    if array.ndim == 3:
        return array
    raise ValueError(
        f"{name} must be shaped (n, H, W), (n, 1, H, W) or (n, 3, H, W), got {array.shape}."
    )


def _column_title(title, value):
    """Title of a column, with its PSNR on a second line when ``value`` is not None."""
    return title if value is None else f"{title}\n{float(value):.2f} dB"


MARK_COLOURS = ("tab:green", "tab:orange", "tab:blue", "tab:purple")
"""Frame colours of the ``marks`` of :func:`plot_reconstructions`, in the order given."""
DETAIL_COLOUR = "yellow"
"""Outline of the ``detail`` region on the full images."""


def _check_columns(values, n_cols, name):
    """``values`` as a list with one entry per column (None stays None)."""
    if values is None:
        return None
    values = list(values)
    if len(values) != n_cols:
        raise ValueError(
            f"{name} must have one entry per column: got {len(values)} values "
            f"for {n_cols} columns."
        )
    return values


def _check_marks(marks, n_rows, n_cols):
    """``marks`` as ``{label: [column or None per row]}``, at most len(MARK_COLOURS) labels."""
    if marks is None:
        return {}
    if not isinstance(marks, dict) or len(marks) > len(MARK_COLOURS):
        raise ValueError(
            f"marks must be a dict of at most {len(MARK_COLOURS)} labels, got {marks!r}."
        )
    checked = {}
    for label, columns in marks.items():
        columns = [columns] * n_rows if isinstance(columns, (int, np.integer)) else list(columns)
        if len(columns) != n_rows or any(
            c is not None and not (isinstance(c, (int, np.integer)) and 0 <= c < n_cols)
            for c in columns
        ):
            raise ValueError(
                f"marks[{label!r}] must be a column index (0 to {n_cols - 1}) or one index "
                f"(or None) per row of the {n_rows} rows, got {columns!r}."
            )
        checked[str(label)] = columns
    return checked


def _check_detail(detail, batches):
    """``detail`` as ``(top, left, size)`` inside images all of one size."""
    if detail is None:
        return None
    shapes = {b.shape[1:3] for b in batches}
    if len(shapes) != 1:
        raise ValueError(f"detail needs images of one size in every column, got {sorted(shapes)}.")
    height, width = shapes.pop()
    if (
        len(detail) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in detail)
        or detail[2] < 1
        or not (0 <= detail[0] <= height - detail[2] and 0 <= detail[1] <= width - detail[2])
    ):
        raise ValueError(
            f"detail must be (top, left, size), integers with the square inside the "
            f"{height}x{width} images, got {detail!r}."
        )
    return tuple(int(v) for v in detail)


def _panel_scores(columns, reference, n_rows):
    """PSNR and SSIM of every panel against its row of column ``reference``.

    Returns
    -------
    list (per column) of list (per row) of (psnr, ssim), or None for the reference column and
    for columns of another image size.
    """
    from implicit_inverse.metrics import psnr, ssim

    arrays = [_as_numpy(c, f"columns[{j}]") for j, c in enumerate(columns)]
    truth = arrays[reference]
    return [
        None if j == reference or a.shape[1:] != truth.shape[1:] else [
            (psnr(truth[i : i + 1], a[i : i + 1]), ssim(truth[i : i + 1], a[i : i + 1]))
            for i in range(n_rows)
        ]
        for j, a in enumerate(arrays)
    ]  # fmt: skip


def _show(ax, image, frame=None):
    """An image on the fixed [0, 1] gray scale, no ticks, in an optional coloured frame."""
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if frame is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)


def plot_reconstructions(columns, titles, n_images=6, psnrs=None, *, reference=None,
                         detail=None, marks=None, row_titles=None,
                         panel_inches=_PANEL_INCHES):  # fmt: skip
    """Show images side by side: one row per image, one column per method.

    Parameters
    ----------
    columns : sequence of ndarray or Tensor, each of shape (n, H, W) or (n, C, H, W)
        One batch per column, for instance ``[measurement, tikhonov, implicit, truth]``.
        ``C`` is 1 or 3. All batches hold the same images in the same order; their
        sizes may differ (a low-resolution measurement next to full-size estimates).
    titles : sequence of str
        One title per column, shown above the first row.
    n_images : int, default=6
        Number of rows; at most the number of images in a batch.
    psnrs : sequence of float or None, default=None
        Optional PSNR (dB) per column, added under its title; an entry may be None
        (for instance for the ground truth).
    reference : int or None, default=None
        Index of the column holding the ground truth: every panel of the other columns
        (of the same image size) shows its own PSNR and SSIM against the image of its row.
    detail : tuple of int (top, left, size) or None, default=None
        A square region: under every row, a second row shows it enlarged (nearest
        neighbour) in every column, and it is outlined on the full images.
    marks : dict of str to int or sequence of (int or None), or None, default=None
        Panels to frame, by label (at most four): a column index for every row, or one
        index (or None) per row, for instance ``{"best classical": [1, 1, 2]}``. Each
        label has its own colour (:data:`MARK_COLOURS`) and is written under its panels.
    row_titles : sequence of str or None, default=None
        A heading above each row, for instance the winner of that row.
    panel_inches : float, default=1.6
        Side of one panel; at ``save_figure``'s 150 dpi, 1.71 shows 256 pixels one to one.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The grid, gray colormap, values shown on a fixed [0, 1] scale, no ticks.
        ``fig.axes`` lists the panels row by row (with ``detail``, each row of full
        images is followed by its row of details).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((3, 8, 8))
    >>> fig = plot_reconstructions([x, x], ["noisy", "truth"], psnrs=[20.0, None])
    >>> len(fig.axes)
    6
    """
    columns = list(columns)
    titles = list(titles)
    if not columns:
        raise ValueError("columns must hold at least one batch of images.")
    if len(titles) != len(columns):
        raise ValueError(
            f"titles must have one entry per column: got {len(titles)} titles "
            f"for {len(columns)} columns."
        )
    psnrs = _check_columns(psnrs, len(columns), "psnrs")
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)):
        raise TypeError(f"n_images must be an int, got {type(n_images).__name__}.")
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}.")
    batches = [_as_display_images(c, f"columns[{i}]") for i, c in enumerate(columns)]
    lengths = {len(b) for b in batches}
    if len(lengths) != 1:
        raise ValueError(
            f"every column must hold the same number of images, got {[len(b) for b in batches]}."
        )
    n_rows = min(int(n_images), lengths.pop())
    if n_rows == 0:
        raise ValueError("columns hold no images.")
    n_cols = len(batches)
    if reference is not None and not (
        isinstance(reference, (int, np.integer)) and 0 <= reference < n_cols
    ):
        raise ValueError(
            f"reference must be a column index (0 to {n_cols - 1}), got {reference!r}."
        )
    detail = _check_detail(detail, batches)
    marks = _check_marks(marks, n_rows, n_cols)
    if row_titles is not None and len(row_titles) != n_rows:
        raise ValueError(
            f"row_titles must have one entry per row ({n_rows}), got {len(row_titles)}."
        )
    scores = None if reference is None else _panel_scores(columns, reference, n_rows)

    panels = 2 if detail else 1
    heading = 0 if row_titles is None else max(str(t).count("\n") + 1 for t in row_titles)
    text = 0.35 * (reference is not None) + 0.2 * bool(marks) + 0.2 * heading
    fig = plt.figure(
        figsize=(panel_inches * n_cols + 0.2, (panel_inches * panels + text) * n_rows + 0.45),
        layout="constrained",
    )  # fmt: skip
    blocks = fig.subfigures(n_rows, 1, squeeze=False)[:, 0]
    for i, block in enumerate(blocks):
        axes = block.subplots(panels, n_cols, squeeze=False)
        if row_titles is not None:
            block.suptitle(row_titles[i], fontsize=10, fontweight="bold")
        for j, batch in enumerate(batches):
            label = next((name for name, cols in marks.items() if cols[i] == j), None)
            colour = None if label is None else MARK_COLOURS[list(marks).index(label)]
            _show(axes[0, j], batch[i], colour)
            if i == 0:
                value = None if psnrs is None else psnrs[j]
                axes[0, j].set_title(_column_title(titles[j], value), fontsize=9)
            lines = [] if scores is None or scores[j] is None else \
                ["{:.2f} dB, SSIM {:.3f}".format(*scores[j][i])]
            lines += [] if label is None else [label]
            axes[0, j].set_xlabel("\n".join(lines), fontsize=9, color=colour or "black",
                                  fontweight="normal" if label is None else "bold")
            if detail:
                top, left, size = detail
                axes[0, j].add_patch(Rectangle((left - 0.5, top - 0.5), size, size,
                                               fill=False, edgecolor=DETAIL_COLOUR, lw=1.2))
                _show(axes[1, j], batch[i][top : top + size, left : left + size], colour)
        if detail:
            axes[1, 0].set_ylabel("detail (outlined above)", fontsize=9)
    return fig


def _residual_array(history, label):
    """Validate one residual history and return it as a 2-D (n_samples, iterations) array."""
    array = _as_numpy(history, f"residual_histories[{label!r}]")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"residual_histories[{label!r}] must be shaped (iterations,) or "
            f"(n_samples, iterations) with at least one iteration, got {array.shape}."
        )
    return array


def _plot_residuals(ax, residual_histories):
    """Semilog residual curves: median line and 10-90 % band across samples."""
    for label, history in residual_histories.items():
        array = _residual_array(history, label)
        steps = np.arange(1, array.shape[1] + 1)
        with warnings.catch_warnings():  # all-NaN columns past the longest run
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(array, axis=0)
            (line,) = ax.semilogy(steps, median, label=str(label))
            if array.shape[0] > 1:
                low, high = np.nanpercentile(array, [10, 90], axis=0)
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, lw=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("relative residual")
    ax.set_title("Fixed-point convergence")
    ax.legend(fontsize=8)


def _per_epoch(values, name):
    """Validate a per-epoch series and return it as a 1-D float array."""
    array = _as_numpy(values, name)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}.")
    return array


def _plot_per_epoch(ax, values, name, ylabel, log):
    """Plot a per-epoch series against epochs 1..E."""
    array = _per_epoch(values, name)
    epochs = np.arange(1, array.size + 1)
    plot = ax.semilogy if log and np.all(array[np.isfinite(array)] > 0) else ax.plot
    plot(epochs, array, marker="o", markersize=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)


def plot_convergence(residual_histories, train_loss=None, iterations_per_epoch=None):
    """Plot fixed-point residuals per iteration, and optionally training curves.

    Parameters
    ----------
    residual_histories : dict of str to ndarray or Tensor of shape (iterations,) or \
(n_samples, iterations)
        Relative residual after each solver iteration, one entry per curve (for
        instance per solver). 2-D histories show the median across samples and a
        shaded 10-90 % band; runs that stopped early may be padded with NaN.
    train_loss : sequence of float, default=None
        Training loss per epoch; adds a panel (log scale when all positive).
    iterations_per_epoch : sequence of float, default=None
        Mean solver iterations per epoch; adds a panel.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One row of 1 to 3 panels: residuals (log scale), then training loss, then
        iterations, for those given.

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_convergence({"anderson": 0.5 ** np.arange(10)}, train_loss=[1.0, 0.5])
    >>> len(fig.axes)
    2
    """
    if not isinstance(residual_histories, dict):
        raise TypeError(
            "residual_histories must be a dict mapping labels to arrays, "
            f"got {type(residual_histories).__name__}."
        )
    if not residual_histories:
        raise ValueError("residual_histories must hold at least one history.")
    n_panels = 1 + (train_loss is not None) + (iterations_per_epoch is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.4), squeeze=False)
    axes = list(axes[0])
    _plot_residuals(axes.pop(0), residual_histories)
    if train_loss is not None:
        ax = axes.pop(0)
        _plot_per_epoch(ax, train_loss, "train_loss", "training loss", log=True)
        ax.set_title("Training loss")
    if iterations_per_epoch is not None:
        ax = axes.pop(0)
        _plot_per_epoch(ax, iterations_per_epoch, "iterations_per_epoch", "iterations", log=False)
        ax.set_title("Solver iterations")
    fig.tight_layout()
    return fig


def save_figure(fig, path, *, dpi=150):
    """Save a figure as PNG atomically, then close it.

    The parent folder is created if needed. The image is written to a temporary
    file in the same folder and moved over ``path`` with :func:`os.replace`, so a
    reader never sees a half-written file.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is closed afterwards, even if saving fails.
    path : str or path-like
        Destination, ending in ``.png``.
    dpi : float, default=150
        Resolution.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in '.png', got {str(path)!r}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                fig.savefig(handle, format="png", dpi=dpi)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    finally:
        plt.close(fig)
    return path
