"""The equilibrium model trained across kernels with JFB, against the denoiser it started from.

Starts from a denoising prior (``--prior NAME`` shipped, or ``--prior-file FILE``; a prior
already trained this way continues, and its card records every run), trains it
inside its plug-and-play fixed point on random blurs for ``--minutes`` of one thread
(:class:`~implicit_inverse.training.across_kernels.AcrossKernelsTrainer`: a new Gaussian, disk
or motion blur up to 15 px and a noise std in [0, 0.05] per batch of 64x64 crops of the
training photos), then restores the 256x256 centre crops of the held-out photos camera and
coffee, noise 0.01, blurred by kernels the training never drew exactly: ``gaussian:13,2.5``,
``disk:3``, ``motion:15,75`` (and the three kernels of the photo benchmark). Both priors are
calibrated the same way (``from_pretrained``'s rule, on crops of their training photos) and
solved by the estimator's solver (Anderson, ``tol=1e-4``, at most 100 iterations). The best
classical baseline (Tikhonov, Wiener, TV tuned by ``tune_strongest`` on 32 crops of the training
photos) is the reference. Writes the trained prior to ``--out``. Run::

    python benchmarks/across_kernels.py --prior-file unet-gray.pt --minutes 20 --out deq.pt

As a campaign over several sittings, ``--checkpoint DIR`` continues from the training state in
``DIR`` when there is one (the start prior then only gives the architecture and the card) and
saves it there every five minutes and at the end; ``--minutes 0`` only evaluates it.
``--jacobian-weight`` adds the Jacobian penalty of the map at the training fixed points to the
loss, ``--train-max-iter`` and ``--train-tol`` set the training solves.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from prior_convergence import calibrated_settings, held_out_images

from implicit_inverse.baselines.tuning import tune_strongest
from implicit_inverse.data.photos import HELD_OUT_PHOTOS, training_crops, \
    training_planes
from implicit_inverse.metrics import psnr
from implicit_inverse.networks.priors import load_prior, load_prior_file, save_prior_file
from implicit_inverse.operators import Blur, make_measurements
from implicit_inverse.operators.specs import parse_kernel
from implicit_inverse.training.across_kernels import AcrossKernelsTrainer
from implicit_inverse.training.recipe import ModelSpec, build_model

UNSEEN = ("gaussian:13,2.5", "disk:3", "motion:15,75")
SEEN = ("gaussian:9,1.6", "disk:2", "motion:9,30")
NOISE = 0.01


def calibrated_restore(operator, denoiser, measured):
    """Restorations of ``measured`` (n, 1, H, W), their solver stats and the solve's seconds:
    ``from_pretrained``'s calibration, then the model its recipe builds (Anderson,
    ``tol=1e-4``, 100 iterations)."""
    lam, sigma = calibrated_settings(operator, denoiser, NOISE)
    spec = ModelSpec(operator, regularizer="pretrained", channels=1, lam=lam, sigma=sigma)
    layer = build_model(spec, prior=denoiser).eval()
    began = time.perf_counter()
    with torch.no_grad():
        restored = layer(measured)
    return restored.clamp(0, 1), layer.last_stats, time.perf_counter() - began


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prior", default=None, help="shipped prior to start from")
    source.add_argument("--prior-file", default=None, help="prior file to start from")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", default="across_kernels.pt", help="trained prior file")
    parser.add_argument("--kernels", nargs="+", default=list(UNSEEN + SEEN), metavar="SPEC")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="training state to continue from and save to")
    parser.add_argument("--jacobian-weight", type=float, default=0.0)
    parser.add_argument("--penalty", choices=("spectral", "frobenius"), default="spectral")
    parser.add_argument("--margin", type=float, default=0.9)
    parser.add_argument("--train-max-iter", type=int, default=30)
    parser.add_argument("--train-tol", type=float, default=1e-3)
    parser.add_argument("--whole", action="store_true",
                        help="evaluate on the whole held-out photos instead of their crops")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start, card = (load_prior_file(args.prior_file) if args.prior_file
                   else load_prior(args.prior))
    trained = copy.deepcopy(start)
    trainer = AcrossKernelsTrainer(trained, training_planes(), max_iter=args.train_max_iter,
                                   tol=args.train_tol, jacobian_weight=args.jacobian_weight,
                                   penalty=args.penalty, margin=args.margin)
    if args.checkpoint and trainer.load_checkpoint(args.checkpoint):
        print(f"continuing from {args.checkpoint}: {trainer.steps_} steps", flush=True)
    began, saved = time.perf_counter(), time.perf_counter()
    while time.perf_counter() - began < 60 * args.minutes:
        trainer.train_for(60)
        recent = trainer.history_[-20:]
        print(f"{trainer.steps_} steps, loss {np.mean([h['loss'] for h in recent]):.2e}, "
              f"penalty {np.mean([h.get('penalty', 0.0) for h in recent]):.3f}, "
              f"iterations {np.mean([h['iterations'] for h in recent]):.1f}, converged "
              f"{np.mean([h['converged'] for h in recent]):.0%}", flush=True)
        if args.checkpoint and time.perf_counter() - saved > 300:
            trainer.save_checkpoint(args.checkpoint)
            saved = time.perf_counter()
    if args.checkpoint:
        trainer.save_checkpoint(args.checkpoint)
    trained.eval()
    hours = sum(h["seconds"] for h in trainer.history_) / 3600
    run = (f"JFB across random kernels: {trainer.steps_} steps of batch 16, 64x64 crops, noise "
           f"std uniform in [0, 0.05], Adam 1e-4, training solves of at most "
           f"{args.train_max_iter} iterations to tol {args.train_tol:g}, {args.penalty} "
           f"Jacobian penalty (margin {args.margin:g}) weight {args.jacobian_weight:g}, "
           f"{hours:.2f} h of one CPU thread")
    earlier = card.get("across_kernels")
    save_prior_file(args.out, trained, dict(card, across_kernels=(
        f"{earlier}; then {run}" if earlier else run)))
    print_table(args.kernels, start, trained, args.whole)
    print(f"{trainer.steps_} training steps in all, {args.minutes:g} min in this run.")


def print_table(kernels, start, trained, whole):
    """The markdown table of the best classical baseline and both priors on every kernel."""
    images = held_out_images(whole)
    train_clean = training_crops(32, 64, 0)
    print("\n| kernel | best classical | denoiser prior | across kernels | gain | solve s |")
    print("|---|---|---|---|---|---|")
    for spec in kernels:
        operator = Blur(parse_kernel(spec))
        measured = [make_measurements(image, operator, NOISE, random_state=1 + index)
                    for index, image in enumerate(images)]
        train_measured = make_measurements(torch.from_numpy(train_clean), operator, NOISE,
                                           random_state=2).numpy()
        tuned, strongest = tune_strongest(operator, train_measured, train_clean,
                                          max_samples=32)
        classical = np.mean([psnr(image.numpy()[0, 0], np.clip(
            tuned[strongest].estimator.predict(d.numpy()[:, 0])[0], 0, 1))
            for image, d in zip(images, measured)])
        cells = []
        for denoiser in (start, trained):
            results = [calibrated_restore(operator, denoiser, d) for d in measured]
            cells.append((np.mean([psnr(image.numpy(), restored.numpy())
                                   for image, (restored, _, _) in zip(images, results)]),
                          np.mean([float(s.converged.float().mean()) for _, s, _ in results]),
                          results[0][2]))
        print(f"| {spec}{' (unseen)' if spec in UNSEEN else ''} | {classical:.2f} "
              f"({strongest}) | "
              + " | ".join(f"{value:.2f} ({share:.0%} conv.)" for value, share, _ in cells)
              + f" | {cells[1][0] - cells[0][0]:+.2f} | {cells[1][2]:.1f} |", flush=True)
    size = "x".join(map(str, images[0].shape[-2:]))
    print(f"\nPSNR (dB), {'whole photos' if whole else '256x256 centre crops'} of "
          f"{' and '.join(HELD_OUT_PHOTOS)}, noise {NOISE}; solve s: the across-kernels "
          f"model's solve of the {size} {HELD_OUT_PHOTOS[0]} (one thread, calibration apart).")

if __name__ == "__main__":
    main()
