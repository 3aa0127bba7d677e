"""Convergence of the zero-shot prior: which fixed-point iteration reaches ``tol``, at what cost.

For each kernel (noise std ``--noise``, circular blur), the prior (shipped, or
``--prior-file``) is calibrated as ``ImplicitDeblurRegressor.from_pretrained`` does it (``lam``
and ``sigma`` from crops of its own training photos) and the held-out photos camera and coffee
(grayscale; 256x256 centre crops, or the whole photos with ``--whole``) are restored with the
same ``lam`` and ``sigma`` by:

- ``proximal, Anderson``: the estimator's map and solver (DE-Prox,
  ``x <- D_sigma((A^T A + lam I)^{-1} (lam x + A^T d))``, Anderson with ``mixing=1``);
- ``proximal, Anderson 0.5``: the same with Anderson's ``mixing=0.5`` (a relaxed combination);
- ``proximal, relaxed 0.5``: plain iteration of ``x <- x / 2 + T(x) / 2`` (averaged map);
- ``proximal, Anderson safeguarded``: Anderson that hands a sample to the averaged step once
  its residual has set no new low for ``--stall-patience`` (10) iterations;
- ``RED, Anderson``: the DE-GRAD step of this library with the prior as a gradient,
  ``x <- x - P (A^T (A x - d) + lam (x - D_sigma(x)))``, ``P = (A^T A + lam I)^{-1}``.

Each row gives the mean PSNR (dB), the mean iterations, the share of solves converged at
``tol=1e-4`` within ``--max-iter`` (100, the estimator's defaults) and the seconds (one torch
thread). Run::

    python benchmarks/prior_convergence.py [--prior NAME] [--whole] [--kernels SPEC ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from implicit_inverse.operators.specs import parse_kernel
from implicit_inverse.data.photos import HELD_OUT_PHOTOS, load_photo
from implicit_inverse.equilibrium import Anderson, ForwardIteration, GradientStep, ProximalStep
from implicit_inverse.metrics import psnr
from implicit_inverse.networks.denoiser import DenoiserGradient
from implicit_inverse.networks.priors import load_prior, load_prior_file
from implicit_inverse.operators import Blur, make_measurements
from implicit_inverse.training.calibration import calibrate_prior, calibration_crops
from implicit_inverse.training.recipe import ModelSpec

KERNELS = ("gaussian:9,1.6", "disk:2", "motion:9,30")


def held_out_images(whole, size=256):
    """The held-out photos, whole or as centre crops: a list of (1, 1, H, W) tensors."""
    images = []
    for name in HELD_OUT_PHOTOS:
        photo = load_photo(name)
        if not whole:
            top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
            photo = photo[top:top + size, left:left + size]
        images.append(torch.from_numpy(np.ascontiguousarray(photo))[None, None])
    return images


def calibrated_settings(operator, denoiser, noise_std):
    """``(lam, sigma)`` for ``denoiser`` as ``from_pretrained`` calibrates them: its 64x64
    calibration crops measured through ``operator`` (noiselessly), scored for ``noise_std``."""
    crops = calibration_crops()
    spec = ModelSpec(operator, regularizer="pretrained", channels=1, lam=None)
    with torch.no_grad():
        measured = operator(crops)
    lam, sigma, _ = calibrate_prior(spec, denoiser, measured, crops, noise_std)
    return lam, sigma


def relaxed(step, weight):
    """``x -> (1 - weight) x + weight T(x)`` of a map ``step(x, d)``."""
    def apply(x, d):
        return (1 - weight) * x + weight * step(x, d)
    return apply


def variants(operator, denoiser, lam, sigma, stall_patience):
    """name -> (map ``(x, d) -> T(x; d)``, its starting point ``d -> x0``, solver)."""
    proximal = ProximalStep(operator, denoiser, lam=lam, sigma=sigma, learn_sigma=False)
    red = GradientStep(operator, DenoiserGradient(denoiser, sigma, lam), eta=1.0,
                       precondition=True, lam=lam, initializer="tikhonov")
    start = proximal.initial_point
    return {
        "proximal, Anderson": (proximal, start, Anderson()),
        "proximal, Anderson 0.5": (proximal, start, Anderson(mixing=0.5)),
        "proximal, relaxed 0.5": (relaxed(proximal, 0.5), start, ForwardIteration()),
        "proximal, Anderson safeguarded": (proximal, start,
                                           Anderson(stall_patience=stall_patience)),
        "RED, Anderson": (red, start, Anderson()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prior", default=None, help="shipped prior (default: the default)")
    source.add_argument("--prior-file", default=None,
                        help="a prior file instead of a shipped prior")
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), metavar="SPEC")
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--whole", action="store_true", help="whole photos, not 256x256 crops")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stall-patience", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help="only these rows (names as in the table)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    denoiser, _ = load_prior_file(args.prior_file) if args.prior_file else load_prior(args.prior)
    images = held_out_images(args.whole)
    print("| kernel | iteration | PSNR (dB) | iterations | converged | seconds |")
    print("|---|---|---|---|---|---|")
    for spec in args.kernels:
        operator = Blur(parse_kernel(spec))
        lam, sigma = calibrated_settings(operator, denoiser, args.noise)
        measured = [make_measurements(image, operator, args.noise, random_state=index)
                    for index, image in enumerate(images)]
        rows = variants(operator, denoiser, lam, sigma, args.stall_patience)
        for name, (step, start, solver) in rows.items():
            if args.variants and name not in args.variants:
                continue
            scores, iterations, converged = [], [], []
            begin = time.perf_counter()
            with torch.no_grad():
                for clean, d in zip(images, measured):
                    x, stats = solver.solve(
                        lambda x, index, d=d, step=step: step(x, d[index]), start(d),
                        max_iter=args.max_iter, tol=1e-4, warn=False)
                    scores.append(psnr(clean.numpy(), x.clamp(0, 1).numpy()))
                    iterations.append(stats.summary()["iterations_mean"])
                    converged.append(bool(stats.converged.all()))
            print(f"| {spec} | {name} | {np.mean(scores):.2f} | {np.mean(iterations):.0f} | "
                  f"{np.mean(converged):.0%} | {time.perf_counter() - begin:.1f} |", flush=True)
        print(f"| {spec} | (calibrated lam {lam:.3g}, sigma {sigma:.3g}) | | | | |", flush=True)
    print(f"\n{'Whole photos' if args.whole else '256x256 centre crops'} of camera and coffee "
          f"(held out), noise {args.noise}, tol 1e-4, at most {args.max_iter} iterations.")


if __name__ == "__main__":
    main()
