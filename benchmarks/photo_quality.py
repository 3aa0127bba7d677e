"""Quality on held-out photos: the shipped prior (zero-shot, fine-tuned) against tuned baselines.

Data (offline, scikit-image): the held-out photos ``camera`` and ``coffee`` (grayscale,
``implicit_inverse.data.photos.load_photo``; no model here ever trains on them), evaluated as
(a) their 256x256 centre crops and (b) the whole photos (512x512 and 400x600). Training and
tuning data: ``--train-crops`` random crops (default 64, of ``--train-size`` 64x64 pixels,
seeded by ``--seed``) of ``training_planes()``, the fourteen other photos. Circular blur
(``Blur``) by each kernel of ``--kernels`` (default ``gaussian:9,1.6``, ``disk:2`` and
``motion:9,30``, the CLI's ``--kernel`` specs), Gaussian noise of std ``--noise`` (0.01), fixed
noise seeds.

Rows per kernel:

- Tikhonov, Wiener, TV: each tuned by ``GridSearchCV`` on the training crops through
  ``implicit_inverse.baselines.tuning.tune_strongest``; the seconds are the search's;
- zero-shot prior: ``ImplicitDeblurRegressor.from_pretrained(operator=op, noise_std=noise)``,
  no training (it calibrates ``lam`` and the denoiser strength on its own training photos; the
  seconds are that calibration's);
- fine-tuned prior: that same estimator, ``set_params(warm_start=True)``, trained on the
  training crops by ``partial_fit`` epoch by epoch (learning rate ``--finetune-lr``, 1e-4)
  until ``--finetune-seconds`` (600) wall seconds are spent: an epoch starts only if it is
  expected (mean epoch time so far) to end within the budget, and the estimator's cosine
  learning-rate schedule is stretched after every epoch to end with the budget (its ``T_max``
  is re-planned from the mean epoch time); seconds: calibration plus training;
- from scratch: ``ImplicitDeblurRegressor(operator=op, noise_std=noise)`` (the default DnCNN
  5x24 regularizer) trained the same way for the same budget (default learning rate).

Columns: PSNR and SSIM (``implicit_inverse.metrics``; means over the two photos) on the crops and
on the whole photos; seconds to tune or train; seconds to restore the two whole photos; mean
fixed-point iterations and share of converged solves over all test solves (crops and photos,
``predict_with_stats(X)``); the gain in PSNR over the best classical row (crops /
photos). Under the tables: the targets (zero-shot >= best classical + 1.5 dB on every kernel,
fine-tuned within 10 CPU minutes >= best classical + 1.5 dB, >= 99 % of solves converged at the
default ``tol``, the zero-shot ``predict`` of the 512x512 camera photo within 20 s with
``--threads`` torch threads), each met or missed with its figures.

Outputs: the markdown tables and targets; ``photo_quality.json`` (every number) and
``photo_quality_details.npz`` (the figure's pixels) in ``--out``; the figure ``--figure``
(default ``docs/_static/photo_quality.png``): per kernel, a 192x192 detail of camera: truth,
measurement, best classical, zero-shot, fine-tuned, each titled with its PSNR on the whole
photo. ``--from-json`` prints the tables and redraws the figure from an earlier run's JSON (and
the ``.npz`` beside it) without computing anything.

``--quick`` is a smoke run (under 2 minutes): kernel ``disk:2``, 8 training crops of 32x32,
48x48 centre crops and 64x64 centre crops in place of the whole photos, 10 s budgets,
``max_iter=20``; its numbers mean nothing and the 512x512 timing is skipped.

Usage::

    python benchmarks/photo_quality.py                       # ~40+ minutes on one core
    python benchmarks/photo_quality.py --kernels disk:2 --finetune-seconds 120 --out pq
    python benchmarks/photo_quality.py --from-json photo_quality_output/photo_quality.json
    python benchmarks/photo_quality.py --kernels disk:2 --out pq-disk    # one kernel per core,
    python benchmarks/photo_quality.py --from-json pq-*/photo_quality.json   # then merged
    python benchmarks/photo_quality.py --quick --out /tmp/pq --figure /tmp/pq/fig.png
"""

