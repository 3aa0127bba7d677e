"""``implicit-inverse demo``: the shipped prior on held-out photos, then the default deblurring
model trained on faces; each compared with the tuned classical baselines and plotted."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import __version__
from ._common import (CommandError, add_device_option, add_threads_option, check_device,
                      image_size, nonnegative_int, positive_int, save_model)
from ._compare import (best_baseline, compare_methods, markdown_table, method_name,
                       not_converged_note, print_table, summary_line)
from ._photo_demo import N_TRAINING_CROPS, PHOTO_KERNELS, plot_photos, run_photos

DEMO_BLUR = (9, 1.5)
DEMO_KERNEL = f"gaussian:{DEMO_BLUR[0]},{DEMO_BLUR[1]}"
DEMO_NOISE = 0.01
DEMO_EPOCHS = 20
"""Default training epochs of ``demo``: about ten minutes on a 2-core CPU."""
N_TEST_FACES = 20
N_TRAIN_PATCHES = 600
N_FIGURE_IMAGES = 6
PHOTO_CROP = 256
FINETUNE_SECONDS = 60.0
"""Default fine-tuning budget of the prior per kernel in the demo's photo part."""


def add_parser(commands):
    demo = commands.add_parser(
        "demo", help="restore held-out photos with the shipped prior, train a model on faces, "
                     "compare both with the tuned baselines",
        description="Part 1: restore centre crops of the held-out photos camera and coffee, "
                    f"blurred by each of {', '.join(PHOTO_KERNELS)} with noise std "
                    f"{DEMO_NOISE}, with the shipped prior (zero-shot, then fine-tuned for "
                    "--finetune-seconds on crops of other photos) against the classical "
                    "baselines tuned on the same crops. Part 2: train ImplicitDeblurRegressor "
                    "from scratch on 80 faces + 600 natural patches (Gaussian blur "
                    f"{DEMO_BLUR[0]}x{DEMO_BLUR[0]}, sigma {DEMO_BLUR[1]}), evaluate on "
                    f"{N_TEST_FACES} held-out faces against the measurement, a direct inverse "
                    "and the tuned baselines. Writes photos.png, reconstructions.png, "
                    "convergence.png, results.json, results.md and model.pt (the format of "
                    "ImplicitRegressor.save) into the output folder.")
    demo.add_argument("--out", default="demo_output", metavar="DIR",
                      help="output folder, created if needed (default: demo_output)")
    demo.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS, metavar="N",
                      help=f"training epochs (default: {DEMO_EPOCHS})")
    demo.add_argument("--finetune-seconds", type=float, default=FINETUNE_SECONDS, metavar="S",
                      help="fine-tuning budget of the prior per kernel in part 1, 0 for none "
                           f"(default: {FINETUNE_SECONDS:g})")
    add_device_option(demo)
    demo.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                      help="seed of the data, the noise and the network (default: 0)")
    add_threads_option(demo)
    # Reduced settings for tests and quick looks (not shown in --help).
    demo.add_argument("--size", type=image_size, default=32, help=argparse.SUPPRESS)
    demo.add_argument("--n-train", type=positive_int, default=None, help=argparse.SUPPRESS)
    demo.add_argument("--photo-crop", type=image_size, default=PHOTO_CROP,
                      help=argparse.SUPPRESS)
    demo.add_argument("--photo-train", type=positive_int, default=N_TRAINING_CROPS,
                      help=argparse.SUPPRESS)
    demo.set_defaults(handler=run)
    return demo


def subset(images, n, seed):
    """A sorted random subset of ``n`` images (all of them when ``n`` is None or too large)."""
    import numpy as np

    if n is None or n >= len(images):
        return images
    rng = np.random.default_rng(seed)
    return images[np.sort(rng.choice(len(images), size=n, replace=False))]


def fit_implicit(operator, X, y, *, gradient, epochs, device, seed, **params):
    """Fit the command line's ``ImplicitDeblurRegressor`` (skorch's table printed per epoch)."""
    from ..estimators import ImplicitDeblurRegressor

    options = {} if epochs is None else {"max_epochs": epochs}
    estimator = ImplicitDeblurRegressor(operator=operator, gradient=gradient, device=device,
                                        random_state=seed, verbose=1, **options, **params)
    return estimator.fit(X, y)


def history_column(history, key):
    values = [epoch.get(key) for epoch in history]
    if not values or any(value is None for value in values):
        return None
    return [float(value) for value in values]


def write_text(path, text):
    from ..data.files import atomic_write

    atomic_write(path, lambda handle: handle.write(text.encode()))
    return Path(path)


