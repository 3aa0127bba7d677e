"""The ``implicit-inverse`` command: ``demo``, ``train`` and ``evaluate``.

``implicit-inverse demo`` trains the default deblurring model on faces and natural patches,
compares it with classical baselines on 20 held-out faces and writes figures, a results table
and the fitted model. ``train`` fits a model on a chosen data set and saves it; ``evaluate``
measures a data set with the saved model's blur and noise and prints the comparison table.

Bad arguments and library errors end with one line on stderr and exit status 2; a training run
that diverges ends with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._torch_state import torch_threads

PROG = "implicit-inverse"
MODEL_FORMAT = "implicit-inverse-model"
MODEL_FORMAT_VERSION = 1
DEMO_BLUR = (9, 1.5)
DEMO_NOISE = 0.01
N_TEST_FACES = 20
N_TRAIN_PATCHES = 600
N_EVAL_PATCHES = 200
TIKHONOV_GRID = np.logspace(-4, 0, 9)
N_FIGURE_IMAGES = 6


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


# -- argument parsing ----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _image_size(text):
    value = _positive_int(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"image size must be at least 8, got {value}")
    return value


DEMO_EPOCHS = 20
"""Default training epochs of ``demo``: about ten minutes on a 2-core CPU."""


def _add_common_options(parser, *, training=True):
    if training:
        parser.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                            help="training epochs (default: 20 for demo, the estimator's "
                                 "max_epochs for train)")
        parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                            help="torch device; 'auto' uses CUDA when available (default: cpu)")
    parser.add_argument("--seed", type=_nonnegative_int, default=0, metavar="S",
                        help=("seed of the data, the noise and the network" if training else
                              "seed of the data subsets and the noise") + " (default: 0)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                        help="torch CPU threads for this command (default: torch's default)")


def build_parser():
    """The command-line parser (subcommands ``demo``, ``train``, ``evaluate``).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog=PROG,
        description="Implicit (deep equilibrium) networks for imaging inverse problems.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser(
        "demo", help="train the default deblurring model on faces and compare with baselines",
        description="Train ImplicitDeblurRegressor on 80 faces + 600 natural patches (Gaussian "
                    f"blur {DEMO_BLUR[0]}x{DEMO_BLUR[0]}, sigma {DEMO_BLUR[1]}, noise std "
                    f"{DEMO_NOISE}), evaluate on {N_TEST_FACES} held-out faces against the "
                    "measurement, a direct inverse and a tuned Tikhonov reconstruction, and "
                    "write reconstructions.png, convergence.png, results.json, results.md and "
                    "model.pkl into the output folder.")
    demo.add_argument("--out", default="demo_output", metavar="DIR",
                      help="output folder, created if needed (default: demo_output)")
    _add_common_options(demo)
    # Reduced settings for tests and quick looks (not shown in --help).
    demo.add_argument("--size", type=_image_size, default=32, help=argparse.SUPPRESS)
    demo.add_argument("--n-train", type=_positive_int, default=None, help=argparse.SUPPRESS)

    train = commands.add_parser(
        "train", help="train a deblurring model and save it",
        description="Train ImplicitDeblurRegressor on clean images blurred by a circular "
                    "Gaussian kernel plus Gaussian noise, and pickle it (with the blur, noise, "
                    "image size and data set) to --model.")
    train.add_argument("--data", required=True, metavar="faces|patches|FOLDER",
                       help="'faces' (the training split: 80 faces + 600 natural patches), "
                            "'patches' (natural-image patches) or a folder of images (a "
                            "folder named faces or patches: write ./faces)")
    train.add_argument("--blur", nargs=2, type=float, default=list(DEMO_BLUR),
                       metavar=("SIZE", "SIGMA"),
                       help="Gaussian kernel side and standard deviation (default: 9 1.5)")
    train.add_argument("--noise", type=_nonnegative_float, default=DEMO_NOISE, metavar="STD",
                       help=f"measurement noise standard deviation (default: {DEMO_NOISE})")
    train.add_argument("--gradient", choices=("jfb", "exact"), default="jfb",
                       help="gradient of the fixed point: Jacobian-free (jfb) or implicit "
                            "(exact) (default: jfb)")
    train.add_argument("--size", type=_image_size, default=32,
                       help="side of the square training images (default: 32)")
    train.add_argument("--n-images", type=_positive_int, default=None, metavar="N",
                       help="use a random subset of N training images (default: all; "
                            f"{len_faces_train()} for faces and patches)")
    train.add_argument("--model", required=True, metavar="PATH", help="file to write")
    train.add_argument("--force", action="store_true", help="overwrite an existing model file")
    _add_common_options(train)

    evaluate = commands.add_parser(
        "evaluate", help="compare a saved model with classical baselines",
        description="Measure clean images with the saved model's blur and noise and print PSNR, "
                    "SSIM and time of the measurement, a direct inverse, Tikhonov (weight tuned "
                    "by cross-validated grid search) and the implicit model. 'faces' evaluates "
                    f"on the {N_TEST_FACES} held-out faces (Tikhonov tuned on the training "
                    f"split), 'patches' on {N_EVAL_PATCHES} fresh natural patches, a folder on "
                    "its images (Tikhonov tuned by cross-validation on them).")
    evaluate.add_argument("--model", required=True, metavar="PATH",
                          help="a model file written by 'train' or 'demo'")
    evaluate.add_argument("--data", required=True, metavar="faces|patches|FOLDER",
                          help="evaluation images (see above)")
    evaluate.add_argument("--n-images", type=_positive_int, default=None, metavar="N",
                          help="evaluate on a random subset of N images")
    _add_common_options(evaluate, training=False)
    return parser


