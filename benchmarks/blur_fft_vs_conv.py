"""Time the FFT blur (:class:`implicit_inverse.operators.Blur`) against a direct ``conv2d``.

For kernel sizes 5, 15 and 31 on a batch of float32 images (forward only), this times

* ``conv2d``: ``torch.nn.functional.conv2d`` on circularly padded images (the same result as the
  circular blur; the flipped kernel is prepared once, outside the timing);
* ``Blur(kernel, boundary="circular")``;
* ``Blur(kernel, boundary="zero")`` (FFT on a grid padded by the kernel size).

Each is warmed up once (which also fills the blur's transfer-function cache, as in repeated use
inside a solver) and the median of ``--repeats`` runs is reported. Before timing, both FFT blurs are
checked against ``conv2d`` (circular and zero padding) to a relative 1e-4.

Run::

    python benchmarks/blur_fft_vs_conv.py --size 256 --batch 8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

from implicit_inverse.operators import Blur, gaussian_kernel

KERNEL_SIZES = (5, 15, 31)
AGREEMENT_RTOL = 1e-4


def conv2d_blur(x, flipped, mode):
    """The blur as ``conv2d`` on padded images; ``flipped`` is the flipped (1, 1, kh, kw) kernel."""
    kh, kw = flipped.shape[-2:]
    pad = (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2)
    n, c, h, w = x.shape
    padded = F.pad(x.reshape(n * c, 1, h, w), pad, mode=mode)
    return F.conv2d(padded, flipped).reshape(n, c, h, w)


def median_ms(function, repeats):
    """Median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def check_agreement(name, result, reference):
    error = (result - reference).abs().max().item()
    scale = reference.abs().max().item()
    if error > AGREEMENT_RTOL * scale:
        raise AssertionError(
            f"{name}: max error {error:.3g} exceeds {AGREEMENT_RTOL} x {scale:.3g}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side length (default 256)")
    parser.add_argument("--batch", type=int, default=8, help="number of images (default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's default)")
    args = parser.parse_args(argv)
    for name in ("size", "batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.size < max(KERNEL_SIZES):
        parser.error(f"--size must be >= {max(KERNEL_SIZES)} (the largest kernel)")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"{args.batch} x 1 x {args.size} x {args.size} float32 images, forward only, "
          f"median of {args.repeats} runs after 1 warm-up")

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=generator)
    header = f"{'kernel':>8} {'conv2d ms':>11} {'FFT circ ms':>12} {'FFT zero ms':>12} " \
             f"{'speed-up circ':>14} {'speed-up zero':>14}"
    print(header)
    print("-" * len(header))
    for size in KERNEL_SIZES:
        # a non-symmetric kernel, so a flipped/unflipped mix-up would fail the agreement check
        kernel = torch.from_numpy(gaussian_kernel(size, size / 4.0)).float()
        kernel = kernel * torch.linspace(0.5, 1.5, size)[None, :]
        kernel = kernel / kernel.sum()
        flipped = kernel.flip(0, 1)[None, None].contiguous()
        circular, zero = Blur(kernel, boundary="circular"), Blur(kernel, boundary="zero")

        check_agreement(f"circular {size}x{size}", circular(x), conv2d_blur(x, flipped, "circular"))
        check_agreement(f"zero {size}x{size}", zero(x), conv2d_blur(x, flipped, "constant"))

        with torch.inference_mode():
            conv_ms = median_ms(partial(conv2d_blur, x, flipped, "circular"), args.repeats)
            circular_ms = median_ms(partial(circular, x), args.repeats)
            zero_ms = median_ms(partial(zero, x), args.repeats)
        print(f"{f'{size}x{size}':>8} {conv_ms:11.2f} {circular_ms:12.2f} {zero_ms:12.2f} "
              f"{conv_ms / circular_ms:13.1f}x {conv_ms / zero_ms:13.1f}x")


if __name__ == "__main__":
    main()
