"""The skorch side of the estimators: the training step, training measurements, statistics.

Nothing here is public: :class:`~implicit_inverse.estimators.base.ImplicitRegressor` builds these
objects in ``fit`` and owns them.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback, LRScheduler
from torch import nn

from .._runtime import SeedStream
from ..equilibrium import ConvergenceWarning
from ..networks.precision import MixedPrecision
from . import distributed


class DivergenceError(RuntimeError):
    """Training stopped because the fixed-point solves kept diverging."""


class ReconstructionModule(nn.Module):
    """skorch's module: measurements (N, C, H', W') -> fixed points (N, C, H, W).

    Parameters
    ----------
    layer : ImplicitLayer
    cache : FixedPointCache or None, default None
        Warm starts of the training solves. A submodule, so that its buffers are part of the
        module's ``state_dict``: checkpoints (skorch ``Checkpoint`` / ``LoadInitState``) carry
        it, and a resumed run starts its solves where the uninterrupted run would.

    Attributes
    ----------
    last_solution : torch.Tensor or None
        The solver's fixed points of the last call, without a graph (finite whenever the
        measurements are: the lowest-residual iterate of each sample).
    """

    def __init__(self, layer, cache=None):
        super().__init__()
        self.layer = layer
        self.cache = cache
        self.last_solution = None

    @property
    def regularizer(self):
        """The learned prior of the map (a regularizer ``R`` or a denoiser ``D``), without its
        mixed-precision wrapper."""
        prior = self.layer.map.prior
        return prior.module if isinstance(prior, MixedPrecision) else prior

    @property
    def last_stats(self):
        """:class:`~implicit_inverse.equilibrium.SolverStats` of the last solve (or None)."""
        return self.layer.last_stats

    def initial_point(self, measurement):
        """The map's default starting points for ``measurement`` (N, C, H', W')."""
        return self.layer.map.initial_point(measurement)

    def forward(self, measurement, x0=None):
        """Reconstructions of ``measurement`` shaped like ``A^T measurement``.

        ``x0`` optionally gives each sample's starting point (a warm start).
        """
        output = self.layer(measurement, x0=x0)
        self.last_solution = output.detach()
        return output


def dihedral(images, codes, inverse=False):
    """Apply one of the 8 dihedral transforms to each image.

    Parameters
    ----------
    images : torch.Tensor of shape (N, C, H, W)
    codes : torch.Tensor of shape (N,), int in [0, 8)
        ``code % 4`` quarter turns, then a horizontal flip when ``code >= 4``. Quarter turns
        are only valid for square images.
    inverse : bool, default False
        Apply the inverse transforms instead.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W)
    """
    output = images.clone()
    for code in torch.unique(codes).tolist():
        chosen = codes == code
        transformed = images[chosen]
        if inverse and code >= 4:
            transformed = torch.flip(transformed, dims=(3,))
        transformed = torch.rot90(transformed, k=-(code % 4) if inverse else code % 4,
                                  dims=(2, 3))
        if not inverse and code >= 4:
            transformed = torch.flip(transformed, dims=(3,))
        output[chosen] = transformed
    return output


class TrainingMeasurements:
    """Builds each training batch's measurements from the clean images.

    With augmentation the clean image is transformed (flips and rotations) and measured again
    through the operator: a transformed measurement is the measurement of the transformed image
    only for symmetric kernels, so it is never used directly.

    Parameters
    ----------
    operator : LinearOperator
    noise_std : float
        Std of the Gaussian noise of every batch's measurements ``A y + noise``: the noise of
        the given measurements is replaced (the estimator's ``noise_std_``).
    augment : bool
        Random dihedral transforms (only flips and half turns for non-square images).
    seed : int
        Base seed; each epoch draws from ``SeedStream(seed).epoch(epoch)`` so that a run resumed
        from a checkpoint sees the same noise and transforms as an uninterrupted one.
    """

    def __init__(self, operator, noise_std, augment, seed):
        self.operator = operator
        self.noise_std = float(noise_std)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._generators = {}

    def __getstate__(self):
        # the generators are rebuilt from (seed, epoch); a CUDA generator could not be unpickled
        # on a machine without CUDA
        state = self.__dict__.copy()
        state["_generators"] = {}
        return state

    def start_epoch(self, epoch):
        """Reset the random streams to those of ``epoch`` (0-based)."""
        self.epoch = epoch
        self._generators = {}

    def generator(self, device):
        """The random stream of the current epoch on ``device`` (noise, transforms, probes)."""
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            self._generators[key] = generator.manual_seed(SeedStream(self.seed).epoch(self.epoch))
        return self._generators[key]

    def __call__(self, clean):
        """Training pair for one batch: the (transformed) clean images, measured afresh.

        Parameters
        ----------
        clean : torch.Tensor of shape (N, C, H, W)

        Returns
        -------
        measurement : torch.Tensor of shape (N, C, H', W')
        clean : torch.Tensor of shape (N, C, H, W)
        codes : torch.Tensor of shape (N,)
            The dihedral transform applied to each sample (zeros without augmentation).
        """
        generator = self.generator(clean.device)
        codes = torch.zeros(clean.shape[0], dtype=torch.long, device=clean.device)
        if self.augment:
            n_codes = 8 if clean.shape[2] == clean.shape[3] else 4
            codes = torch.randint(0, n_codes, (clean.shape[0],), generator=generator,
                                  device=clean.device)
            if n_codes == 4:
                codes = torch.tensor([0, 2, 4, 6], device=clean.device)[codes]
            clean = dihedral(clean, codes)
        measured = self.operator(clean)
        if self.noise_std > 0:
            noise = torch.randn(measured.shape, generator=generator, device=measured.device,
                                dtype=measured.dtype)
            measured = measured + self.noise_std * noise
        return measured, clean, codes


