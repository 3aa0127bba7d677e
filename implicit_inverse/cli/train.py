"""``implicit-inverse train``: fit a deblurring model on faces, patches or a folder of photos."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from ..equilibrium.gradients import STRATEGIES
from ._common import (KERNEL_HELP, CommandError, add_device_option, add_max_pixels_option,
                      add_threads_option, blur_operator, check_device, check_model_suffix,
                      image_size, nonnegative_float, nonnegative_int, positive_int, save_model)
from .demo import DEMO_KERNEL, DEMO_NOISE, N_TEST_FACES, N_TRAIN_PATCHES, subset

DEFAULT_PATCH = 64
DEFAULT_PATCHES_PER_IMAGE = 4
CHUNK_PATCHES = 512
"""Patches held in memory at once when training on a folder (one ``partial_fit`` each)."""


def len_faces_train():
    """Number of training images of the faces recipe (faces not held out + patches)."""
    return 100 - N_TEST_FACES + N_TRAIN_PATCHES


def add_parser(commands):
    train = commands.add_parser(
        "train", help="train a deblurring model and save it",
        description="Train ImplicitDeblurRegressor on clean images blurred by --kernel plus "
                    "Gaussian noise, and save it (ImplicitRegressor.save's format, with how it "
                    "was trained) to --model. A folder of photos is streamed from disk: every "
                    "epoch takes --patches-per-image random --patch crops of each photo, at "
                    f"most {CHUNK_PATCHES} crops in memory at a time (skorch's table shows one "
                    "row per chunk), whatever the number of photos.")
    train.add_argument("--data", required=True, metavar="faces|patches|FOLDER",
                       help="'faces' (the demo's training split: 80 faces + 600 natural "
                            "patches), 'patches' (natural-image patches) or a folder of PNG, "
                            "JPEG or TIFF photos, any size (a folder named faces or patches: "
                            "write ./faces)")
    blur = train.add_mutually_exclusive_group()
    blur.add_argument("--kernel", default=None, metavar="SPEC",
                      help=f"blur kernel: {KERNEL_HELP} (default: {DEMO_KERNEL})")
    blur.add_argument("--blur", nargs=2, type=float, default=None, metavar=("SIZE", "SIGMA"),
                      help="shorthand for --kernel gaussian:SIZE,SIGMA")
    train.add_argument("--boundary", choices=("circular", "zero"), default="circular",
                       help="circular: the photo wraps around (exact FFT preconditioner, fast); "
                            "zero: black outside the photo (no wrap-around, slower iterative "
                            "preconditioner) (default: circular)")
    train.add_argument("--noise", type=nonnegative_float, default=DEMO_NOISE, metavar="STD",
                       help=f"measurement noise standard deviation (default: {DEMO_NOISE})")
    train.add_argument("--gradient", choices=sorted(STRATEGIES), default="jfb",
                       help="gradient of the fixed point: Jacobian-free (jfb), implicit (exact) "
                            "or backpropagated through the iterations (unrolled) (default: jfb)")
    train.add_argument("--from-pretrained", nargs="?", const="default", default=None,
                       metavar="PRIOR",
                       help="fine-tune a shipped denoising prior (plug-and-play map, calibrated "
                            "for --kernel and --noise) instead of training from scratch; PRIOR "
                            "names one (default: the default prior)")
    train.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                       help="training epochs, passes over the data (default: the estimator's "
                            "max_epochs, 40)")
    train.add_argument("--size", type=image_size, default=None,
                       help="side of the square images of 'faces' and 'patches' (default: 32)")
    train.add_argument("--n-images", type=positive_int, default=None, metavar="N",
                       help="use a random subset of N training images or photos (default: all; "
                            f"{len_faces_train()} for faces and patches)")
    train.add_argument("--patch", type=image_size, default=None, metavar="P",
                       help=f"folder only: side of the random crops (default: {DEFAULT_PATCH})")
    train.add_argument("--patches-per-image", type=positive_int, default=None, metavar="K",
                       help="folder only: random crops of each photo per epoch (default: "
                            f"{DEFAULT_PATCHES_PER_IMAGE})")
    train.add_argument("--color", action="store_true",
                       help="folder only: train on RGB (default: grayscale, ITU-R 601 luma)")
    add_max_pixels_option(train)
    train.add_argument("--model", required=True, metavar="PATH.pt", help="file to write")
    train.add_argument("--force", action="store_true", help="overwrite an existing model file")
    add_device_option(train)
    train.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                       help="seed of the data, the noise and the network (default: 0)")
    add_threads_option(train)
    # Settings for tests and benchmarks (not shown in --help).
    train.add_argument("--max-iter", type=positive_int, default=None, help=argparse.SUPPRESS)
    train.add_argument("--batch-size", type=positive_int, default=None, help=argparse.SUPPRESS)
    train.add_argument("--chunk", type=positive_int, default=CHUNK_PATCHES,
                       help=argparse.SUPPRESS)
    train.set_defaults(handler=run)
    return train


def kernel_spec(args):
    """``--kernel`` (or ``--blur SIZE SIGMA`` as a Gaussian spec, or the default)."""
    if args.blur is not None:
        size, sigma = args.blur
        if not (math.isfinite(size) and size.is_integer() and size >= 1):
            raise CommandError(f"--blur SIZE must be a positive integer, got {size:g}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise CommandError(f"--blur SIGMA must be a positive number, got {sigma:g}")
        return f"gaussian:{int(size)},{sigma:g}"
    return args.kernel or DEMO_KERNEL


ZERO_BOUNDARY_NOTE = ("the Jacobian penalty is off with --boundary zero (its double "
                      "backpropagation through the iterative preconditioner gives non-finite "
                      "gradients)")


def _estimator_params(args):
    params = {}
    if args.boundary == "zero":
        params["jacobian_penalty"] = 0.0
    if args.max_iter is not None:
        params.update(max_iter=args.max_iter, train_max_iter=args.max_iter)
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    return params


def new_estimator(args, operator, device, channels=1, **params):
    """The estimator to train: from scratch, or around a shipped prior (``--from-pretrained``).

    From a prior, ``noise_std`` is ``--noise`` (every batch is measured afresh with it) and
    training continues the prior (``warm_start``); from scratch, the noise is estimated from the
    training pairs.
    """
    from ..estimators import ImplicitDeblurRegressor

    common = dict(gradient=args.gradient, device=device, random_state=args.seed, verbose=1,
                  **params)
    if args.from_pretrained is None:
        return ImplicitDeblurRegressor(operator=operator, **common)
    name = None if args.from_pretrained == "default" else args.from_pretrained
    try:
        return ImplicitDeblurRegressor.from_pretrained(
            operator=operator, noise_std=args.noise, name=name, channels=channels,
            warm_start=True, **common)
    except ValueError as error:
        raise CommandError(f"--from-pretrained: {error}") from None


def run(args):
    """Fit a deblurring model and save it with its metadata."""
    model = Path(args.model)
    if model.is_dir():
        raise CommandError(f"--model: {str(model)!r} is a folder")
    check_model_suffix("--model", model)
    if model.exists() and not args.force:
        raise CommandError(f"--model: {str(model)!r} already exists; pass --force to overwrite it")
    device = check_device(args.device)
    spec = kernel_spec(args)
    folder = args.data not in ("faces", "patches")
    if folder:
        for name in ("size",):
            if getattr(args, name) is not None:
                raise CommandError("--size applies to 'faces' and 'patches'; a folder of photos "
                                   "is cut into --patch crops")
        estimator, metadata = _train_on_folder(args, spec, device)
    else:
        for option, value in (("--patch", args.patch),
                              ("--patches-per-image", args.patches_per_image),
                              ("--color", args.color or None)):
            if value is not None:
                raise CommandError(f"{option} applies to a folder of photos, not "
                                   f"{args.data!r}")
        estimator, metadata = _train_on_arrays(args, spec, device)
    save_model(model, estimator, metadata)
    from ..training.distributed import is_main_process

    if is_main_process():  # under torchrun only rank 0 writes the file
        size_kb = model.stat().st_size / 1024
        print(f"Saved the model to {str(model)!r} ({size_kb:.0f} KB)")


def _metadata(args, spec, estimator, **extra):
    return {"command": "train", "data": str(args.data), "kernel": spec,
            "boundary": args.boundary, "noise": float(args.noise), "seed": int(args.seed),
            "gradient": args.gradient, "epochs": len(estimator.history),
            "from_pretrained": args.from_pretrained, **extra}


def _train_on_arrays(args, spec, device):
    from ..data.datasets import load_natural_patches, train_test_faces
    from ..operators import make_measurements

    size = args.size or 32
    operator = blur_operator(spec, args.boundary, fit_size=size)
    if args.data == "faces":
        clean, _ = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                    random_state=args.seed)
    else:
        clean = load_natural_patches(args.n_images or len_faces_train(), size=size,
                                     random_state=args.seed)
    clean = subset(clean, args.n_images, args.seed)
    if len(clean) < 2:
        raise CommandError(f"--data: at least 2 training images are needed, got {len(clean)}")
    X = make_measurements(clean, operator, args.noise, random_state=args.seed)
    print(f"Training on {len(clean)} images from {args.data!r} ({size}x{size}, kernel {spec}, "
          f"{args.boundary} boundary, noise std {args.noise:g}, gradient {args.gradient}, "
          f"device {device})")
    if args.boundary == "zero":
        print(f"Note: {ZERO_BOUNDARY_NOTE}")
    sys.stdout.flush()
    start = time.perf_counter()
    options = {} if args.epochs is None else {"max_epochs": args.epochs}
    estimator = new_estimator(args, operator, device, **options, **_estimator_params(args))
    estimator.fit(X, clean)
    print(f"Trained {len(estimator.history)} epochs in {time.perf_counter() - start:.1f} s; "
          f"training PSNR {estimator.score(X, clean):.2f} dB")
    return estimator, _metadata(args, spec, estimator, size=size, color=False,
                                n_images=len(clean))


def _train_on_folder(args, spec, device):
    import numpy as np
    import torch

    from ..data.datasets import PatchDataset
    from ..estimators import ImplicitDeblurRegressor
    from ..data.image_files import list_images
    from ..operators import make_measurements

    folder = Path(args.data)
    if not folder.exists():
        raise CommandError(f"--data: no such folder: {args.data!r} (expected 'faces', "
                           "'patches' or a folder of photos)")
    if not folder.is_dir():
        raise CommandError(f"--data: not a folder: {args.data!r}")
    patch = args.patch or DEFAULT_PATCH
    per_image = args.patches_per_image or DEFAULT_PATCHES_PER_IMAGE
    operator = blur_operator(spec, args.boundary, fit_size=patch)
    files = list_images(folder)
    if args.n_images is not None and args.n_images < len(files):
        chosen = np.random.default_rng(args.seed).choice(len(files), args.n_images,
                                                         replace=False)
        files = [files[i] for i in sorted(chosen)]
    patches = PatchDataset(files, patch_size=patch, patches_per_image=per_image,
                           grayscale=not args.color, random_state=args.seed,
                           max_pixels=args.max_pixels)
    if len(patches) < 2:
        raise CommandError(f"--data: {args.data!r} gives {len(patches)} patch per epoch; at "
                           "least 2 are needed (add photos or raise --patches-per-image)")
    n_chunks = math.ceil(len(patches) / args.chunk)
    chunk = math.ceil(len(patches) / n_chunks)  # balanced chunks: none with a single patch
    epochs = args.epochs or ImplicitDeblurRegressor().max_epochs
    colour = "RGB" if args.color else "grayscale"
    print(f"Training on {len(files)} photos from {args.data!r}: {per_image} random "
          f"{patch}x{patch} {colour} crops per photo per epoch, {epochs} epochs of {n_chunks} "
          f"chunk(s) of up to {chunk} crops (one table row per chunk); kernel {spec}, "
          f"{args.boundary} boundary, noise std {args.noise:g}, gradient {args.gradient}, "
          f"device {device}")
    if args.boundary == "zero":
        print(f"Note: {ZERO_BOUNDARY_NOTE}")
    sys.stdout.flush()
    # Each chunk is one partial_fit (one skorch epoch); the cosine schedule spans all of them.
    # noise_std="auto": every batch replaces the chunk's measurement noise by fresh noise of the
    # std estimated on the first chunk (that is, --noise); warm starts do not apply to crops
    # that change every epoch, so reuse_fixed_points is off.
    estimator = new_estimator(args, operator, device, channels=3 if args.color else 1,
                              max_epochs=epochs * n_chunks, reuse_fixed_points=False,
                              **_estimator_params(args))
    loader = torch.utils.data.DataLoader(patches, batch_size=chunk, shuffle=False)
    start = time.perf_counter()
    for epoch in range(epochs):
        patches.set_epoch(epoch)
        for index, clean in enumerate(loader):
            clean = clean.numpy()
            X = make_measurements(clean, operator, args.noise,
                                  random_state=np.random.default_rng([args.seed, epoch, index]))
            estimator.partial_fit(X, clean)
    score = estimator.score(X, clean)
    print(f"Trained {epochs} epochs ({len(estimator.history)} chunks) in "
          f"{time.perf_counter() - start:.1f} s; PSNR on the last chunk {score:.2f} dB")
    return estimator, _metadata(args, spec, estimator, size=patch, color=bool(args.color),
                                patches_per_image=per_image, n_images=len(files))