from __future__ import annotations

import argparse
import copy
import json
import zlib
import os
import sys
import time

import numpy as np
import torch

from implicit_inverse.data.photos import training_crops
from run import machine_line, markdown_table, quiet_warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = ("gaussian:9,1.6", "disk:2", "motion:9,30")
PHOTOS = ("camera", "coffee")
DETAIL = (60, 180, 192)  # top, left, size of the camera detail in the figure
CLASSICAL = ("Tikhonov", "Wiener", "TV")
IMPLICIT = ("zero-shot prior", "fine-tuned prior", "from scratch")
FIGURE_COLUMNS = ("truth", "measurement", "best classical", "zero-shot prior", "fine-tuned prior")
TARGETS = {"zero-shot prior": 1.5, "fine-tuned prior": 1.5}
RESTORE_512_S = 20.0  # the zero-shot restore of camera (512x512), per kernel, at most


# -- data ---------------------------------------------------------------------------------------
def centre(image, size):
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def test_images(crop, whole):
    """Per held-out photo: its centre crop and the whole photo (or a centre crop of ``whole``
    pixels under ``--quick``)."""
    from implicit_inverse.data.photos import load_photo
    photos = {name: np.array(load_photo(name), dtype=np.float32) for name in PHOTOS}
    crops = np.stack([centre(photos[name], crop) for name in PHOTOS])
    if whole:
        photos = {name: centre(image, whole) for name, image in photos.items()}
    return crops, photos


# -- methods ------------------------------------------------------------------------------------
def tune_classical(operator, X, y, seed):
    """``({name: TunedBaseline}, name of the strongest by cross-validated PSNR)``: Tikhonov,
    Wiener and TV tuned by ``tune_strongest`` on all the training crops."""
    from implicit_inverse.baselines.tuning import tune_strongest
    tuned, strongest = tune_strongest(operator, X, y, methods=["tikhonov", "wiener", "tv"],
                                      max_samples=len(X), random_state=seed)
    names = dict(zip(["tikhonov", "wiener", "tv"], CLASSICAL))
    return {names[key]: value for key, value in tuned.items()}, names[strongest]


