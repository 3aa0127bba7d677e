"""The README's photo workflow: blur, train on a folder, restore, evaluate; then the figure.

Exports scikit-image's bundled photographs (offline) as PNG files: ``camera`` (grayscale) and
``coffee`` (colour) are the test photos, fourteen others the training folder. Then runs, as a
user would::

    implicit-inverse blur photos/test/*.png --kernel disk:2 --noise 0.01 --out photos/measured
    implicit-inverse train --data photos/train --kernel disk:2 --noise 0.01 --patch 64 \\
        --patches-per-image 8 --epochs 20 --model photos/model.pt
    implicit-inverse restore photos/measured/*.png --model photos/model.pt --out photos/restored
    implicit-inverse evaluate --model photos/model.pt --data photos/test --size 128 --crops 8

and draws ``docs/_static/photos.png`` (measured | restored | original, a 192 x 192 detail of each
test photo, PSNR of the whole photo in the titles) from the files those commands wrote.

Usage::

    python benchmarks/photo_workflow.py [--work DIR] [--epochs 20] [--patches-per-image 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TEST = ("camera", "coffee")
TRAIN = ("astronaut", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "page", "text",
         "moon", "hubble_deep_field", "immunohistochemistry", "retina", "clock")
KERNEL = "disk:2"
NOISE = 0.01
DETAIL = {"camera": (60, 180), "coffee": (120, 80)}  # top-left corner of the shown 192 x 192


def export(folder, names):
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")


def command(*args):
    line = ["implicit-inverse", *map(str, args)]
    print("$", " ".join(line), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "implicit_inverse.cli", *line[1:]], check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def figure(work, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from implicit_inverse.data.image_files import read_image
    from implicit_inverse.metrics import psnr

    fig, axes = plt.subplots(len(TEST), 3, figsize=(9, 3.45 * len(TEST)))
    for row, name in enumerate(TEST):
        original = read_image(work / "test" / f"{name}.png")[0]
        panels = [("measured", read_image(work / "measured" / f"{name}.png")[0]),
                  ("restored (implicit)", read_image(work / "restored" / f"{name}.png")[0]),
                  ("original", original)]
        top, left = DETAIL[name]
        for col, (title, pixels) in enumerate(panels):
            detail = np.moveaxis(pixels[:, top:top + 192, left:left + 192], 0, -1)
            axis = axes[row, col]
            axis.imshow(detail.squeeze(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            label = f"{name}: {title}"
            if col < 2:
                label += f"\n{psnr(original[None], pixels[None]):.2f} dB (whole photo)"
            axis.set_title(label, fontsize=9)
    fig.tight_layout(h_pad=1.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("photos"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patches-per-image", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure", type=Path,
                        default=Path(__file__).resolve().parent.parent / "docs/_static/photos.png")
    parser.add_argument("--figure-only", action="store_true",
                        help="only redraw the figure from the files of an earlier run")
    args = parser.parse_args(argv)
    work = args.work
    if args.figure_only:
        figure(work, args.figure)
        return 0
    export(work / "test", TEST)
    export(work / "train", TRAIN)
    model = work / "model.pt"
    threads = ["--threads", args.threads]
    command("blur", *sorted((work / "test").glob("*.png")), "--kernel", KERNEL, "--noise",
            NOISE, "--out", work / "measured", "--force")
    command("train", "--data", work / "train", "--kernel", KERNEL, "--noise", NOISE,
            "--patch", 64, "--patches-per-image", args.patches_per_image, "--epochs", args.epochs,
            "--model", model,
            "--force", *threads)
    command("restore", *sorted((work / "measured").glob("*.png")), "--model", model, "--out",
            work / "restored", "--force", *threads)
    command("evaluate", "--model", model, "--data", work / "test", "--size", 128, "--crops", 8,
            *threads)
    figure(work, args.figure)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
