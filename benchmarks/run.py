"""Run the benchmarks of ``implicit_inverse`` by name and print markdown tables.

Usage::

    python benchmarks/run.py                    # all of them, full sizes
    python benchmarks/run.py all --quick        # smoke run, tiny sizes (< 2 min without quality)
    python benchmarks/run.py gradients solvers  # some of them, by name
    python benchmarks/run.py gradients --quick --threads 2

Names: gradients, solvers, peer, scaling, parallel, gpu (this folder's ``<name>.py``, ``peer``
is ``peer_deepinv.py``, each called through its ``main(argv)``; ``gpu`` is the device check:
``tests/test_gpu.py`` and throughput on CUDA when available, else on the CPU), and blur, layer,
quality, time_to_quality, epoch_cost, predict_speed, jfb_memory, mixed_precision, folder_memory,
photo_workflow, photo_quality (``blur`` is ``blur_fft_vs_conv.py``, ``layer``
``implicit_layer.py``, the others their own file; run as subprocesses with arguments that match
``--quick``; a script that writes files gets ``--out``, ``--work`` and ``--figure`` in a fresh
temporary folder). ``all`` runs every one in that order.

This module also holds the few helpers the benchmarks share (problem data, markdown tables, peak
memory in a fresh subprocess), so that each benchmark file stays runnable on its own::

    python benchmarks/gradients.py --quick
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> module in this folder with main(argv) accepting --quick and --threads
OWN = {"gradients": "gradients", "solvers": "solvers", "peer": "peer_deepinv",
       "scaling": "scaling", "parallel": "parallel", "gpu": "gpu"}
# name -> (file, arguments for --quick unless the script has its own --quick, arguments for a
# full run); "--threads N" is appended when the script accepts it
EXTERNAL = {
    "blur": ("blur_fft_vs_conv.py", ["--size", "64", "--batch", "4", "--repeats", "3"], []),
    "layer": ("implicit_layer.py", ["--batch", "2", "--size", "16", "--max-iters", "3,10",
                                    "--solve-cap", "100"], []),
    "quality": ("quality.py", ["--settings", "a", "--budget", "20", "--gradients", "jfb"], []),
    "time_to_quality": ("time_to_quality.py", ["--budgets", "5", "--methods",
                                               "jfb,feedforward,classical",
                                               "--classical-samples", "32"], []),
    "epoch_cost": ("epoch_cost.py", ["--epochs", "2", "--n-patches", "40", "--repeats", "2"], []),
    "predict_speed": ("predict_speed.py", ["--epochs", "1", "--n-patches", "40", "--n32", "16",
                                           "--n256", "1", "--repeats", "1"], []),
    "jfb_memory": ("jfb_memory.py", ["--max-iters", "2,4", "--variants", "default",
                                     "--repeats", "1"], []),
    "mixed_precision": ("mixed_precision.py", ["--epochs", "1", "--patches", "20"], []),
    "folder_memory": ("folder_memory.py", ["--counts", "4", "8", "--size", "64"], []),
    "photo_workflow": ("photo_workflow.py", ["--epochs", "1", "--patches-per-image", "1"], []),
    "photo_quality": ("photo_quality.py", ["--quick"], []),
}
ORDER = ["gradients", "solvers", "peer", "scaling", "parallel", "gpu", "blur", "layer", "quality",
         "time_to_quality", "epoch_cost", "predict_speed", "jfb_memory", "mixed_precision",
         "folder_memory", "photo_workflow", "photo_quality"]


# -- shared helpers ---------------------------------------------------------------------------
def machine_line(threads):
    """One line describing the machine and its current load (benchmarks print it first)."""
    import torch
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"torch {torch.__version__}, {threads} torch thread(s), {os.cpu_count()} CPUs "
            f"(load average {load}), {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}")


def markdown_table(headers, rows):
    """A markdown table (str) from a header list and rows of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def deblur_problem(n_patches, size=32, noise_std=0.01, n_test=20, seed=0):
    """The project's deblurring recipe: faces + natural patches, 9x9 Gaussian blur (sigma 1.5).

    Returns
    -------
    operator : Blur
    X_train, y_train, X_test, y_test : float32 arrays of shape (n, size, size)
    """
    from implicit_inverse.datasets import train_test_faces
    from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements
    train, test = train_test_faces(size=size, n_test=n_test, n_patches=n_patches,
                                   random_state=seed)
    operator = Blur(gaussian_kernel(9, 1.5))
    X_train = make_measurements(train, operator, noise_std, random_state=seed + 1)
    X_test = make_measurements(test, operator, noise_std, random_state=seed + 2)
    return operator, X_train, train, X_test, test


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024   # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _proc_status_mb(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