def train_within_budget(estimator, X, y, budget):
    """``partial_fit`` epoch by epoch while the next epoch is expected to end within ``budget``
    seconds; the cosine schedule's ``T_max`` is re-planned after every epoch so that it ends
    with the budget. Returns (seconds, epochs, DivergenceError message or None)."""
    from implicit_inverse.estimators import DivergenceError
    start, epochs, stopped = time.perf_counter(), 0, None
    while True:
        try:
            estimator.partial_fit(X, y)
        except DivergenceError as error:  # keeps its last good parameters
            stopped = str(error)
            break
        epochs += 1
        elapsed = time.perf_counter() - start
        per_epoch = elapsed / epochs
        if elapsed + per_epoch > budget:
            break
        schedule = dict(estimator.net_.callbacks_).get("lr_schedule")
        if schedule is not None:  # the closed-form cosine at the next epoch uses this T_max
            schedule.T_max = epochs + int((budget - elapsed) // per_epoch)
    return time.perf_counter() - start, epochs, stopped


def evaluate(name, predict, crops, X_crops, photos, X_photos, implicit):
    """PSNR, SSIM, restoration seconds and solver statistics of one method (``predict`` of an
    ``implicit`` one returns ``(images, stats)``)."""
    from implicit_inverse.metrics import psnr, ssim

    def run(X):
        if implicit:
            output, stats = predict(X)
            iterations.extend(stats.iterations.float().tolist())
            converged.extend(stats.converged.float().tolist())
            return output
        return predict(X)

    iterations, converged = [], []
    result = {"method": name, "per_photo": {}}
    restored_crops = run(X_crops)
    restore_s, restored = 0.0, {}
    for photo in PHOTOS:
        start = time.perf_counter()
        restored[photo] = run(X_photos[photo][None])[0]
        seconds = time.perf_counter() - start
        restore_s += seconds
        result["per_photo"][photo] = {
            "shape": list(photos[photo].shape), "restore_s": seconds,
            "psnr": psnr(photos[photo], restored[photo]),
            "ssim": ssim(photos[photo], restored[photo])}
    for index, photo in enumerate(PHOTOS):
        result["per_photo"][photo]["crop_psnr"] = psnr(crops[index], restored_crops[index])
        result["per_photo"][photo]["crop_ssim"] = ssim(crops[index], restored_crops[index])
    result.update(
        psnr_crops=psnr(crops, restored_crops), ssim_crops=ssim(crops, restored_crops),
        psnr_photos=float(np.mean([result["per_photo"][p]["psnr"] for p in PHOTOS])),
        ssim_photos=float(np.mean([result["per_photo"][p]["ssim"] for p in PHOTOS])),
        restore_s=restore_s)
    if implicit:
        result["iterations"] = float(np.mean(iterations))
        result["converged"] = float(np.mean(converged))
        result["solves"] = len(converged)
    return result, restored["camera"]


def kernel_seed(spec):
    """The noise seed offset of kernel ``spec``: fixed by the spec itself, so that a kernel run
    alone (one process per core) draws the same measurements as in a run of all kernels."""
    return 100 * (1 + zlib.crc32(spec.encode()) % 1000)


def run_kernel(spec, args, train, crops, photos):
    from implicit_inverse import ImplicitDeblurRegressor
    from implicit_inverse.metrics import psnr
    from implicit_inverse.operators import Blur, make_measurements
    from implicit_inverse.operators.specs import parse_kernel

    operator = Blur(parse_kernel(spec))
    seed = args.seed + kernel_seed(spec)
    X_train = make_measurements(train, operator, args.noise, random_state=seed)
    X_crops = make_measurements(crops, operator, args.noise, random_state=seed + 1)
    X_photos = {name: make_measurements(photos[name][None], operator, args.noise,
                                        random_state=seed + 2 + i)[0]
                for i, name in enumerate(PHOTOS)}
    extra = {"max_iter": args.max_iter} if args.max_iter else {}
    rows, camera = [], {"truth": photos["camera"], "measurement": X_photos["camera"]}

    tuned, strongest = tune_classical(operator, X_train, train, args.seed)
    for name, baseline in tuned.items():
        result, camera[name] = evaluate(name, baseline.estimator.predict, crops, X_crops, photos,
                                        X_photos, implicit=False)
        result.update(kind="classical", params={baseline.param: float(baseline.value)},
                      cv_psnr=baseline.cv_psnr, grid_points=baseline.n_evaluated,
                      fit_s=baseline.seconds)
        rows.append(result)
        print(f"  {name}: {result['psnr_photos']:.2f} dB (photos), tuned in "
              f"{baseline.seconds:.0f} s", flush=True)

    start = time.perf_counter()
    zero_shot = ImplicitDeblurRegressor.from_pretrained(
        operator=operator, noise_std=args.noise, lr=args.finetune_lr, random_state=args.seed,
        **extra)
    calibration_s = time.perf_counter() - start
    fine_tuned = copy.deepcopy(zero_shot).set_params(warm_start=True)
    scratch = ImplicitDeblurRegressor(operator=operator, noise_std=args.noise,
                                      random_state=args.seed, **extra)
    timing = None
    for name, estimator in zip(IMPLICIT, (zero_shot, fine_tuned, scratch)):
        train_s, epochs, stopped = 0.0, 0, None
        if estimator is not zero_shot:
            train_s, epochs, stopped = train_within_budget(estimator, X_train, train,
                                                           args.finetune_seconds)
        calibration = 0.0 if estimator is scratch else calibration_s
        fit_s = calibration + train_s
        result, camera[name] = evaluate(name, estimator.predict_with_stats, crops, X_crops,
                                        photos, X_photos, implicit=True)
        try:  # the learning rate of each epoch, as the cosine schedule recorded it
            lrs = list(estimator.history[:, "event_lr"]) if epochs else []
        except KeyError:
            lrs = []
        result.update(kind="implicit", fit_s=fit_s, calibration_s=calibration, train_s=train_s,
                      epochs=epochs, stopped_by_divergence=stopped,
                      lr_first=float(lrs[0]) if lrs else None,
                      lr_last=float(lrs[-1]) if lrs else None,
                      lam=float(estimator.lam_),
                      prior_sigma=None if estimator.prior_sigma_ is None
                      else float(estimator.prior_sigma_))
        rows.append(result)
        if name == "zero-shot prior":
            camera_shape = tuple(photos["camera"].shape)
            timing = {"shape": list(camera_shape), "threads": torch.get_num_threads(),
                      "seconds": result["per_photo"]["camera"]["restore_s"]} \
                if camera_shape == (512, 512) else None
        print(f"  {name}: {result['psnr_photos']:.2f} dB (photos), {epochs} epoch(s) in "
              f"{fit_s:.0f} s", flush=True)
    best = max((r for r in rows if r["kind"] == "classical"), key=lambda r: r["psnr_photos"])
    camera["best classical"] = camera[best["method"]]
    height, width = photos["camera"].shape
    size = min(DETAIL[2], height, width)  # under --quick: the whole 64x64 stand-in
    top, left = min(DETAIL[0], height - size), min(DETAIL[1], width - size)
    details = {column: np.asarray(camera[column], dtype=np.float32)[top:top + size,
                                                                     left:left + size]
               for column in FIGURE_COLUMNS}
    return {"rows": rows, "timing_512": timing, "best_classical": best["method"],
            "strongest_by_cv": strongest,
            "measurement_psnr_camera": psnr(photos["camera"], X_photos["camera"]),
            "lam": {r["method"]: r.get("lam") for r in rows if r["kind"] == "implicit"}}, details


# -- report -------------------------------------------------------------------------------------
def best_classical(rows, key):
    return max(r[key] for r in rows if r["kind"] == "classical")


def print_tables(results):
    for spec, entry in results["kernels"].items():
        rows = entry["rows"]
        crops_best, photos_best = (best_classical(rows, "psnr_crops"),
                                   best_classical(rows, "psnr_photos"))
        print(f"\nKernel {spec}, noise std {results['config']['noise']}: "
              f"{results['config']['crop']}x{results['config']['crop']} centre crops and "
              f"{results['config']['photos_label']}")
        cells = []
        for r in rows:
            label = r["method"]
            if r["kind"] == "classical":
                label += " (" + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in r["params"].items()) + ")"
            elif r.get("epochs"):
                label += f" ({r['epochs']} epochs"
                label += ", stopped: DivergenceError)" if r.get("stopped_by_divergence") else ")"
            implicit = r["kind"] == "implicit"
            cells.append([
                label, f"{r['psnr_crops']:.2f}", f"{r['ssim_crops']:.4f}",
                f"{r['psnr_photos']:.2f}", f"{r['ssim_photos']:.4f}", f"{r['fit_s']:.1f}",
                f"{r['restore_s']:.1f}", f"{r['iterations']:.1f}" if implicit else "-",
                f"{100 * r['converged']:.1f}%" if implicit else "-",
                f"{r['psnr_crops'] - crops_best:+.2f} / {r['psnr_photos'] - photos_best:+.2f}"])
        print(markdown_table(["method", "PSNR crops", "SSIM crops", "PSNR photos",
                              "SSIM photos", "tune/train s", "restore s (2 photos)",
                              "mean iters", "converged", "gain dB (crops / photos)"], cells))