def len_faces_train():
    """Number of training images of the faces recipe (faces not held out + patches)."""
    return 100 - N_TEST_FACES + N_TRAIN_PATCHES


# -- entry point ---------------------------------------------------------------------------------
def main(argv=None):
    """Run the ``implicit-inverse`` command.

    Parameters
    ----------
    argv : list of str or None, default None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad arguments or data (one line on stderr), 1 when
        training diverged or on an unexpected error (one line; the environment variable
        ``IMPLICIT_INVERSE_DEBUG=1`` shows the traceback instead), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse errors
        return exit_.code if isinstance(exit_.code, int) else 2
    handlers = {"demo": run_demo, "train": run_train, "evaluate": run_evaluate}
    from .estimators import DivergenceError

    debug = os.environ.get("IMPLICIT_INVERSE_DEBUG", "") not in ("", "0")
    try:
        with torch_threads(args.threads), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            handlers[args.command](args)
    except (CommandError, ValueError, TypeError, OSError, pickle.UnpicklingError,
            EOFError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except DivergenceError as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug: one line, the traceback on request
        if debug:
            raise
        print(f"{PROG}: internal error: {type(error).__name__}: {_one_line(error)} (set "
              "IMPLICIT_INVERSE_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    return 0


def _one_line(error):
    if isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.strerror}: {error.filename}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {category.__name__}: {' '.join(str(message).split())}",
          file=sys.stderr)


# -- shared pieces -------------------------------------------------------------------------------
def _check_device(device):
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda was requested but CUDA is not available "
                           "(torch.cuda.is_available() is False); use --device cpu or auto")


def _blur_operator(size, sigma):
    from .operators import Blur, gaussian_kernel

    return Blur(gaussian_kernel(size, sigma))


def _parse_blur(values, image_size):
    size, sigma = (float(value) for value in values)
    if not (math.isfinite(size) and size.is_integer() and size >= 1):
        raise CommandError(f"--blur SIZE must be a positive integer, got {size:g}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise CommandError(f"--blur SIGMA must be a positive number, got {sigma:g}")
    if size > image_size:
        raise CommandError(f"--blur SIZE {int(size)} is larger than the images ({image_size}x"
                           f"{image_size}); use a smaller kernel or a larger --size")
    return int(size), float(sigma)


def _subset(images, n, seed):
    if n is None or n >= len(images):
        return images
    rng = np.random.default_rng(seed)
    return images[np.sort(rng.choice(len(images), size=n, replace=False))]


def _load_folder(path, size):
    from .datasets import load_image_folder

    folder = Path(path)
    if not folder.exists():
        raise CommandError(f"--data: no such folder: {path!r} (expected 'faces', 'patches' or a "
                           "folder of images)")
    if not folder.is_dir():
        raise CommandError(f"--data: not a folder: {path!r}")
    return load_image_folder(folder, size=size, grayscale=True)


def _training_images(data, size, seed, n_images):
    """Clean training images for ``--data`` (faces, patches or a folder)."""
    from .datasets import load_natural_patches, train_test_faces

    if data == "faces":
        images, _ = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                     random_state=seed)
    elif data == "patches":
        images = load_natural_patches(n_images or len_faces_train(), size=size,
                                      random_state=seed)
    else:
        images = _load_folder(data, size)
    return _subset(images, n_images, seed)


def _write_atomically(path, write):
    """Write a file through ``write(handle)`` into a temporary file, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _save_model(path, record):
    return _write_atomically(path, lambda handle: pickle.dump(record, handle,
                                                              protocol=pickle.HIGHEST_PROTOCOL))


