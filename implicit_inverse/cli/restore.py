"""``implicit-inverse restore``: deblur photos of any size with a trained model or, without
``--model``, with the shipped pretrained prior (no training: ``--kernel`` and ``--noise`` say
what to undo).

Channels: a grayscale model restores each of R, G and B of a colour photo as a grayscale image
(the blur acts on every channel alike, so each channel is a grayscale measurement; correlations
between channels are not used). An RGB model restores a grayscale photo as the colour photo whose
three channels are that photo, and writes back the mean of the three restored channels. An alpha
channel is copied unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import (KERNEL_HELP, CommandError, add_device_option, add_max_pixels_option,
                      add_threads_option, blur_operator, check_device, check_photos,
                      kernel_description, load_model, nonnegative_float, plan_outputs, progress,
                      say)


def add_parser(commands):
    restore = commands.add_parser(
        "restore", help="deblur photos with a trained model or the shipped prior",
        description="Restore each photo (any size; PNG, JPEG or TIFF, 8 or 16 bits, grayscale or "
                    "RGB) with the model's blur (or, without --model, with the shipped pretrained "
                    "prior for --kernel and --noise, no training) and write it to --out under the "
                    "same name, in the same format and bit depth, with one line per photo: its size"
                    " and the fixed-point statistics (mean iterations, share of solves that "
                    "converged). A grayscale model restores R, G and B one at a time; an RGB model "
                    "restores a grayscale photo as gray RGB and writes the channels' mean; alpha is"
                    " copied. Every photo is checked before anything is written; each output is "
                    "written beside its target, then renamed.")
    restore.add_argument("photos", nargs="+", metavar="PHOTO",
                         help="PNG, JPEG or TIFF files, or folders of them")
    restore.add_argument("--model", metavar="PATH",
                         help="a model file written by 'train', 'demo' or "
                              "ImplicitRegressor.save (default: the shipped prior, zero-shot)")
    restore.add_argument("--kernel", metavar="SPEC",
                         help=f"without --model: the blur to undo, {KERNEL_HELP}")
    restore.add_argument("--noise", type=nonnegative_float, metavar="STD",
                         help="without --model: the photos' noise std, pixel values in [0, 1]")
    restore.add_argument("--boundary", choices=("circular", "zero"), default="circular",
                         help="without --model: the blur's boundary (default: circular)")
    restore.add_argument("--prior", metavar="NAME", default=None,
                         help="without --model: a shipped prior (default: the default prior)")
    restore.add_argument("--map", dest="fixed_point_map", choices=("proximal", "red"),
                         default="proximal",
                         help="without --model: the denoiser in the proximal map (default) or as "
                              "the RED gradient of the DE-GRAD step")
    restore.add_argument("--out", required=True, metavar="DIR",
                         help="output folder, created if needed")
    restore.add_argument("--force", action="store_true",
                         help="overwrite existing output files")
    add_max_pixels_option(restore)
    add_device_option(restore)
    add_threads_option(restore)
    restore.set_defaults(handler=run)
    return restore


def zero_shot_estimator(args, device):
    """The shipped prior for ``--kernel``, ``--noise`` (and ``--prior``), calibrated for them.

    Returns
    -------
    estimator : ImplicitDeblurRegressor
        From :meth:`~implicit_inverse.ImplicitRegressor.from_pretrained` (grayscale: colour
        photos are restored channel by channel).
    description : str
    """
    from ..estimators import ImplicitDeblurRegressor

    if args.kernel is None or args.noise is None:
        raise CommandError("without --model, give --kernel SPEC and --noise STD (the blur and "
                           "noise of the photos) to restore them with the shipped prior")
    operator = blur_operator(args.kernel, args.boundary)
    try:
        estimator = ImplicitDeblurRegressor.from_pretrained(
            operator=operator, noise_std=args.noise, name=args.prior,
            fixed_point_map=args.fixed_point_map, device=device)
    except ValueError as error:
        if args.prior is None:
            raise
        raise CommandError(f"--prior: {error}") from None
    description = (f"pretrained prior {args.prior or 'default'} ({args.fixed_point_map} map), "
                   f"kernel {args.kernel}, "
                   f"{args.boundary} boundary, lam {estimator.lam_:.3g}, "
                   f"denoiser sigma {estimator.prior_sigma_:.3g}")
    return estimator, description


def use_device(estimator, device):
    """Move a loaded model's network to ``device`` for prediction."""
    if str(estimator.net_.device) == device:
        return
    estimator.net_.module_.to(device)
    estimator.net_.device = device
    estimator.device = device


def restore_pixels(estimator, colour):
    """Restore colour channels (C, H, W) with a model of 1 or 3 channels.

    Returns
    -------
    restored : ndarray of shape (C, H, W), float32
    iterations, converged : ndarray of shape (n_solves,)
        Per fixed-point solve (one per channel for a grayscale model on a colour photo).
    """
    model_channels = estimator.n_channels_
    stats = []
    if model_channels == colour.shape[0]:
        restored, solve = estimator.predict_with_stats(colour[None])
        restored, stats = restored[0], [solve]
    elif model_channels == 1:
        parts = []
        for channel in colour:  # one at a time: memory of one grayscale image
            part, solve = estimator.predict_with_stats(channel[None, None])
            parts.append(part[0, 0])
            stats.append(solve)
        restored = np.stack(parts)
    elif model_channels == 3 and colour.shape[0] == 1:
        gray_rgb = np.repeat(colour[None], 3, axis=1)
        restored, solve = estimator.predict_with_stats(gray_rgb)
        restored, stats = restored[0].mean(axis=0, keepdims=True), [solve]
    else:  # pragma: no cover - models have 1 or 3 channels
        raise CommandError(f"a {model_channels}-channel model cannot restore "
                           f"{colour.shape[0]}-channel photos")
    iterations = np.concatenate([s.iterations.float().cpu().numpy() for s in stats])
    converged = np.concatenate([s.converged.float().cpu().numpy() for s in stats])
    return restored.astype(np.float32), iterations, converged


def run(args):
    """Restore each photo and write it to ``--out``."""
    from ..data.image_files import read_image, write_image

    device = check_device(args.device)
    if args.model is not None:
        if args.kernel is not None or args.noise is not None or args.prior is not None:
            raise CommandError("--kernel, --noise and --prior are for restoring without "
                               "--model: a model file carries its own blur and noise level")
        model = load_model(args.model)
        estimator, description = model.estimator, kernel_description(model)
        use_device(estimator, device)
    else:
        estimator, description = zero_shot_estimator(args, device)
    files = check_photos(args.photos, args.max_pixels, estimator.operator_)
    targets = plan_outputs(files, args.out, args.force)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    kind = "grayscale" if estimator.n_channels_ == 1 else "RGB"
    say(f"Restoring {len(files)} photo(s) with a {kind} model ({description}, "
        f"noise std {estimator.noise_std_:.3g})")
    for source, target in progress(list(zip(files, targets)), "restore"):
        start = time.perf_counter()
        pixels, info = read_image(source, max_pixels=args.max_pixels)
        colour = info.colour_channels
        restored, iterations, converged = restore_pixels(estimator, pixels[:colour])
        write_image(target, np.concatenate([restored, pixels[colour:]]), info)
        rule = ""
        if colour != estimator.n_channels_:
            rule = ", per channel" if estimator.n_channels_ == 1 else ", as gray RGB"
        say(f"{source}: {info.describe()}{rule}: {iterations.mean():.1f} FP iterations, "
            f"{100 * converged.mean():.0f}% converged, {time.perf_counter() - start:.1f} s "
            f"-> {target}")