def print_targets(results):
    config = results["config"]
    print("\nTargets (gain over the best classical row, crops / whole photos):")
    for method, margin in TARGETS.items():
        gains, ok = [], True
        for spec, entry in results["kernels"].items():
            row = next(r for r in entry["rows"] if r["method"] == method)
            gain_c = row["psnr_crops"] - best_classical(entry["rows"], "psnr_crops")
            gain_p = row["psnr_photos"] - best_classical(entry["rows"], "psnr_photos")
            ok &= gain_c >= margin and gain_p >= margin
            within = ""
            if method == "fine-tuned prior":  # at most 10 minutes of training
                ok &= row["train_s"] <= 600
                within = f", trained {row['train_s']:.0f} s"
            gains.append(f"{spec} {gain_c:+.2f} / {gain_p:+.2f} dB{within}")
        budget = f" (budget {config['finetune_seconds']:g} s)" \
            if method == "fine-tuned prior" else ""
        print(f"- {method} >= best classical + {margin} dB on every kernel{budget}: "
              f"{'met' if ok else 'missed'} ({'; '.join(gains)})")
    shares = []
    for spec, entry in results["kernels"].items():
        for r in entry["rows"]:
            if r["kind"] == "implicit":
                shares.append((r["converged"], f"{spec} {r['method']} {100 * r['converged']:.1f}%"))
    worst = min(share for share, _ in shares)
    print(f"- >= 99% of test solves converged (tol 1e-4, max_iter "
          f"{config['max_iter'] or 'default'}): {'met' if worst >= 0.99 else 'missed'} "
          f"(lowest: {min(shares)[1]}; every implicit row: "
          + ", ".join(text for _, text in shares) + ")")
    timings = [(spec, entry["timing_512"]) for spec, entry in results["kernels"].items()
               if entry["timing_512"]]
    if timings:
        worst = max(t["seconds"] for _, t in timings)
        print(f"- zero-shot restore of camera 512x512 <= {RESTORE_512_S:g} s with "
              f"{timings[0][1]['threads']} torch thread(s), every kernel: "
              f"{'met' if worst <= RESTORE_512_S else 'missed'} ("
              + ", ".join(f"{spec} {t['seconds']:.1f} s" for spec, t in timings) + ")")
    else:
        print(f"- zero-shot restore of camera 512x512 <= {RESTORE_512_S:g} s: not measured "
              "(--quick restores 64x64 crops in place of the whole photos)")


