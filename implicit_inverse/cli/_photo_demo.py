"""The demo's first part: the shipped prior on held-out photos, against the tuned baselines."""

from __future__ import annotations

import copy
import sys
import time

import numpy as np

PHOTO_KERNELS = ("gaussian:9,1.6", "disk:2", "motion:9,30")
"""The blurs of the photo setting (as ``--kernel`` specs)."""
N_TRAINING_CROPS = 32
TRAINING_CROP = 64


def training_pairs(operator, noise, seed, n=N_TRAINING_CROPS, size=TRAINING_CROP):
    """Seeded random crops of the priors' training photos and their measurements.

    Returns
    -------
    X, y : ndarray of shape (n, size, size), float32
    """
    from ..data.photos import training_crops
    from ..operators import make_measurements

    y = training_crops(n, size, seed)
    return make_measurements(y, operator, noise, random_state=seed), y


def held_out_crops(size):
    """Centre crops (size x size) of the held-out photos camera and coffee, grayscale.

    Returns
    -------
    ndarray of shape (2, size, size), float32
    """
    from ..data.photos import HELD_OUT_PHOTOS, load_photo

    crops = []
    for name in HELD_OUT_PHOTOS:
        photo = load_photo(name)
        top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
        crops.append(photo[top:top + size, left:left + size])
    return np.stack(crops)


def fine_tune(model, X, y, seconds):
    """A copy of ``model`` trained on ``(X, y)`` epoch by epoch while the budget lasts.

    Returns
    -------
    tuned : ImplicitRegressor
    spent : float
        Training seconds.
    """
    tuned = copy.deepcopy(model).set_params(warm_start=True)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        tuned.partial_fit(X, y)
    return tuned, time.perf_counter() - start


def run_photos(noise, seed, crop, finetune_seconds, device, n_train=N_TRAINING_CROPS):
    """Compare on the held-out photos for each kernel of :data:`PHOTO_KERNELS`.

    Parameters
    ----------
    noise : float
    seed : int
    crop : int
        Side of the centre crops of camera and coffee.
    finetune_seconds : float
        Budget of fine-tuning per kernel (0: none).
    device : str
    n_train : int
        Training crops (of side ``min(TRAINING_CROP, crop)``) on which the baselines are tuned
        and the prior fine-tuned.

    Returns
    -------
    results : list of dict
        Per kernel: ``kernel``, ``rows`` (as ``compare_methods``, plus the fine-tuned row of
        ``learned_row``), ``outputs`` and the measurements ``X``.
    truth : ndarray of shape (2, crop, crop)
    """
    from ..estimators import ImplicitDeblurRegressor
    from ..operators import Blur, make_measurements
    from ._common import parse_kernel
    from ._compare import compare_methods, learned_row, print_table

    truth = held_out_crops(crop)
    results = []
    for index, spec in enumerate(PHOTO_KERNELS):
        operator = Blur(parse_kernel(spec))
        X_train, y_train = training_pairs(operator, noise, seed + index, n_train,
                                          min(TRAINING_CROP, crop))
        X_test = make_measurements(truth, operator, noise, random_state=seed + 100 + index)
        start = time.perf_counter()
        model = ImplicitDeblurRegressor.from_pretrained(operator=operator, noise_std=noise,
                                                        device=device, random_state=seed)
        rows, outputs, _ = compare_methods(operator, X_train, y_train, X_test, truth, model,
                                           implicit_time=time.perf_counter() - start, seed=seed,
                                           label="zero-shot prior")
        if finetune_seconds > 0:
            tuned, spent = fine_tune(model, X_train, y_train, finetune_seconds)
            row, outputs["fine-tuned"], _ = learned_row(
                "fine-tuned", f"fine-tuned prior ({spent:.0f} s)", tuned, X_test, truth, spent)
            rows.append(row)
        print_table(f"Kernel {spec}, noise std {noise}: {crop}x{crop} centre crops of the held-out "
                    "photos camera and coffee; the prior untrained (zero-shot, calibrated on its "
                    "own training photos) and fine-tuned on "
                    f"{len(X_train)} training crops; baselines tuned on the same crops", rows)
        results.append({"kernel": spec, "rows": rows, "outputs": outputs, "X": X_test})
        sys.stdout.flush()
    return results, truth