class FixedPointCache(nn.Module):
    """Warm starts: each training sample's last learned correction ``x* - x0``.

    The next solve of the sample starts at its default starting point (the Tikhonov solution of
    the new, freshly noised measurement) plus the stored correction: the part of the fixed point
    that the learned regularizer adds, which changes little from one epoch to the next, while
    the noise-dependent part is recomputed exactly. Corrections are stored in the sample's own
    orientation (the augmentation is undone) and restored in the orientation of the next draw.
    Only converged solves are stored; the cache is dropped with the estimator's net (a new
    ``fit``), replaced when continued training gets other images (see :meth:`matches`), and
    holds one image per training sample. It is a module with buffers, saved with the weights.

    Parameters
    ----------
    n_samples : int
    image_shape : tuple (C, H, W)
    device : torch device
    """

    def __init__(self, n_samples, image_shape, device=None):
        super().__init__()
        # buffers: saved with the module's weights (checkpoints, resume) and moved with it
        self.register_buffer("points", torch.zeros((n_samples, *image_shape), device=device))
        self.register_buffer("valid", torch.zeros(n_samples, dtype=torch.bool, device=device))
        # fingerprint of the training images: continued training on other images starts afresh
        self.register_buffer("signature", torch.zeros(3, dtype=torch.float64, device=device))

    @classmethod
    def for_data(cls, clean, device=None):
        """An empty cache for the training images ``clean`` (n, C, H, W)."""
        cache = cls(len(clean), tuple(clean.shape[1:]), device=device)
        cache.signature.copy_(data_signature(clean))
        return cache

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # a checkpoint's warm starts belong to the images (the process's shard) they were made
        # for: written for other images or another shard (e.g. by another process of a
        # distributed run), they are not loaded and this cache stays as it is
        points, signature = state_dict.get(prefix + "points"), state_dict.get(prefix + "signature")
        if points is not None and signature is not None and (
                tuple(points.shape) != tuple(self.points.shape)
                or not torch.equal(signature.cpu(), self.signature.cpu())):
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def matches(self, clean):
        """Whether ``clean`` (n, C, H, W) are the images this cache was made for."""
        return (tuple(clean.shape) == tuple(self.points.shape)
                and torch.equal(data_signature(clean), self.signature.cpu()))

    def start(self, index, codes, default):
        """Starting points: ``default`` (N, C, H, W) plus the cached correction where valid."""
        valid = self.valid[index]
        if not bool(valid.any()):
            return default
        correction = dihedral(self.points[index], codes) * valid.reshape(-1, 1, 1, 1)
        return default + correction

    def store(self, index, codes, solutions, starts, converged):
        """Remember ``solutions - starts`` (N, C, H, W) of the converged samples ``index``."""
        keep = converged.to(index.device)
        if bool(keep.any()):
            chosen = index[keep]
            self.points[chosen] = dihedral(solutions[keep] - starts[keep], codes[keep],
                                           inverse=True)
            self.valid[chosen] = True


def data_signature(images):
    """Order-sensitive fingerprint (3 float64 values) of training images (n, C, H, W)."""
    values = images.detach().to("cpu", torch.float64).flatten(1)
    sums = values.sum(1)
    weights = torch.arange(1, len(values) + 1, dtype=torch.float64)
    return torch.stack([sums.sum(), (weights * sums).sum(), values.square().sum()])