def draw(details, kernels, psnrs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(kernels), len(FIGURE_COLUMNS),
                                figsize=(15, 3.5 * len(kernels)), squeeze=False)
    for row, spec in enumerate(kernels):
        for col, column in enumerate(FIGURE_COLUMNS):
            axis = axes[row, col]
            axis.imshow(details[f"{spec}|{column}"], cmap="gray", vmin=0, vmax=1,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            title = column if column != "best classical" else \
                f"best classical ({psnrs[spec]['best classical name']})"
            if column != "truth":
                title += f"\ncamera: {psnrs[spec][column]:.2f} dB"
            axis.set_title(title, fontsize=10)
            if col == 0:
                axis.set_ylabel(spec, fontsize=11)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"\nfigure: {path}")


def figure_psnrs(results):
    out = {}
    for spec, entry in results["kernels"].items():
        values = {r["method"]: r["per_photo"]["camera"]["psnr"] for r in entry["rows"]}
        best = entry["best_classical"]
        out[spec] = {"measurement": entry["measurement_psnr_camera"],
                     "best classical": values[best], "best classical name": best,
                     **values}
    return out


def report(results, details, figure_path):
    print_tables(results)
    print_targets(results)
    if details is not None:
        draw(details, list(results["kernels"]), figure_psnrs(results), figure_path)