class PeakMemory:
    """Peak resident memory of this process above its resident memory at :meth:`start` (MiB).

    On Linux, ``start`` resets the kernel's peak-RSS counter (writes ``5`` to
    ``/proc/self/clear_refs``) and reads ``VmRSS``; ``peak_mb`` reads ``VmHWM`` (the peak since
    the reset) minus that. Elsewhere (or if the reset is refused) it falls back to the rise of
    ``ru_maxrss``, a process-lifetime peak that earlier, larger peaks can hide. Memory that the
    allocator keeps from earlier work and reuses is not seen as a rise: measure each
    configuration in a fresh process (:func:`run_worker`).
    """

    def start(self):
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.method, self.base = "VmHWM", _proc_status_mb("VmRSS")
        except OSError:
            self.method, self.base = "ru_maxrss", peak_rss_mb()
        return self

    def peak_mb(self):
        peak = _proc_status_mb("VmHWM") if self.method == "VmHWM" else peak_rss_mb()
        return peak - self.base


def run_worker(script, config, timeout=1800):
    """Run ``python <script> --worker '<json config>'`` in a fresh process; return its JSON.

    The worker prints one JSON object on its last stdout line. A fresh process per measured
    configuration keeps memory measurements (:class:`PeakMemory`) free of what earlier
    configurations left in the allocator.
    """
    command = [sys.executable, os.path.join(HERE, script), "--worker", json.dumps(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=_child_env())
    if result.returncode != 0:
        raise RuntimeError(f"worker {script} {config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def quiet_warnings():
    """Silence the warnings that benchmarks provoke on purpose (caps, tol=0, hooks)."""
    from implicit_inverse.equilibrium import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _child_env():
    env = dict(os.environ)
    root = os.path.dirname(HERE)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, HERE, env.get("PYTHONPATH")]))
    return env


# -- entry point ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _help_text(path):
    try:
        result = subprocess.run([sys.executable, path, "--help"], capture_output=True,
                                text=True, timeout=120, env=_child_env())
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout


def _accepts(path, flag):
    return flag in _help_text(path).split()


def run_external(name, quick, threads):
    script, quick_args, full_args = EXTERNAL[name]
    path = os.path.join(HERE, script)
    if not os.path.exists(path):
        print(f"{name}: {script} is not in benchmarks/ yet; skipped")
        return 0
    if quick and _accepts(path, "--quick"):  # a script's own quick mode wins
        quick_args = ["--quick"]
    arguments = list(quick_args if quick else full_args)
    if _accepts(path, "--threads"):
        arguments += ["--threads", str(threads)]
    folder = None
    for flag in ("--out", "--work", "--figure"):  # written to a fresh folder, never over files
        if _accepts(path, flag):                   # a user (or the docs) keep
            folder = folder or tempfile.mkdtemp(prefix=f"{name}_")
            target = os.path.join(folder, "figure.png" if flag == "--figure" else flag[2:])
            arguments += [flag, target]
    print(f"$ python benchmarks/{script} {' '.join(arguments)}", flush=True)
    return subprocess.run([sys.executable, path, *arguments], env=_child_env()).returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["all"],
                        help=f"'all' or any of {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (default 1)")
    args = parser.parse_args(argv)
    names = ORDER if "all" in args.names else args.names
    unknown = [name for name in names if name not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from all, {', '.join(ORDER)}")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    failures = []
    for name in names:
        print(f"\n## {name}\n", flush=True)
        start = time.perf_counter()
        if name in OWN:
            module = importlib.import_module(OWN[name])
            status = module.main((["--quick"] if args.quick else [])
                                 + ["--threads", str(args.threads)])
        else:
            status = run_external(name, args.quick, args.threads)
        if status:
            failures.append(name)
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    if failures:
        print(f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