def run(args):
    """Train, compare, and write figures, results and the model."""
    from ..data.datasets import train_test_faces
    from ..operators import Blur, gaussian_kernel, make_measurements
    from ..plotting import plot_convergence, plot_reconstructions, save_figure

    device = check_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: {str(out)!r} exists and is not a folder")
    if not args.finetune_seconds >= 0:
        raise CommandError(f"--finetune-seconds must be >= 0, got {args.finetune_seconds}")
    print(f"Part 1: the shipped prior on held-out photos (device {device})")
    photo_results, photo_truth = run_photos(DEMO_NOISE, args.seed, args.photo_crop,
                                            args.finetune_seconds, device, args.photo_train)
    print("\nPart 2: the default model trained from scratch on faces")
    size = args.size
    train, test = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                   random_state=args.seed)
    train = subset(train, args.n_train, args.seed)
    operator = Blur(gaussian_kernel(*DEMO_BLUR))
    X_train = make_measurements(train, operator, DEMO_NOISE, random_state=args.seed)
    X_test = make_measurements(test, operator, DEMO_NOISE, random_state=args.seed + 1)
    print(f"Training the implicit deblurring model on {len(train)} images ({size}x{size}, "
          f"Gaussian blur {DEMO_BLUR[0]}x{DEMO_BLUR[0]} sigma {DEMO_BLUR[1]}, noise std "
          f"{DEMO_NOISE}, device {device})")
    sys.stdout.flush()
    start = time.perf_counter()
    estimator = fit_implicit(operator, X_train, train, gradient="jfb", epochs=args.epochs,
                             device=device, seed=args.seed)
    fit_time = time.perf_counter() - start
    rows, outputs, stats = compare_methods(operator, X_train, train, X_test, test, estimator,
                                           implicit_time=fit_time, seed=args.seed)
    title = (f"Deblurring {len(test)} held-out faces ({size}x{size}); time = fit + predict "
             "(baselines: tuning + predict); FP = fixed-point")
    print_table(title, rows, "time (s)")

    out.mkdir(parents=True, exist_ok=True)
    written = [save_figure(plot_photos(photo_results, photo_truth), out / "photos.png")]
    by_key = {row["key"]: row for row in rows}
    best = best_baseline(rows)
    figure = plot_reconstructions(
        [X_test, outputs[best["key"]], outputs["implicit"], test],
        ["measurement", method_name(best), "implicit", "truth"],
        n_images=min(N_FIGURE_IMAGES, len(test)),
        psnrs=[by_key["measurement"]["psnr"], best["psnr"], by_key["implicit"]["psnr"], None],
        reference=3, marks={"learned": 2, "best classical": 1})
    written.append(save_figure(figure, out / "reconstructions.png"))
    history = estimator.history
    figure = plot_convergence({"test faces": stats.history},
                              train_loss=history_column(history, "train_loss"),
                              iterations_per_epoch=history_column(history, "fp_iter"))
    written.append(save_figure(figure, out / "convergence.png"))
    results = {
        "task": "deblurring", "blur": list(DEMO_BLUR), "noise": DEMO_NOISE, "size": size,
        "n_train": len(train), "n_test": len(test), "seed": args.seed, "device": device,
        "epochs": len(history), "fit_time_s": fit_time, "methods": rows,
        "photos": [{"kernel": result["kernel"], "crop": args.photo_crop,
                    "methods": result["rows"]} for result in photo_results],
        "library_version": __version__,
    }
    written.append(write_text(out / "results.json", json.dumps(results, indent=2) + "\n"))
    summary = closing_summary(photo_results, args.photo_crop, rows, len(test), size)
    photo_tables = "".join(f"Kernel {result['kernel']}: {args.photo_crop}x{args.photo_crop} "
                           f"crops of camera and coffee\n\n{markdown_table(result['rows'])}\n\n"
                           for result in photo_results)
    written.append(write_text(out / "results.md",
                              f"{photo_tables}{title}\n\n{markdown_table(rows)}\n\n"
                              + "".join(f"- {line}\n" for line in summary)))
    metadata = {"command": "demo", "data": "faces", "kernel": DEMO_KERNEL,
                "boundary": "circular", "noise": DEMO_NOISE, "size": size, "color": False,
                "seed": args.seed, "gradient": "jfb", "epochs": len(history)}
    written.append(save_model(out / "model.pt", estimator, metadata))
    print()
    print("Wrote " + ", ".join(str(path) for path in written))
    print("\nSummary (PSNR gain of the best learned row over the strongest tuned classical one):")
    for line in summary:
        print(f"  {line}")


def closing_summary(photo_results, crop, face_rows, n_faces, size):
    """The demo's last lines: one per blur, then what a non-converged row means (if any).

    Returns
    -------
    list of str
    """
    lines = [summary_line(f"{result['kernel']}, camera and coffee {crop}x{crop}",
                          result["rows"]) for result in photo_results]
    lines.append(summary_line(f"{DEMO_KERNEL}, {n_faces} faces {size}x{size}", face_rows))
    notes = {not_converged_note(rows) for rows in [r["rows"] for r in photo_results] + [face_rows]}
    return lines + sorted(note for note in notes if note)