DETAIL = 64
"""Side of the zoomed detail of :func:`plot_photos` (a quarter of the default crop)."""
PANEL_INCHES = 256 / 150
"""A panel of :func:`plot_photos`: the default 256-pixel crop one to one at 150 dpi."""


def texture_window(image, size):
    """The ``size`` x ``size`` window of ``image`` with the densest fine texture.

    Texture is the 10th percentile of the absolute discrete Laplacian over the window: high
    only where nine tenths of the window are textured (grass, fabric), so neither flat areas
    nor a few strong edges win. Windows are tried on a grid of step ``max(1, size // 8)``.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    size : int
        At most ``min(H, W)``.

    Returns
    -------
    top, left : int
    """
    laplacian = np.zeros_like(image)
    laplacian[1:-1, 1:-1] = np.abs(4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1]
                                   - image[1:-1, :-2] - image[1:-1, 2:])
    step = max(1, size // 8)
    corners = [(top, left) for top in range(0, image.shape[0] - size + 1, step)
               for left in range(0, image.shape[1] - size + 1, step)]
    return max(corners, key=lambda c: np.percentile(laplacian[c[0]:c[0] + size,
                                                               c[1]:c[1] + size], 10))


def row_title(result):
    """The heading of a kernel's row in :func:`plot_photos`: who won, by how much."""
    from ._compare import NOT_CONVERGED, method_name, not_converged, verdict

    outcome = verdict(result["rows"])
    learned, classical, gain = outcome["learned"], outcome["classical"], outcome["gain"]
    winner, loser = (learned, classical) if gain >= 0 else (classical, learned)
    flagged = [method_name(row) for row in result["rows"] if not_converged(row)]
    note = f"; {NOT_CONVERGED} not converged: {', '.join(flagged)}" if flagged else ""
    return (f"{result['kernel']}: {method_name(winner)} wins by {abs(gain):.2f} dB over "
            f"{method_name(loser)}\n(mean PSNR on camera and coffee; panels: camera){note}")


def plot_photos(results, truth):
    """Camera's crop for every kernel: measurement, best baseline, prior(s), truth.

    Every panel shows its PSNR and SSIM against the truth; under each kernel's row the same
    :data:`DETAIL` window of fine texture is shown enlarged in every column; the best learned
    and the best classical panel of each row are framed, and the row's heading says which
    won by how much (over camera and coffee, as the tables).

    Parameters
    ----------
    results : list of dict
        As returned by :func:`run_photos`.
    truth : ndarray of shape (2, crop, crop)

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting import plot_reconstructions
    from ._compare import best_baseline, best_learned

    keys = [key for key in ("implicit", "fine-tuned") if key in results[0]["outputs"]]
    columns = [np.stack([r["X"][0] for r in results]),
               np.stack([r["outputs"][best_baseline(r["rows"])["key"]][0] for r in results])]
    columns += [np.stack([r["outputs"][key][0] for r in results]) for key in keys]
    columns.append(np.repeat(truth[:1], len(results), axis=0))
    titles = ["measurement", "best classical"] + \
        ["zero-shot prior" if key == "implicit" else "fine-tuned prior" for key in keys] + \
        ["truth"]
    size = min(DETAIL, truth.shape[-1] // 2)
    top, left = texture_window(truth[0], size)
    learned = [2 + keys.index(best_learned(r["rows"])["key"]) for r in results]
    return plot_reconstructions(
        columns, titles, n_images=len(results), reference=len(columns) - 1,
        detail=(top, left, size), row_titles=[row_title(r) for r in results],
        marks={"best learned": learned, "best classical": 1}, panel_inches=PANEL_INCHES)
