"""Peak memory of ``implicit-inverse train --data FOLDER`` against the number of photos.

Generates N PNG photos (256x256 grayscale by default, smooth random content) in a temporary
folder, runs one training epoch on the first 100 and on all of them, each in a fresh process
(``python -m implicit_inverse.cli train ...``), and reports each process's peak resident memory
(``ru_maxrss`` of that child, from ``os.wait4``) and wall time. For contrast it also measures
loading the same folders whole into memory with ``load_image_folder`` (what ``train`` did before
it streamed crops). The claim checked: the training peaks differ by at most 20%.

Usage::

    python benchmarks/folder_memory.py                       # 100 and 2,000 photos
    python benchmarks/folder_memory.py --counts 100 500 --size 128
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_photos(folder, count, size, seed=0):
    """Write ``count`` smooth random 8-bit grayscale PNG photos of ``size x size`` pixels."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = 8
    for i in range(count):
        coarse = rng.random((size // block, size // block))
        pixels = np.kron(coarse, np.ones((block, block)))
        pixels += 0.1 * rng.standard_normal(pixels.shape)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
            folder / f"photo_{i:05d}.png")


def peak_of(command):
    """``(peak RSS in MiB, wall seconds, return code)`` of ``command`` run as a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace").strip()
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {error}")
    return usage.ru_maxrss / 1024, seconds, process.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 2000])
    parser.add_argument("--size", type=int, default=256, help="side of the photos")
    parser.add_argument("--patch", type=int, default=32, help="side of the training crops")
    parser.add_argument("--patches-per-image", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=5,
                        help="fixed-point iterations per solve (kept small: memory, not quality)")
    parser.add_argument("--no-contrast", action="store_true",
                        help="skip the whole-folder loading measured for contrast")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; one torch thread per process")
    counts = sorted(args.counts)
    with tempfile.TemporaryDirectory(prefix="folder_memory_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        make_photos(tmp / "all", counts[-1], args.size)
        print(f"generated {counts[-1]} PNG photos of {args.size}x{args.size} in "
              f"{time.perf_counter() - start:.1f} s")
        baseline, _, _ = peak_of([sys.executable, "-c", "import implicit_inverse.cli.main"])
        print(f"importing the command: peak RSS {baseline:.0f} MiB")
        rows = []
        for count in counts:
            folder = tmp / f"n{count}"
            folder.mkdir()
            for path in sorted((tmp / "all").iterdir())[:count]:
                os.link(path, folder / path.name)
            train = [sys.executable, "-m", "implicit_inverse.cli", "train", "--data",
                     str(folder), "--patch", str(args.patch), "--patches-per-image",
                     str(args.patches_per_image), "--epochs", "1", "--max-iter",
                     str(args.max_iter), "--threads", "1", "--force", "--model",
                     str(tmp / f"model{count}.pt")]
            peak, seconds, _ = peak_of(train)
            row = {"photos": count, "patches": count * args.patches_per_image,
                   "train_peak": peak, "train_s": seconds}
            if not args.no_contrast:
                load = [sys.executable, "-c", "import sys; from implicit_inverse.datasets import "
                        f"load_image_folder; load_image_folder(sys.argv[1], size={args.size})",
                        str(folder)]
                row["load_peak"], row["load_s"], _ = peak_of(load)
            rows.append(row)
            print(row, flush=True)
    print()
    header = "| photos | crops per epoch | train: peak RSS (MiB) | train: wall (s) |"
    rule = "|---:|---:|---:|---:|"
    if not args.no_contrast:
        header += " load whole folder: peak RSS (MiB) |"
        rule += "---:|"
    print(header)
    print(rule)
    for row in rows:
        line = (f"| {row['photos']:,} | {row['patches']:,} | {row['train_peak']:.0f} | "
                f"{row['train_s']:.1f} |")
        if "load_peak" in row:
            line += f" {row['load_peak']:.0f} |"
        print(line)
    ratio = rows[-1]["train_peak"] / rows[0]["train_peak"]
    above = [row["train_peak"] - baseline for row in (rows[0], rows[-1])]
    print(f"\nimporting alone peaks at {baseline:.0f} MiB; training adds {above[0]:.0f} MiB "
          f"({rows[0]['photos']:,} photos) and {above[1]:.0f} MiB ({rows[-1]['photos']:,})")
    print(f"training peak with {rows[-1]['photos']:,} photos / with {rows[0]['photos']:,}: "
          f"{ratio:.3f} ({'within' if abs(ratio - 1) <= 0.2 else 'OUTSIDE'} 20%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
