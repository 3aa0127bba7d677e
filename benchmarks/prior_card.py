"""Denoising quality of a shipped prior against scikit-image's denoisers: the model card's table.

For each noise level, Gaussian noise (seeded) is added to the held-out photos ``camera`` and
``coffee`` (grayscale, whole; never seen in training) and removed by

- the prior, told the noise level (``NoiseLevelDenoiser(x, sigma)``);
- ``skimage.restoration.denoise_tv_chambolle``, its ``weight`` tuned per noise level on crops of
  the training photos (grid below: the best on training data, not on the test photos);
- ``denoise_wavelet`` (BayesShrink, soft thresholds, told ``sigma``);
- ``denoise_nl_means`` (``h = 0.8 sigma``, ``fast_mode``, told ``sigma``, patch 5, distance 6:
  scikit-image's documented recipe).

Prints a markdown table of PSNR (dB) and the prior's card. ``denoise_wavelet`` needs PyWavelets
(the ``bench`` extra). Run::

    python benchmarks/prior_card.py [--prior dncnn-gray | --prior-file FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

from implicit_inverse.data.photos import HELD_OUT_PHOTOS, load_photo, training_crops
from implicit_inverse.metrics import psnr
from implicit_inverse.networks.priors import load_prior, load_prior_file

NOISE_LEVELS = (0.01, 0.03, 0.05, 0.1)
TV_WEIGHTS = tuple(np.geomspace(0.002, 0.2, 13))


def noisy(image, sigma, seed):
    return image + sigma * np.random.default_rng(seed).standard_normal(image.shape)


def tuned_tv_weight(sigma, seed=0, n_crops=16, size=96):
    """The TV weight of the grid with the best mean PSNR on crops of the training photos."""
    crops = training_crops(n_crops, size, seed)
    scores = {weight: np.mean([psnr(c[None], denoise_tv_chambolle(noisy(c, sigma, i), weight)[None])
                               for i, c in enumerate(crops)]) for weight in TV_WEIGHTS}
    return max(scores, key=scores.get)


METHODS = ("noisy", "TV (tuned)", "wavelet", "NL-means", "prior")


def denoise(method, image, sigma, tv_weight, denoiser):
    """``image`` (H, W) denoised by ``method`` (one of :data:`METHODS`)."""
    if method == "noisy":
        return image
    if method == "TV (tuned)":
        return denoise_tv_chambolle(image, tv_weight)
    if method == "wavelet":
        return denoise_wavelet(image, sigma=sigma, method="BayesShrink", mode="soft",
                               rescale_sigma=True)
    if method == "NL-means":
        return denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                patch_distance=6)
    with torch.no_grad():
        return denoiser(torch.from_numpy(image).float()[None, None], sigma)[0, 0].numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prior", default=None, help="shipped prior name (default: default)")
    source.add_argument("--prior-file", default=None, help="a prior file instead")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    denoiser, card = (load_prior_file(args.prior_file) if args.prior_file
                      else load_prior(args.prior))
    rows = {method: [] for method in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    for sigma in NOISE_LEVELS:
        weight = tuned_tv_weight(sigma)
        scores = {method: [] for method in METHODS}
        for index, photo in enumerate(HELD_OUT_PHOTOS):
            clean = load_photo(photo).astype(np.float64)
            image = noisy(clean, sigma, 100 + index)
            for method in METHODS:
                start = time.perf_counter()
                result = denoise(method, image, sigma, weight, denoiser)
                seconds[method] += time.perf_counter() - start
                scores[method].append(psnr(clean[None], np.clip(result, 0, 1)[None]))
        for method in METHODS:
            rows[method].append(float(np.mean(scores[method])))
        print(f"sigma {sigma}: TV weight {weight:.3g} (tuned on training crops)", flush=True)
    print("\n| denoiser | " + " | ".join(f"sigma {s}" for s in NOISE_LEVELS) + " | seconds |")
    print("|---|" + "---|" * (len(NOISE_LEVELS) + 1))
    for method, values in rows.items():
        print(f"| {method} | " + " | ".join(f"{v:.2f}" for v in values)
              + f" | {seconds[method]:.1f} |")
    print("\nPSNR (dB), mean over camera and coffee (grayscale, whole photos).")
    print("\nCard:", card)


if __name__ == "__main__":
    main()
