"""``implicit-inverse evaluate``: compare a saved model with the classical baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (CommandError, add_max_pixels_option, add_threads_option, image_size,
                      kernel_description, load_model, nonnegative_int, positive_int)
from ._compare import compare_methods, print_table
from .demo import N_TEST_FACES, N_TRAIN_PATCHES, subset

N_EVAL_PATCHES = 200
MIN_FOLDER_IMAGES = 4
"""Images needed to tune the baselines on a folder (2-fold cross-validation, 2 per fold)."""


def add_parser(commands):
    evaluate = commands.add_parser(
        "evaluate", help="compare a saved model with classical baselines",
        description="Measure clean images with the saved model's blur and noise and print PSNR, "
                    "SSIM and time of the measurement, a direct inverse, the classical "
                    "baselines (each weight tuned by cross-validated grid search) and the "
                    "implicit model. 'faces' evaluates on the "
                    f"{N_TEST_FACES} held-out faces (baselines tuned on the training split), "
                    f"'patches' on {N_EVAL_PATCHES} fresh natural patches, a folder on --crops "
                    "random crops of each photo, in the model's channels (baselines tuned by "
                    "cross-validation on them).")
    evaluate.add_argument("--model", required=True, metavar="PATH",
                          help="a model file written by 'train', 'demo' or ImplicitRegressor.save")
    evaluate.add_argument("--data", required=True, metavar="faces|patches|FOLDER",
                          help="evaluation images (see above)")
    evaluate.add_argument("--n-images", type=positive_int, default=None, metavar="N",
                          help="evaluate on a random subset of N images")
    evaluate.add_argument("--size", type=image_size, default=None,
                          help="side of the evaluation images or crops (default: the model's "
                               "training size)")
    evaluate.add_argument("--crops", type=positive_int, default=1, metavar="K",
                          help="folder only: random crops of each photo (default: 1)")
    add_max_pixels_option(evaluate)
    evaluate.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                          help="seed of the data subsets, crops and noise (default: 0)")
    add_threads_option(evaluate)
    evaluate.set_defaults(handler=run)
    return evaluate


def _evaluation_images(args, size, channels):
    """``(tune, evaluate)`` clean image sets for ``evaluate --data``."""
    from ..data.datasets import PatchDataset, load_natural_patches, train_test_faces

    data, seed = args.data, args.seed
    if data in ("faces", "patches") and channels != 1:
        raise CommandError(f"--data {data}: the model restores {channels}-channel (RGB) images; "
                           "evaluate it on a folder of colour photos")
    if data == "faces":
        tune, test = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                      random_state=seed)
        return tune, subset(test, args.n_images, seed)
    if data == "patches":
        n = args.n_images or N_EVAL_PATCHES
        tune = load_natural_patches(n, size=size, random_state=seed)
        return tune, load_natural_patches(n, size=size, random_state=seed + 1)
    if not Path(data).is_dir():
        raise CommandError(f"--data: no such folder: {data!r} (expected 'faces', 'patches' or a "
                           "folder of photos)")
    crops = PatchDataset(data, patch_size=size, patches_per_image=args.crops,
                         grayscale=channels == 1, random_state=seed, max_pixels=args.max_pixels)
    indices = range(len(crops))
    if args.n_images is not None and args.n_images < len(crops):
        indices = np.sort(np.random.default_rng(seed).choice(len(crops), args.n_images,
                                                             replace=False))
    images = np.stack([crops[int(i)].numpy() for i in indices])
    if channels == 1:
        images = images[:, 0]
    if len(images) < MIN_FOLDER_IMAGES:
        raise CommandError(f"--data: {len(images)} crop(s) of {data!r}; at least "
                           f"{MIN_FOLDER_IMAGES} are needed to tune the baselines by "
                           "cross-validation (raise --crops)")
    return images, images


def run(args):
    """Compare a saved model with the classical baselines."""
    from ..operators import make_measurements

    model = load_model(args.model)
    estimator = model.estimator
    channels, height, width = estimator.image_shape_
    if args.size is None and height != width:
        raise CommandError(f"--model was trained on {height}x{width} images; pass --size")
    size = args.size or height
    noise = float(model.metadata.get("noise", estimator.noise_std_))
    tune, test = _evaluation_images(args, size, channels)
    operator = estimator.operator_
    X_tune = make_measurements(tune, operator, noise, random_state=args.seed)
    X_test = make_measurements(test, operator, noise, random_state=args.seed + 1)
    rows, _, _ = compare_methods(operator, X_tune, tune, X_test, test, estimator,
                                 seed=args.seed)
    title = (f"Deblurring {len(test)} images from {args.data!r} ({size}x{size}, "
             f"{kernel_description(model)}, noise std {noise:g}); time = predict (baselines: "
             "tuning + predict); FP = fixed-point")
    print_table(title, rows, "time (s)")
