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
        Per kernel: ``kernel``, ``rows`` (as ``compare_methods``, plus the fine-tuned row),
        ``outputs`` and the measurements ``X``.
    truth : ndarray of shape (2, crop, crop)
    """
    from ..estimators import ImplicitDeblurRegressor
    from ..metrics import psnr, ssim
    from ..operators import Blur, make_measurements
    from ._common import parse_kernel
    from ._compare import compare_methods, print_table

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
            start = time.perf_counter()
            outputs["fine-tuned"], stats = tuned.predict_with_stats(X_test)
            rows.append({"key": "fine-tuned", "method": f"fine-tuned prior ({spent:.0f} s)",
                         "psnr": psnr(truth, outputs["fine-tuned"]),
                         "ssim": ssim(truth, outputs["fine-tuned"]),
                         "time_s": spent + time.perf_counter() - start,
                         "iterations": float(stats.iterations.float().mean()),
                         "converged_share": float(stats.converged.float().mean())})
        print_table(f"Kernel {spec}, noise std {noise}: {crop}x{crop} centre crops of the held-out "
                    "photos camera and coffee; the prior untrained (zero-shot, calibrated on its "
                    "own training photos) and fine-tuned on "
                    f"{len(X_train)} training crops; baselines tuned on the same crops", rows)
        results.append({"kernel": spec, "rows": rows, "outputs": outputs, "X": X_test})
        sys.stdout.flush()
    return results, truth


def plot_photos(results, truth):
    """Camera's crop for every kernel (rows): measurement, best baseline, prior(s), truth."""
    from ..plotting import plot_reconstructions
    from ._compare import best_baseline

    keys = [key for key in ("implicit", "fine-tuned") if key in results[0]["outputs"]]
    columns = [np.stack([r["X"][0] for r in results]),
               np.stack([r["outputs"][best_baseline(r["rows"])["key"]][0] for r in results])]
    columns += [np.stack([r["outputs"][key][0] for r in results]) for key in keys]
    columns.append(np.repeat(truth[:1], len(results), axis=0))
    titles = ["measurement", "best baseline"] + \
        ["zero-shot prior" if key == "implicit" else "fine-tuned prior" for key in keys] + \
        ["truth"]
    figure = plot_reconstructions(columns, titles, n_images=len(results))
    for row, result in enumerate(results):
        figure.axes[row * len(columns)].set_ylabel(result["kernel"])
    figure.set_size_inches(3.2 * len(columns), 3.2 * len(results))
    return figure