_SAME_AS_MODULE_ = "<the module_ attribute>"


class EquilibriumNet(NeuralNetRegressor):
    """``NeuralNetRegressor`` whose training step synthesises measurements, records solver
    statistics and skips batches whose solve diverged or whose loss is not finite.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNetRegressor`.
    training_measurements : TrainingMeasurements
    max_skipped : int, default 10
        Consecutive skipped batches after which training stops with :class:`DivergenceError`.
    divergence_hint : str, default ""
        Appended to the error message (the step size and contraction estimate).
    jacobian_penalty : float, default 0.0
        Weight of :func:`~implicit_inverse.equilibrium.jacobian_penalty` at the fixed points,
        added to the loss of every batch (its value is recorded as ``jac`` per epoch).

    Notes
    -----
    The warm starts of the training solves are the module's ``cache``
    (:class:`ReconstructionModule`), so they travel with the weights.
    """

    def __init__(self, *args, training_measurements=None, max_skipped=10, divergence_hint="",
                 jacobian_penalty=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.training_measurements = training_measurements
        self.max_skipped = max_skipped
        self.divergence_hint = divergence_hint
        self.jacobian_penalty = jacobian_penalty
        self.consecutive_skipped_ = 0

    def __getstate__(self):
        state = super().__getstate__()
        # ``module`` is the instance that became ``module_``: skorch pickles ``module_`` apart
        # (mapped to the CPU when CUDA is missing); pickling it again as the plain ``module``
        # parameter would store the weights twice, with their device, and break loading a GPU
        # model on a CPU-only machine
        if state.get("module") is getattr(self, "module_", None):
            state["module"] = _SAME_AS_MODULE_
        # a learning-rate scheduler holds the optimizer, which skorch pickles apart (mapped to
        # the CPU when needed); the scheduler is rebuilt at the start of every training call
        for key in ("callbacks", "callbacks_"):
            if isinstance(state.get(key), list):
                state[key] = [_without_scheduler(entry) for entry in state[key]]
        return state

    def __setstate__(self, state):
        same = isinstance(state.get("module"), str) and state["module"] == _SAME_AS_MODULE_
        super().__setstate__(state)
        if same:
            self.module = self.module_

    def save_params(self, *args, **kwargs):
        """skorch's ``save_params`` (what ``Checkpoint`` calls), on the main process only."""
        if distributed.is_main_process():
            super().save_params(*args, **kwargs)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Start a history row and derive this epoch's shuffling and noise from its index."""
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                               **kwargs)
        epoch = len(self.history) - 1
        if self.training_measurements is not None:
            self.training_measurements.start_epoch(epoch)
            shuffle = getattr(self, "iterator_train__generator", None)
            if shuffle is not None:
                shuffle.manual_seed(SeedStream(self.training_measurements.seed).shuffle(epoch))

    def _probe_generator(self):
        if self.training_measurements is None:
            return None
        return self.training_measurements.generator(self.device)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        inputs, clean = batch
        measurement = inputs["measurement"].to(self.device)
        index = inputs["index"].to(self.device)
        clean = clean.to(self.device)
        codes = torch.zeros_like(index)
        if self.training_measurements is not None:
            measurement, clean, codes = self.training_measurements(clean)
        layer = self.module_.layer
        # JFB's differentiable step also serves the Jacobian penalty: one evaluation, one graph
        layer.gradient.share_penalty_step(self.jacobian_penalty > 0)
        x0 = None
        cache = getattr(self.module_, "cache", None)
        if cache is not None:
            with torch.no_grad():
                default_start = self.module_.initial_point(measurement)
                x0 = cache.start(index, codes, default_start)
        prediction = self.module_(measurement, x0=x0)
        loss = self.get_loss(prediction, clean, X=measurement, training=True)
        stats = self.module_.last_stats
        record_solver_stats(self.history, stats, prefix="fp")
        backward_stats_before = layer.gradient.last_stats
        diverged = bool(stats.diverged.any())
        objective = loss
        if self.jacobian_penalty > 0 and not diverged:
            penalty = layer.gradient.jacobian_penalty(
                layer.map, self.module_.last_solution, measurement, output=prediction,
                generator=self._probe_generator())
            self.history.record_batch("jac", float(penalty.detach()))
            objective = loss + self.jacobian_penalty * penalty
        skipped = diverged or not bool(torch.isfinite(objective))
        skipped = distributed.any_process(skipped, self.device)  # skipped everywhere or nowhere
        self.history.record_batch("skipped", int(skipped))  # recorded even if training stops
        if cache is not None and not skipped:
            # a skipped batch's outputs may be NaN: they must not become the next warm starts
            cache.store(index, codes, self.module_.last_solution, default_start,
                        stats.converged & ~stats.diverged)
        if skipped:
            fallback = self.module_.last_solution
            loss = self.get_loss(fallback, clean, X=measurement, training=False).detach()
            if not bool(torch.isfinite(loss)):
                loss = torch.zeros((), device=self.device)
            loss = distributed.average(loss)
            self._count_skipped()
            return {"loss": loss, "y_pred": prediction}
        objective.backward()
        loss = distributed.average_gradients(self.module_, loss)
        backward_stats = layer.gradient.last_stats
        if backward_stats is not None and backward_stats is not backward_stats_before:
            record_solver_stats(self.history, backward_stats, prefix="bw")
        if not _gradients_are_finite(self.module_):
            # a finite loss can still backpropagate to NaN (e.g. through an iterative
            # preconditioner): no parameter moves, the batch counts as skipped
            self.optimizer_.zero_grad(set_to_none=True)
            self.history.record_batch("skipped", 1)
            self._count_skipped()
        else:
            self.consecutive_skipped_ = 0
        return {"loss": loss, "y_pred": prediction}

    def _count_skipped(self):
        self.consecutive_skipped_ += 1
        if self.consecutive_skipped_ >= self.max_skipped:
            raise DivergenceError(
                f"training stopped: the fixed-point solve diverged (or the loss or its gradient "
                f"was not finite) on {self.consecutive_skipped_} consecutive batches. "
                f"{self.divergence_hint} The parameters are those of the last good batch.")


