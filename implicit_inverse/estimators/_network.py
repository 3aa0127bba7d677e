"""The skorch network of an implicit estimator, built from its recipe: by ``fit`` and by a load.

:func:`make_net` builds ``build_model(estimator.spec_)`` inside the skorch net that trains it
(batch sampling, callbacks, optimizer); :func:`restore_net` builds the same net for a fitted
estimator read from a model file and loads its saved state into it.
"""

from __future__ import annotations

import copy

import torch
from skorch.callbacks import LRScheduler, ProgressBar
from skorch.history import History
from torch.optim.lr_scheduler import CosineAnnealingLR

from .._runtime import resolve_device
from ..training import distributed, streaming
from ..training.engine import EquilibriumNet, ReconstructionModule
from ..training.losses import CRITERIA
from ..training.measurements import TrainingMeasurements
from ..training.recipe import build_model
from ..training.stats import SolverStatsLog
from ..training.warm_start import FixedPointCache


def divergence_hint(eta, bound):
    """What a :class:`~implicit_inverse.estimators.DivergenceError` advises.

    Parameters
    ----------
    eta : float
        The step size.
    bound : float
        The step sizes in (0, bound) make the linear part of the map contract.

    Returns
    -------
    str
    """
    return (f"eta={eta}: the linear part of the map contracts for eta in (0, {bound:.3g}); "
            "reduce eta or max_epochs/lr if the learned regularizer grows.")


def make_net(estimator, device, *, prior=None, cache=None, hint=""):
    """The initialised skorch network that trains ``build_model(estimator.spec_)``.

    Parameters
    ----------
    estimator : ImplicitRegressor
        With its fitted numbers: ``spec_``, ``operator_`` and ``noise_std_``.
    device : str or torch.device
    prior : torch.nn.Module or None, default None
        The prior of the map (None: the one ``spec_`` names, freshly built).
    cache : FixedPointCache or None, default None
        Warm starts of the training solves.
    hint : str, default ""
        Appended to the message of a divergence (see :func:`divergence_hint`).

    Returns
    -------
    EquilibriumNet
    """
    layer = build_model(estimator.spec_, device, prior=prior)
    sampler = TrainingMeasurements(estimator.operator_, noise_std=estimator.noise_std_,
                                   augment=estimator.augment,
                                   seed=distributed.rank_seed(estimator.spec_.seed))
    callbacks = [("solver_stats", SolverStatsLog()), ("set_epoch", streaming.SetEpoch())]
    if estimator.lr_schedule == "cosine":
        callbacks.append(("lr_schedule", LRScheduler(CosineAnnealingLR,
                                                     T_max=estimator.max_epochs)))
    if estimator.verbose >= 2:
        callbacks.append(("progress", ProgressBar()))
    callbacks += [(f"user_{i}", callback) for i, callback in
                  enumerate(copy.deepcopy(estimator.callbacks or []))]
    net = EquilibriumNet(
        ReconstructionModule(layer, cache=cache), criterion=CRITERIA[estimator.loss],
        optimizer=estimator.optimizer, lr=estimator.lr, max_epochs=estimator.max_epochs,
        batch_size=distributed.local_batch_size(estimator.batch_size), train_split=None,
        device=device, callbacks=callbacks, verbose=estimator.verbose,
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(sampler.seed),
        training_measurements=sampler, divergence_hint=hint,
        jacobian_penalty=estimator.jacobian_penalty)
    return net.initialize()


def restore_net(estimator, saved):
    """The fitted network of ``estimator``, rebuilt from its recipe with the ``saved`` state.

    Parameters
    ----------
    estimator : ImplicitRegressor
        With its hyperparameters and fitted numbers (``spec_``, ...) as read.
    saved : dict
        ``prior`` (the prior module, or None: the one ``spec_`` names), ``cache`` (the shape
        (C, H, W) of the warm starts, or None: no cache), ``hint``, ``state`` (the module's
        state dict without the warm starts), ``frozen`` (names of parameters that do not train),
        ``optimizer`` (the optimizer's state dict), ``history`` (a list of epoch dicts) and
        ``skipped`` (consecutive skipped batches).

    Returns
    -------
    EquilibriumNet
        On the estimator's device; its warm-start cache (if any) is empty.

    Raises
    ------
    ValueError
        The state does not fit the network the recipe builds.
    """
    device = resolve_device(estimator.device)
    cache = None if saved["cache"] is None else FixedPointCache(0, tuple(saved["cache"]),
                                                                device=device)
    net = make_net(estimator, device, prior=saved["prior"], cache=cache, hint=saved["hint"])
    module = net.module_
    missing, unexpected = module.load_state_dict(saved["state"], strict=False)
    missing = [name for name in missing if not name.startswith("cache.")]
    if missing or unexpected:
        raise ValueError(f"the saved weights do not fit the model's recipe (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]})")
    frozen = set(saved["frozen"])
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name not in frozen)
    net.optimizer_.load_state_dict(saved["optimizer"])
    net.history_ = History(saved["history"])
    net.consecutive_skipped_ = int(saved["skipped"])
    return net