def merged_runs(paths):
    """The results and figure pixels of the runs saved at ``paths``, merged kernel by kernel
    (the first run's configuration is kept; ``details`` is None when any ``.npz`` is missing)."""
    results, details = None, {}
    for path in paths:
        with open(path) as handle:
            run = json.load(handle)
        npz = os.path.join(os.path.dirname(os.path.abspath(path)),
                           run.get("details", "photo_quality_details.npz"))
        if details is not None and os.path.exists(npz):
            details.update(np.load(npz))
        else:
            print(f"{npz} is missing: no figure")
            details = None
        if results is None:
            results = run
        else:
            results["kernels"].update(run["kernels"])
            results["config"]["kernels"] += run["config"]["kernels"]
    return results, details


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), metavar="SPEC",
                        help="blur kernels as the CLI's --kernel specs (default: "
                             f"{' '.join(KERNELS)})")
    parser.add_argument("--noise", type=float, default=0.01, help="noise std (default 0.01)")
    parser.add_argument("--finetune-seconds", type=float, default=600.0,
                        help="training budget (wall seconds) of the fine-tuned and from-scratch "
                             "rows (default 600)")
    parser.add_argument("--finetune-lr", type=float, default=1e-4,
                        help="learning rate of the fine-tuning (default 1e-4)")
    parser.add_argument("--train-crops", type=int, default=64,
                        help="random training crops of the training photos (default 64)")
    parser.add_argument("--train-size", type=int, default=64,
                        help="side of the training crops (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="photo_quality_output",
                        help="folder of photo_quality.json and photo_quality_details.npz")
    parser.add_argument("--figure", default=os.path.join(ROOT, "docs", "_static",
                                                         "photo_quality.png"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: disk:2, 8 training crops of 32x32, 48x48 and 64x64 "
                             "test crops, 10 s budgets, max_iter 20")
    parser.add_argument("--from-json", metavar="FILE", nargs="+",
                        help="print the tables and redraw the figure from earlier runs' "
                             "photo_quality.json (and the .npz beside each); several files "
                             "(for example one run per kernel, on separate cores) are merged "
                             "kernel by kernel")
    args = parser.parse_args(argv)
    if args.from_json:
        results, details = merged_runs(args.from_json)
        report(results, details, args.figure)
        return 0
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    crop, whole, args.max_iter = 256, None, None
    if args.quick:
        args.kernels, args.train_crops, args.train_size = ["disk:2"], 8, 32
        args.finetune_seconds, args.max_iter, crop, whole = 10.0, 20, 48, 64
    torch.set_num_threads(args.threads)
    quiet_warnings()
    os.makedirs(args.out, exist_ok=True)
    print(machine_line(args.threads))
    print(f"kernels {' '.join(args.kernels)}, noise {args.noise}, {args.train_crops} training "
          f"crops of {args.train_size}x{args.train_size}, budget {args.finetune_seconds:g} s per "
          f"trained model{' (--quick)' if args.quick else ''}", flush=True)
    train = training_crops(args.train_crops, args.train_size, args.seed)
    crops, photos = test_images(crop, whole)
    results = {"config": {"kernels": args.kernels, "noise": args.noise,
                          "finetune_seconds": args.finetune_seconds,
                          "finetune_lr": args.finetune_lr, "train_crops": args.train_crops,
                          "train_size": args.train_size, "seed": args.seed,
                          "threads": args.threads, "quick": args.quick, "crop": crop,
                          "max_iter": args.max_iter,
                          "photos_label": f"{whole}x{whole} centre crops (--quick)" if whole
                          else "whole photos (camera 512x512, coffee 400x600)",
                          "machine": machine_line(args.threads)},
               "details": "photo_quality_details.npz", "kernels": {}}
    details = {}
    start = time.perf_counter()
    for spec in args.kernels:
        print(f"\n{spec}:", flush=True)
        entry, kernel_details = run_kernel(spec, args, train, crops, photos)
        results["kernels"][spec] = entry
        details.update({f"{spec}|{column}": image for column, image in kernel_details.items()})
    results["wall_s"] = time.perf_counter() - start
    with open(os.path.join(args.out, "photo_quality.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    np.savez_compressed(os.path.join(args.out, results["details"]), **details)
    report(results, details, args.figure)
    print(f"\nwall time {results['wall_s']:.0f} s; JSON: "
          f"{os.path.join(args.out, 'photo_quality.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