def load_model(path):
    """Load a model file written by ``implicit-inverse train`` or ``demo``.

    Only load files you trust: this unpickles arbitrary Python objects.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        ``estimator`` (the fitted :class:`~implicit_inverse.ImplicitDeblurRegressor`),
        ``blur`` ([size, sigma]), ``noise`` (std), ``size`` (image side), ``data``,
        ``seed``, ``gradient`` and ``library_version``.
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--model: no such file: {str(path)!r}")
    with open(path, "rb") as handle:
        try:
            record = _CPUUnpickler(handle).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
                IndexError, KeyError, RuntimeError) as error:
            raise CommandError(f"--model: {str(path)!r} is not a readable model file "
                               f"({type(error).__name__}: {error})") from None
    if not (isinstance(record, dict) and record.get("format") == MODEL_FORMAT):
        raise CommandError(f"--model: {str(path)!r} was not written by '{PROG} train'")
    estimator = record["estimator"]
    if str(getattr(estimator, "device", "cpu")).startswith("cuda") and not _cuda_available():
        estimator.set_params(device="cpu")  # trained on a GPU, used here on the CPU
    return record


def _cuda_available():
    import torch

    return torch.cuda.is_available()


class _CPUUnpickler(pickle.Unpickler):
    """Unpickler that maps tensors saved on a GPU to the CPU when CUDA is not available."""

    def find_class(self, module, name):
        if module == "torch.storage" and name == "_load_from_bytes" and not _cuda_available():
            import io

            import torch

            return lambda data: torch.load(io.BytesIO(data), map_location="cpu",
                                           weights_only=False)
        return super().find_class(module, name)


def _model_record(estimator, blur, noise, size, data, seed):
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "estimator": estimator, "blur": list(blur), "noise": float(noise), "size": int(size),
            "data": str(data), "seed": int(seed), "gradient": str(estimator.gradient),
            "library_version": __version__}


def _fit_implicit(operator, X, y, *, gradient, epochs, device, seed):
    from .estimators import ImplicitDeblurRegressor

    options = {} if epochs is None else {"max_epochs": epochs}
    estimator = ImplicitDeblurRegressor(operator=operator, gradient=gradient, device=device,
                                        random_state=seed, verbose=1, **options)
    return estimator.fit(X, y)


def compare_methods(operator, X_tune, y_tune, X_eval, y_eval, implicit, implicit_time=0.0):
    """Reconstruct ``X_eval`` with the baselines and the implicit model; score against ``y_eval``.

    Parameters
    ----------
    operator : LinearOperator
    X_tune, y_tune : ndarray of shape (n, H, W)
        Data on which the baselines are fitted and Tikhonov's weight is tuned
        (``GridSearchCV`` with ``psnr_scorer``).
    X_eval, y_eval : ndarray of shape (m, H, W)
        Evaluation measurements and clean images.
    implicit : ImplicitRegressor
        A fitted model.
    implicit_time : float, default 0.0
        Seconds already spent on the implicit model (its training); prediction time is added.

    Returns
    -------
    rows : list of dict
        One per method: ``method``, ``psnr``, ``ssim``, ``time_s`` and, for the implicit model,
        ``iterations`` (mean per image) and ``converged_share``.
    outputs : dict of str to ndarray
        Reconstructions of ``X_eval`` keyed ``"direct"``, ``"tikhonov"``, ``"implicit"``.
    stats : SolverStats
        Fixed-point statistics of the implicit model on ``X_eval``.
    """
    from sklearn.model_selection import GridSearchCV

    from .estimators import DirectInverseRegressor, TikhonovRegressor
    from .metrics import psnr, psnr_scorer, ssim

    def row(method, images, seconds, **extra):
        return {"method": method, "psnr": psnr(y_eval, images), "ssim": ssim(y_eval, images),
                "time_s": seconds, **extra}

    rows = [row("measurement", X_eval, None)] if X_eval.shape == y_eval.shape else []
    outputs = {}

    start = time.perf_counter()
    direct = DirectInverseRegressor(operator).fit(X_tune, y_tune)
    outputs["direct"] = direct.predict(X_eval)
    rows.append(row("direct inverse", outputs["direct"], time.perf_counter() - start))

    start = time.perf_counter()
    search = GridSearchCV(TikhonovRegressor(operator), {"lam": TIKHONOV_GRID},
                          scoring=psnr_scorer, cv=min(5, len(X_tune)))
    search.fit(X_tune, y_tune)
    outputs["tikhonov"] = search.best_estimator_.predict(X_eval)
    lam = search.best_params_["lam"]
    rows.append(row(f"Tikhonov (lam={lam:.3g})", outputs["tikhonov"],
                    time.perf_counter() - start, lam=float(lam)))

    start = time.perf_counter()
    outputs["implicit"], stats = implicit.predict(X_eval, return_stats=True)
    seconds = implicit_time + time.perf_counter() - start
    gradient = implicit.gradient if isinstance(implicit.gradient, str) else \
        type(implicit.gradient).__name__
    rows.append(row(f"implicit ({gradient.upper()})", outputs["implicit"], seconds,
                    iterations=float(stats.iterations.float().mean()),
                    converged_share=float(stats.converged.float().mean())))
    return rows, outputs, stats


def _table_cells(rows, time_header):
    header = ["method", "PSNR (dB)", "SSIM", time_header, "FP iterations", "converged"]
    lines = [[r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
              "-" if r["time_s"] is None else f"{r['time_s']:.1f}",
              f"{r['iterations']:.1f}" if "iterations" in r else "-",
              f"{100 * r['converged_share']:.0f}%" if "converged_share" in r else "-"]
             for r in rows]
    return header, lines


def format_table(rows, time_header="time (s)"):
    """Plain-text table of :func:`compare_methods` rows.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`compare_methods`.
    time_header : str, default "time (s)"
        Title of the time column.

    Returns
    -------
    str
    """
    header, lines = _table_cells(rows, time_header)
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def join(cells):
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                         for i, cell in enumerate(cells))

    return "\n".join([join(header), "  ".join("-" * w for w in widths),
                      *(join(cells) for cells in lines)])


def markdown_table(rows, time_header="time (s)"):
    """The table of :func:`format_table` in Markdown.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`compare_methods`.
    time_header : str, default "time (s)"
        Title of the time column.

    Returns
    -------
    str
    """
    header, lines = _table_cells(rows, time_header)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def _print_table(title, rows, time_header="time (s)"):
    print()
    print(title)
    print()
    print(format_table(rows, time_header))
    sys.stdout.flush()


# -- demo ----------------------------------------------------------------------------------------
def run_demo(args):
    """``implicit-inverse demo``: train, compare, and write figures, results and the model."""
    from .datasets import train_test_faces
    from .operators import make_measurements
    from .plotting import plot_convergence, plot_reconstructions, save_figure

    _check_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: {str(out)!r} exists and is not a folder")
    size = args.size
    train, test = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                   random_state=args.seed)
    train = _subset(train, args.n_train, args.seed)
    operator = _blur_operator(*DEMO_BLUR)
    X_train = make_measurements(train, operator, DEMO_NOISE, random_state=args.seed)
    X_test = make_measurements(test, operator, DEMO_NOISE, random_state=args.seed + 1)
    print(f"Training the implicit deblurring model on {len(train)} images ({size}x{size}, "
          f"Gaussian blur {DEMO_BLUR[0]}x{DEMO_BLUR[0]} sigma {DEMO_BLUR[1]}, noise std "
          f"{DEMO_NOISE}, device {args.device})")
    sys.stdout.flush()
    start = time.perf_counter()
    epochs = DEMO_EPOCHS if args.epochs is None else args.epochs
    estimator = _fit_implicit(operator, X_train, train, gradient="jfb", epochs=epochs,
                              device=args.device, seed=args.seed)
    fit_time = time.perf_counter() - start
    rows, outputs, stats = compare_methods(operator, X_train, train, X_test, test, estimator,
                                           implicit_time=fit_time)
    title = (f"Deblurring {len(test)} held-out faces ({size}x{size}); time = fit + predict; "
             "FP = fixed-point")
    _print_table(title, rows, "time (s)")

    out.mkdir(parents=True, exist_ok=True)
    psnrs = [rows[0]["psnr"], rows[2]["psnr"], rows[3]["psnr"], None]
    figure = plot_reconstructions(
        [X_test, outputs["tikhonov"], outputs["implicit"], test],
        ["measurement", "Tikhonov", "implicit", "truth"],
        n_images=min(N_FIGURE_IMAGES, len(test)), psnrs=psnrs)
    written = [save_figure(figure, out / "reconstructions.png")]
    history = estimator.history
    figure = plot_convergence({"test faces": stats.history},
                              train_loss=_history_column(history, "train_loss"),
                              iterations_per_epoch=_history_column(history, "fp_iter"))
    written.append(save_figure(figure, out / "convergence.png"))
    results = {
        "task": "deblurring", "blur": list(DEMO_BLUR), "noise": DEMO_NOISE, "size": size,
        "n_train": len(train), "n_test": len(test), "seed": args.seed, "device": args.device,
        "epochs": len(history), "fit_time_s": fit_time, "methods": rows,
        "library_version": __version__,
    }
    written.append(_write_atomically(
        out / "results.json",
        lambda handle: handle.write(json.dumps(results, indent=2).encode() + b"\n")))
    markdown = f"{title}\n\n{markdown_table(rows)}\n"
    written.append(_write_atomically(out / "results.md",
                                     lambda handle: handle.write(markdown.encode())))
    record = _model_record(estimator, DEMO_BLUR, DEMO_NOISE, size, "faces", args.seed)
    written.append(_save_model(out / "model.pkl", record))
    print()
    print("Wrote " + ", ".join(str(path) for path in written))


def _history_column(history, key):
    values = [epoch.get(key) for epoch in history]
    if not values or any(value is None for value in values):
        return None
    return [float(value) for value in values]


# -- train ---------------------------------------------------------------------------------------
def run_train(args):
    """``implicit-inverse train``: fit a deblurring model and pickle it with its metadata."""
    from .operators import make_measurements

    model = Path(args.model)
    if model.is_dir():
        raise CommandError(f"--model: {str(model)!r} is a folder")
    if model.exists() and not args.force:
        raise CommandError(f"--model: {str(model)!r} already exists; pass --force to overwrite it")
    _check_device(args.device)
    blur = _parse_blur(args.blur, args.size)
    clean = _training_images(args.data, args.size, args.seed, args.n_images)
    if len(clean) < 2:
        raise CommandError(f"--data: at least 2 training images are needed, got {len(clean)}")
    operator = _blur_operator(*blur)
    X = make_measurements(clean, operator, args.noise, random_state=args.seed)
    print(f"Training on {len(clean)} images from {args.data!r} ({args.size}x{args.size}, "
          f"Gaussian blur {blur[0]}x{blur[0]} sigma {blur[1]:g}, noise std {args.noise:g}, "
          f"gradient {args.gradient}, device {args.device})")
    sys.stdout.flush()
    start = time.perf_counter()
    estimator = _fit_implicit(operator, X, clean, gradient=args.gradient, epochs=args.epochs,
                              device=args.device, seed=args.seed)
    seconds = time.perf_counter() - start
    record = _model_record(estimator, blur, args.noise, args.size, args.data, args.seed)
    _save_model(model, record)
    print(f"Trained {len(estimator.history)} epochs in {seconds:.1f} s; training PSNR "
          f"{estimator.score(X, clean):.2f} dB. Saved the model to {str(model)!r}")


# -- evaluate ------------------------------------------------------------------------------------
def _evaluation_images(data, size, seed, n_images):
    """``(tune, evaluate)`` clean image sets for ``evaluate --data``."""
    from .datasets import load_natural_patches, train_test_faces

    if data == "faces":
        tune, test = train_test_faces(size=size, n_test=N_TEST_FACES, n_patches=N_TRAIN_PATCHES,
                                      random_state=seed)
        return tune, _subset(test, n_images, seed)
    if data == "patches":
        n = n_images or N_EVAL_PATCHES
        tune = load_natural_patches(n, size=size, random_state=seed)
        return tune, load_natural_patches(n, size=size, random_state=seed + 1)
    images = _subset(_load_folder(data, size), n_images, seed)
    if len(images) < 2:
        raise CommandError(f"--data: at least 2 images are needed, got {len(images)}")
    return images, images


def run_evaluate(args):
    """``implicit-inverse evaluate``: compare a saved model with the classical baselines."""
    from .operators import make_measurements

    record = load_model(args.model)
    estimator = record["estimator"]
    size = record["size"]
    blur, noise = tuple(record["blur"]), record["noise"]
    tune, test = _evaluation_images(args.data, size, args.seed, args.n_images)
    operator = estimator.operator_
    X_tune = make_measurements(tune, operator, noise, random_state=args.seed)
    X_test = make_measurements(test, operator, noise, random_state=args.seed + 1)
    rows, _, _ = compare_methods(operator, X_tune, tune, X_test, test, estimator)
    title = (f"Deblurring {len(test)} images from {args.data!r} ({size}x{size}, Gaussian blur "
             f"{blur[0]}x{blur[0]} sigma {blur[1]:g}, noise std {noise:g}); time = predict "
             "(Tikhonov: tuning + predict); FP = fixed-point")
    _print_table(title, rows, "time (s)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
