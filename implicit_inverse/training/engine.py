"""The skorch side of the estimators: the module skorch trains and the training step.

Batches are measured afresh by :mod:`.measurements`, warm-started from :mod:`.warm_start` and
their solver statistics recorded by :mod:`.stats`.

Nothing here is public: :class:`~implicit_inverse.estimators.base.ImplicitRegressor` builds these
objects in ``fit`` and owns them.
"""

from __future__ import annotations

import copy

import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import LRScheduler
from torch import nn

from .._runtime import SeedStream
from ..networks.precision import MixedPrecision
from . import distributed
from .stats import record_solver_stats


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

    @property
    def fixed_point_map(self):
        """The map ``T`` whose fixed points the module returns."""
        return self.layer.map

    @property
    def solve_options(self):
        """The caps and tolerances of the solves, a dict of plain values: ``max_iter``, ``tol``
        (prediction) and ``train_max_iter``, ``train_tol`` (training; None: the others)."""
        layer = self.layer
        return {"max_iter": layer.max_iter, "tol": layer.tol,
                "train_max_iter": layer.train_max_iter, "train_tol": layer.train_tol}

    @property
    def backward_stats(self):
        """:class:`~implicit_inverse.equilibrium.SolverStats` of the gradient strategy's last
        backward solve (None for strategies without one)."""
        return self.layer.gradient.last_stats

    def initial_point(self, measurement):
        """The map's default starting points for ``measurement`` (N, C, H', W')."""
        return self.layer.map.initial_point(measurement)

    def share_penalty_step(self, share):
        """Ask the next training call to keep what :meth:`jacobian_penalty` can reuse (JFB's
        differentiable step: one evaluation and one graph serve both)."""
        return self.layer.gradient.share_penalty_step(share)

    def jacobian_penalty(self, measurement, output, generator=None):
        """The Jacobian penalty of the map at the fixed points of the last call.

        Parameters
        ----------
        measurement : torch.Tensor of shape (N, C, H', W')
            The measurements of the last call.
        output : torch.Tensor of shape (N, C, H, W)
            What the last call returned (its graph may be reused).
        generator : torch.Generator or None
            Stream of the Hutchinson probe.

        Returns
        -------
        torch.Tensor
            0-d, differentiable (:func:`~implicit_inverse.equilibrium.jacobian_penalty`).
        """
        return self.layer.gradient.jacobian_penalty(self.layer.map, self.last_solution,
                                                    measurement, output=output,
                                                    generator=generator)

    def forward(self, measurement, x0=None):
        """Reconstructions of ``measurement`` shaped like ``A^T measurement``.

        ``x0`` optionally gives each sample's starting point (a warm start).
        """
        output = self.layer(measurement, x0=x0)
        self.last_solution = output.detach()
        return output


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
        added to the loss of every training batch by :meth:`get_loss` (its value is recorded
        as ``jac`` per epoch; ``train_loss`` is the sum).

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

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The criterion; in training, plus ``jacobian_penalty`` times the Jacobian penalty at
        the fixed points of the last solve (recorded as ``jac``), unless that solve diverged.

        Parameters
        ----------
        y_pred, y_true : torch.Tensor of shape (N, C, H, W)
        X : torch.Tensor of shape (N, C, H', W') or None
            The measurements ``y_pred`` was solved from (needed in training).
        training : bool, default False

        Returns
        -------
        torch.Tensor
            0-d: the objective a training step minimises (``train_loss``).
        """
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or self.jacobian_penalty <= 0 \
                or bool(self.module_.last_stats.diverged.any()):
            return loss
        penalty = self.module_.jacobian_penalty(X, y_pred, generator=self._probe_generator())
        self.history.record_batch("jac", float(penalty.detach()))
        return loss + self.jacobian_penalty * penalty

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        inputs, clean = batch
        measurement = inputs["measurement"].to(self.device)
        index = inputs["index"].to(self.device)
        clean = clean.to(self.device)
        codes = torch.zeros_like(index)
        if self.training_measurements is not None:
            measurement, clean, codes = self.training_measurements(clean)
        self.module_.share_penalty_step(self.jacobian_penalty > 0)
        x0 = None
        cache = getattr(self.module_, "cache", None)
        if cache is not None:
            with torch.no_grad():
                default_start = self.module_.initial_point(measurement)
                x0 = cache.start(index, codes, default_start)
        prediction = self.module_(measurement, x0=x0)
        stats = self.module_.last_stats
        record_solver_stats(self.history, stats, prefix="fp")
        backward_stats_before = self.module_.backward_stats
        loss = self.get_loss(prediction, clean, X=measurement, training=True)
        skipped = bool(stats.diverged.any()) or not bool(torch.isfinite(loss))
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
        loss.backward()
        loss = distributed.average_gradients(self.module_, loss)
        backward_stats = self.module_.backward_stats
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
