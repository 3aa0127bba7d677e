"""Which denoiser to train as the shipped prior: quality per CPU hour, measured side by side.

Candidates (each a :class:`~implicit_inverse.training.denoiser.NoisyCrops` stream of the
training photos, noise std uniform in [0, 0.1], Adam 1e-3, batch 32, one torch thread):

- ``dncnn``: the DnCNN 12x32 of ``dncnn-gray`` on 48x48 crops;
- ``unet``: :class:`~implicit_inverse.networks.NoiseLevelUNet` 16-32-64-128 on 64x64 crops;
- ``unet+leaves``: the same U-Net with a quarter of its crops from dead-leaves images.

First each candidate's training speed is measured in float32, bfloat16 autocast and bfloat16
with ``channels_last`` (crops per second, a few steps each, alternated). Then all candidates
train from scratch for the same wall time, in alternating slices of ``--slice`` seconds so that
a load on the machine falls on all of them alike, and are scored as the model card scores the
shipped prior: PSNR of denoising the held-out photos camera and coffee (grayscale, whole, the
card's noise seeds) at sigma 0.03, 0.05 and 0.1, and seconds to denoise a 512x512 image once in
float32. Prints two markdown tables. Run::

    python benchmarks/prior_architecture.py [--minutes 6] [--slice 30]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from prior_card import noisy

from implicit_inverse.data.photos import HELD_OUT_PHOTOS, load_photo, training_planes
from implicit_inverse.metrics import psnr
from implicit_inverse.networks.priors import DENOISER_KINDS
from implicit_inverse.training.denoiser import NoisyCrops, parse_architecture, with_dead_leaves

CANDIDATES = {
    "dncnn": ("dncnn:12x32", 48, 0.0),
    "unet": ("unet:16,32,64,128", 64, 0.0),
    "unet+leaves": ("unet:16,32,64,128", 64, 0.25),
}
"""name -> (architecture spec, crop side, dead-leaves fraction)."""
NOISE_LEVELS = (0.03, 0.05, 0.1)
BATCH = 32


class Candidate:
    """One network, its optimizer and its endless stream of training batches."""

    def __init__(self, spec, crop, leaves, *, precision="bfloat16", channels_last=False, seed=0):
        architecture = parse_architecture(spec)
        kind = architecture.pop("kind")
        torch.manual_seed(seed)
        self.net = DENOISER_KINDS[kind](**architecture)
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.dtype = {"float32": None, "bfloat16": torch.bfloat16}[precision]
        planes, weights = with_dead_leaves(training_planes(), leaves, seed=seed)
        self.crops = NoisyCrops(planes, weights, crop, (0.0, 0.1), 2048, seed)
        self.batches = self._batches()
        self.steps, self.seconds = 0, 0.0

    def _batches(self):
        for epoch in itertools.count():
            self.crops.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(self.crops, batch_size=BATCH)
            yield from loader

    def train_for(self, seconds):
        """Optimizer steps until ``seconds`` of wall time have passed."""
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            inputs, clean = next(self.batches)
            x = inputs["x"]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
                output = self.net(x, inputs["sigma"])
            loss = torch.nn.functional.mse_loss(output.float(), clean)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.steps += 1
        self.seconds += time.perf_counter() - start

    def denoising_psnr(self):
        """Mean PSNR (dB) over the held-out photos at each of :data:`NOISE_LEVELS`."""
        self.net.eval()
        scores = []
        with torch.no_grad():
            for sigma in NOISE_LEVELS:
                values = []
                for index, name in enumerate(HELD_OUT_PHOTOS):
                    clean = load_photo(name).astype(np.float64)
                    image = torch.from_numpy(noisy(clean, sigma, 100 + index)).float()
                    result = self.net(image[None, None], sigma)[0, 0].clamp(0, 1).numpy()
                    values.append(psnr(clean[None], result[None]))
                scores.append(float(np.mean(values)))
        self.net.train()
        return scores

    def restore_seconds(self):
        """Wall seconds of one float32 pass over a 512x512 image."""
        self.net.eval()
        with torch.no_grad():
            image = torch.rand(1, 1, 512, 512)
            self.net(image, 0.05)
            start = time.perf_counter()
            self.net(image, 0.05)
        self.net.train()
        return time.perf_counter() - start


def speed_table(seconds):
    """Crops per second of each candidate in each precision setting (alternated)."""
    settings = {"float32": ("float32", False), "bfloat16": ("bfloat16", False),
                "bfloat16 channels_last": ("bfloat16", True)}
    rows = {}
    for name, (spec, crop, _) in CANDIDATES.items():
        if name.endswith("+leaves"):
            continue
        runs = {label: Candidate(spec, crop, 0.0, precision=p, channels_last=c)
                for label, (p, c) in settings.items()}
        for run in runs.values():
            run.train_for(1.0)  # warm up oneDNN's kernels
            run.steps, run.seconds = 0, 0.0
        for _ in range(2):
            for run in runs.values():
                run.train_for(seconds / 2)
        rows[f"{name} ({crop}px)"] = {label: run.steps * BATCH / run.seconds
                                      for label, run in runs.items()}
    print("\n| network | " + " | ".join(settings) + " |  (crops/s, one thread)")
    print("|---|" + "---|" * len(settings))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in values.values()) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="training wall time of each candidate (default: 6)")
    parser.add_argument("--slice", type=float, default=30.0,
                        help="seconds per turn in the alternation (default: 30)")
    parser.add_argument("--speed-seconds", type=float, default=20.0,
                        help="timed seconds per setting in the speed table (default: 20)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    speed_table(args.speed_seconds)
    candidates = {name: Candidate(*settings) for name, settings in CANDIDATES.items()}
    turns = max(1, round(60 * args.minutes / args.slice))
    for turn in range(turns):
        for candidate in candidates.values():
            candidate.train_for(args.slice)
        print(f"turn {turn + 1}/{turns}: " + ", ".join(
            f"{name} {c.steps} steps" for name, c in candidates.items()), flush=True)
    print(f"\n| candidate | steps in {args.minutes:g} min | crops/s | "
          + " | ".join(f"sigma {s}" for s in NOISE_LEVELS) + " | 512x512 pass (s) |")
    print("|---|---|---|" + "---|" * (len(NOISE_LEVELS) + 1))
    for name, candidate in candidates.items():
        scores = candidate.denoising_psnr()
        print(f"| {name} | {candidate.steps} | {candidate.steps * BATCH / candidate.seconds:.0f} | "
              + " | ".join(f"{v:.2f}" for v in scores)
              + f" | {candidate.restore_seconds():.2f} |", flush=True)
    print("\nPSNR (dB) of denoising camera and coffee (held out, grayscale, whole photos), "
          "bfloat16 training, equal wall time of one thread.")


if __name__ == "__main__":
    main()