def _gradients_are_finite(module):
    """Whether every parameter gradient of ``module`` is finite (missing gradients count).

    One device synchronisation, whatever the number of parameters."""
    flags = [torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None]
    return not flags or bool(torch.stack(flags).all())


def _without_scheduler(entry):
    """``entry`` (a callback or a (name, callback) pair) with any ``LRScheduler`` copied
    without its live scheduler; other callbacks unchanged."""
    if isinstance(entry, tuple):
        name, callback = entry
        return name, _without_scheduler(callback)
    if isinstance(entry, LRScheduler) and hasattr(entry, "lr_scheduler_"):
        entry = copy.copy(entry)
        del entry.lr_scheduler_
    return entry


def record_solver_stats(history, stats, prefix):
    """Write one batch's solver statistics into a skorch history."""
    summary = stats.summary()
    history.record_batch(f"{prefix}_iter", summary["iterations_mean"])
    history.record_batch(f"{prefix}_iter_max", summary["iterations_max"])
    history.record_batch(f"{prefix}_conv", summary["converged_share"])
    history.record_batch(f"{prefix}_res", summary["residual_max"])


class SolverStatsLog(Callback):
    """Epoch summary of the batch statistics, shown in skorch's table and kept in the history.

    Per epoch: ``fp_iter`` (mean forward iterations), ``fp_iter_max``, ``fp_conv`` (share of
    samples converged), ``fp_res`` (largest final residual), ``skipped`` (batches skipped), and
    ``bw_*`` for the backward solve of the exact gradient, ``jac`` (mean Jacobian penalty, when
    it is used). Warns at the end of training when most batches of the last epoch reached the
    iteration cap.
    """

    KEYS = {"fp_iter": np.mean, "fp_iter_max": np.max, "fp_conv": np.mean, "fp_res": np.max,
            "bw_iter": np.mean, "bw_iter_max": np.max, "bw_conv": np.mean, "skipped": np.sum,
            "jac": np.mean}

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1, "batches"]
        for key, reduce in self.KEYS.items():
            values = [batch[key] for batch in batches if key in batch]
            if values:
                net.history.record(key, float(reduce(values)))

    def on_train_end(self, net, **kwargs):
        if not len(net.history):
            return
        batches = net.history[-1, "batches"]
        layer = net.module_.layer
        cap, name = ((layer.max_iter, "max_iter") if layer.train_max_iter is None
                     else (layer.train_max_iter, "train_max_iter"))
        capped = [batch["fp_iter_max"] >= cap for batch in batches if "fp_iter_max" in batch]
        if capped and np.mean(capped) > 0.5:
            warnings.warn(
                f"in the last epoch {int(np.sum(capped))} of {len(capped)} training batches hit "
                f"{name}={cap} in the fixed-point solve: the map is not contracting well; "
                f"reduce eta or raise {name}", ConvergenceWarning, stacklevel=2)
