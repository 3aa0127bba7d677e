"""``implicit-inverse blur``: blur photos and add noise, to make test measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (KERNEL_HELP, add_max_pixels_option, add_threads_option,
                      blur_operator, check_photos, nonnegative_float, nonnegative_int,
                      plan_outputs, progress, say)

DEFAULT_NOISE = 0.01


def add_parser(commands):
    blur = commands.add_parser(
        "blur", help="blur photos and add noise (make test measurements)",
        description="Blur each photo by --kernel (every colour channel alike; an alpha channel "
                    "is copied), add Gaussian noise of std --noise (values in [0, 1]), clip to "
                    "[0, 1] and write it to --out under the same name, in the same format and "
                    "bit depth. Every photo is checked before anything is written.")
    blur.add_argument("photos", nargs="+", metavar="PHOTO",
                      help="PNG, JPEG or TIFF files (8 or 16 bits, grayscale or RGB), or "
                           "folders of them")
    blur.add_argument("--kernel", required=True, metavar="SPEC", help=f"blur kernel: {KERNEL_HELP}")
    blur.add_argument("--noise", type=nonnegative_float, default=DEFAULT_NOISE, metavar="STD",
                      help=f"noise standard deviation, pixel values in [0, 1] (default: "
                           f"{DEFAULT_NOISE})")
    blur.add_argument("--boundary", choices=("circular", "zero"), default="circular",
                      help="circular: the photo wraps around at its borders; zero: black "
                           "outside the photo (default: circular)")
    blur.add_argument("--out", required=True, metavar="DIR",
                      help="output folder, created if needed")
    blur.add_argument("--force", action="store_true", help="overwrite existing output files")
    blur.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                      help="seed of the noise (default: 0)")
    add_max_pixels_option(blur)
    add_threads_option(blur)
    blur.set_defaults(handler=run)
    return blur


def run(args):
    """Blur and add noise to each photo; write them beside each other in ``--out``."""
    from ..data.image_files import read_image, write_image
    from ..operators import make_measurements

    operator = blur_operator(args.kernel, args.boundary)
    files = check_photos(args.photos, args.max_pixels, operator)
    targets = plan_outputs(files, args.out, args.force)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    kernel = operator.kernel.shape
    say(f"Blurring {len(files)} photo(s): kernel {args.kernel} ({kernel[0]}x{kernel[1]}), "
        f"{args.boundary} boundary, noise std {args.noise:g}")
    for index, (source, target) in enumerate(progress(list(zip(files, targets)), "blur")):
        pixels, info = read_image(source, max_pixels=args.max_pixels)
        colour = info.colour_channels
        measured = make_measurements(pixels[None, :colour], operator, args.noise,
                                     random_state=np.random.default_rng([args.seed, index]))[0]
        write_image(target, np.concatenate([measured, pixels[colour:]]), info)
        say(f"{source}: {info.describe()} -> {target}")
