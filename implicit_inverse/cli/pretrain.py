"""``implicit-inverse pretrain``: train a denoising prior on photos and write a prior file."""

from __future__ import annotations

import platform
from pathlib import Path

from ._common import (CommandError, add_device_option, add_max_pixels_option,
                      add_threads_option, check_device, check_model_suffix, nonnegative_int,
                      positive_int, say)


def add_parser(commands):
    pretrain = commands.add_parser(
        "pretrain", help="train a grayscale denoising prior on photos (resumable)",
        description="Train a noise-level-conditioned denoiser (a DnCNN or a small U-Net) on "
                    "random crops of photos "
                    "(flips, quarter turns, Gaussian noise of std uniform in [0, --sigma-max]) "
                    "and write it as a prior file (data only, loaded without unpickling) for "
                    "'restore --prior FILE' or ImplicitRegressor(regularizer=...). Without "
                    "PHOTO, trains on scikit-image's bundled photos except camera and coffee "
                    "(held out for evaluation). After every epoch the state is saved in "
                    "--checkpoint; running the command again with the same folder continues up "
                    "to --epochs.")
    pretrain.add_argument("photos", nargs="*", metavar="PHOTO",
                          help="PNG, JPEG or TIFF files or folders (colour photos are used as "
                               "luminance and as each channel); default: the bundled photos")
    pretrain.add_argument("--out", required=True, metavar="FILE.pt", help="prior file to write")
    pretrain.add_argument("--checkpoint", required=True, metavar="DIR",
                          help="folder of the resumable training state")
    pretrain.add_argument("--net", default=None, metavar="SPEC",
                          help="denoiser architecture: 'dncnn:DEPTHxWIDTH' or "
                               "'unet:W1,W2,...[xBLOCKS]' (default: dncnn from --depth and "
                               "--width)")
    pretrain.add_argument("--depth", type=positive_int, default=12, metavar="D",
                          help="convolutions of the DnCNN when --net is not given (default: 12)")
    pretrain.add_argument("--width", type=positive_int, default=32, metavar="W",
                          help="channels of its hidden layers (default: 32)")
    pretrain.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                          default="float32",
                          help="autocast dtype of the forward pass (bfloat16: about 2x faster "
                               "on CPUs with AVX-512 BF16; float16: CUDA only; default: float32)")
    pretrain.add_argument("--channels-last", action="store_true",
                          help="train in the (N, H, W, C) memory layout (faster convolutions on "
                               "most CPUs; the result is the same network)")
    pretrain.add_argument("--dead-leaves", type=float, default=0.0, metavar="FRACTION",
                          help="share of the crops drawn from procedural dead-leaves images "
                               "instead of photos, in [0, 1) (default: 0)")
    pretrain.add_argument("--epochs", type=positive_int, default=300, metavar="E",
                          help="total epochs, counting those in --checkpoint (default: 300)")
    pretrain.add_argument("--crops-per-epoch", type=positive_int, default=2048, metavar="N",
                          help="crops drawn per epoch (default: 2048)")
    pretrain.add_argument("--crop", type=positive_int, default=48, metavar="PX",
                          help="side of the square crops (default: 48)")
    pretrain.add_argument("--batch-size", type=positive_int, default=32, metavar="B",
                          help="crops per optimizer step (default: 32)")
    pretrain.add_argument("--sigma-max", type=float, default=0.1, metavar="STD",
                          help="largest training noise std (default: 0.1)")
    pretrain.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                          help="seed of the crops, noise and initialisation (default: 0)")
    pretrain.add_argument("--force", action="store_true", help="overwrite an existing --out")
    add_device_option(pretrain)
    add_max_pixels_option(pretrain)
    add_threads_option(pretrain)
    pretrain.set_defaults(handler=run)
    return pretrain


def training_planes_of(photos, max_pixels):
    """Grayscale planes of the given photo files (luminance, and each channel of colour ones).

    Parameters
    ----------
    photos : list of str
    max_pixels : int

    Returns
    -------
    list of ndarray of shape (H, W), float32
    """
    from ..data.image_files import list_images, read_image

    from ..data.photos import grayscale_planes

    planes = []
    for path in list_images(photos):
        pixels, info = read_image(path, max_pixels=max_pixels)
        planes.extend(grayscale_planes(pixels[:info.colour_channels]))
    return planes


def run(args):
    """Train (or continue) the prior, then write it to ``--out``."""
    from ..data.photos import training_planes
    from ..networks.priors import save_prior_file
    from ..training.denoiser import (model_card, parse_architecture, pretrain_denoiser,
                                     with_dead_leaves)

    if not 0 < args.sigma_max <= 1:
        raise CommandError(f"--sigma-max must be in (0, 1], got {args.sigma_max}")
    target = Path(args.out)
    if target.is_dir():
        raise CommandError(f"--out {str(target)!r} is a folder; give a file name")
    check_model_suffix("--out", target)
    if target.exists() and not args.force:
        raise CommandError(f"{str(target)!r} already exists; pass --force to overwrite it")
    planes = training_planes_of(args.photos, args.max_pixels) if args.photos \
        else training_planes()
    small = [plane.shape for plane in planes if min(plane.shape) < args.crop]
    if small:
        raise CommandError(f"--crop {args.crop} is larger than photos of shapes {small}")
    spec = args.net or f"dncnn:{args.depth}x{args.width}"
    try:
        architecture = parse_architecture(spec)
        planes, weights = with_dead_leaves(planes, args.dead_leaves, seed=args.seed)
    except ValueError as error:
        raise CommandError(f"--net/--dead-leaves: {error}") from None
    device = check_device(args.device)
    say(f"Training a {spec} denoiser on {len(planes)} grayscale planes ({args.crop}px crops, "
        f"noise std 0-{args.sigma_max:g}, {args.precision}, dead leaves {args.dead_leaves:g}), "
        f"up to {args.epochs} epochs; state in {args.checkpoint}")
    sigma_range = (0.0, args.sigma_max)
    net = pretrain_denoiser(planes, args.checkpoint, architecture=architecture,
                            epochs=args.epochs, crops_per_epoch=args.crops_per_epoch,
                            crop=args.crop, batch_size=args.batch_size, weights=weights,
                            sigma_range=sigma_range, seed=args.seed, device=device,
                            precision=args.precision, channels_last=args.channels_last)
    hardware = f"{platform.processor() or platform.machine()}, device {device}"
    card = model_card(net, crop=args.crop, batch_size=args.batch_size, sigma_range=sigma_range,
                      hardware=hardware, precision=args.precision,
                      dead_leaves=args.dead_leaves)
    save_prior_file(target, net.module_, card)
    say(f"Wrote {target}: {card['epochs']} epochs, {card['optimizer_steps']} optimizer steps, "
        f"final training loss {card['final_train_loss']:.3g}")
