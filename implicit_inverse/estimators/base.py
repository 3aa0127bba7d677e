"""``ImplicitRegressor``: a scikit-learn estimator that trains an implicit layer through skorch."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils.validation import check_is_fitted

from .._image_regressor import (ImageRegressorMixin, check_channels, validate_measurements,
                                validate_training_pair)
from .._runtime import SeedStream, float32_default, resolve_device, torch_threads
from .._validation import warn_if_out_of_range
from ..equilibrium import SolverStats
from ..equilibrium.solvers import warn_if_unconverged
from ..networks.specs import DEFAULT_REGULARIZER
from ..operators.specs import resolve_operator
from ..training import distributed, streaming
from ..training.losses import CRITERIA
from ..training.pretraining import pretrain
from ..training.recipe import ModelSpec, build_prior
from ..training.warm_start import FixedPointCache
from . import persistence
from ._network import divergence_hint, make_net
from ._numbers import (check_regularizer, fit_numbers, noise_level, safe_step,
                       warn_if_not_contractive)
from ._parameters import PARAMETER_CONSTRAINTS, SHARED_PARAMETERS_DOC, check_scalar_params
from ._pretrained import pretrained
from ._streaming_fit import fit_dataset


class ImplicitRegressor(ImageRegressorMixin, BaseEstimator):
    __doc__ = """Image-to-image regressor whose output is the fixed point of a learned DE-GRAD map.

    ``x* = T(x*; d)`` with ``T(x; d) = x - eta P (A^T (A x - d) + R_theta(x))``, trained with
    skorch on pairs (measurements ``X``, clean images ``y``).

    Parameters
    ----------
    operator : LinearOperator or str
        The forward model ``A``: ``X`` holds measurements ``A y + noise``. A kernel spec such as
        ``"gaussian:9,1.6"``, ``"disk:2"`` or ``"motion:9,30"`` names the circular ``Blur`` of
        that kernel (:func:`~implicit_inverse.operators.specs.resolve_operator`).
    """ + SHARED_PARAMETERS_DOC + """
    Attributes
    ----------
    net_ : EquilibriumNet
        The owned skorch ``NeuralNetRegressor`` (its ``history`` holds loss and solver stats).
    operator_ : LinearOperator
        The operator used (a copy of ``operator``).
    lam_ : float
        The Tikhonov weight used (with a pretrained prior: the calibrated data weight).
    noise_std_ : float
        Noise std of the training measurements (estimated when ``noise_std="auto"``).
    regularizer_ : torch.nn.Module
        The trained regularizer (DE-GRAD) or denoiser (plug-and-play) that ``predict`` uses.
    prior_sigma_ : float or None
        The denoiser strength of a pretrained prior's map as calibrated (trained further with
        ``learn_step``); None for a DnCNN or module regularizer.
    spec_ : ModelSpec
        The model's recipe, its fitted numbers resolved (``lam_``, ``prior_sigma_``): the
        network trains and ``predict`` runs ``build_model(spec_)``
        (:mod:`~implicit_inverse.training.recipe`).
    prior_scores_ : dict of float to float
        With a pretrained prior and ``lam="auto"``: the calibration PSNR (dB) of each strength
        factor tried (see :func:`~implicit_inverse.training.calibration.calibrate_prior`).
    n_channels_ : int
    image_shape_ : tuple (C, H, W)
        Shape of one training measurement.
    n_features_in_ : int
        Values per measurement.
    n_iter_ : int
        Epochs trained.

    Notes
    -----
    ``score`` is the mean PSNR in dB (``data_range=1``), not the R^2 of other regressors.
    ``predict`` returns the layout, array kind (numpy or torch) and dtype of its input; the
    computation runs in float32.
    """

    _parameter_constraints = PARAMETER_CONSTRAINTS
    default_prior = None
    """The shipped prior ``from_pretrained`` uses when given no name (None: the package's
    default denoiser prior, :data:`~implicit_inverse.networks.priors.DEFAULT_PRIOR`)."""

    def __init__(self, operator=None, *, regularizer=DEFAULT_REGULARIZER, eta=1.0, noise_std="auto",
                 gradient="jfb", solver="anderson", max_iter=100, tol=1e-4, train_max_iter=30,
                 train_tol=1e-3, lam="auto",
                 precondition=True, learn_step=True, augment=True, reuse_fixed_points=True,
                 loss="psnr", jacobian_penalty=2.0, pretrain_epochs=0, max_epochs=40,
                 batch_size=32,
                 lr=5e-4, lr_schedule="cosine", optimizer=torch.optim.Adam, device="cpu",
                 random_state=None,
                 verbose=0, callbacks=None, warm_start=False, image_shape=None, n_threads=None,
                 precision="float32"):
        self.operator = operator
        self.regularizer = regularizer
        self.eta = eta
        self.noise_std = noise_std
        self.gradient = gradient
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.train_max_iter = train_max_iter
        self.train_tol = train_tol
        self.lam = lam
        self.precondition = precondition
        self.learn_step = learn_step
        self.augment = augment
        self.reuse_fixed_points = reuse_fixed_points
        self.loss = loss
        self.jacobian_penalty = jacobian_penalty
        self.pretrain_epochs = pretrain_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.image_shape = image_shape
        self.n_threads = n_threads
        self.precision = precision

    # -- what subclasses choose -------------------------------------------------------------
    def _make_operator(self):
        """The forward model: ``operator`` (a kernel spec names a ``Blur``), else the default."""
        if self.operator is None:
            return self._default_operator()
        return resolve_operator(self.operator)

    def _default_operator(self):
        """The forward model when ``operator`` is None; task estimators build theirs."""
        raise ValueError(f"operator is required for {type(self).__name__}: pass a "
                         "LinearOperator such as Blur(gaussian_kernel(9, 1.5)) or a kernel spec "
                         "such as 'gaussian:9,1.5'")

    # -- fit ----------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the implicit model on measurements ``X`` and clean images ``y``.

        Parameters
        ----------
        X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F), or torch.utils.data.Dataset
            Measurements, real floating values. Or a map-style ``Dataset`` of clean images
            (items: tensors or arrays (C, H, W) or (H, W), or tuples whose first element is
            one, as torchvision's ``(image, label)``), streamed batch by batch and never held in
            memory whole, such as :class:`~implicit_inverse.datasets.PatchDataset`. Each batch
            is measured through the operator with fresh noise of std ``noise_std``, which must
            then be a float; ``lam="auto"`` is tuned on the first 256 items measured with
            seeded noise of that std; ``reuse_fixed_points`` is ignored (no warm starts: the
            items of a streamed dataset may change between epochs, and a model trained on
            arrays that continues on a Dataset drops its warm starts); ``set_epoch(epoch)`` of
            the dataset, if it has one, is called at each epoch start (0-based, counted over
            ``partial_fit`` calls too). Not supported under ``torch.distributed``.
        y : array-like of shape (n, H, W), (n, C, H, W) or (n, F'), or None
            Clean images, ``A`` maps them to the shape of ``X``. Required for arrays; must be
            None when ``X`` is a Dataset.

        Returns
        -------
        self
        """
        return self._fit(X, y, epochs=None)

    def partial_fit(self, X, y=None):
        """Train for one more epoch (the first call initialises the model as ``fit`` does).

        Parameters
        ----------
        X, y : as in :meth:`fit` (arrays, or a Dataset with ``y=None``)

        Returns
        -------
        self
        """
        if not hasattr(self, "net_"):
            self._validate_params()
        return self._fit(X, y, epochs=1)

    def _fit(self, X, y, epochs):
        check_scalar_params(self)
        if streaming.is_dataset(X):
            return fit_dataset(self, X, y, epochs)
        device, continuing = self._fit_start(epochs)
        image_shape = self.image_shape_ if continuing else self.image_shape
        operator = self._fit_operator(continuing)
        measurements, clean = validate_training_pair(X, y, operator, image_shape)
        warn_if_out_of_range(measurements, "X")
        # n_threads covers the whole fit: the lam search and the power iterations too
        with float32_default(), torch_threads(self.n_threads):
            if continuing:
                check_channels(measurements, self.n_channels_)
                self._match_fixed_point_cache(distributed.own(clean))
            else:
                self._initialise(measurements, clean, operator, device)
            # under torch.distributed each process trains on its shard (see distributed)
            measurements, clean = distributed.own(measurements), distributed.own(clean)
            inputs = {"measurement": measurements, "index": torch.arange(len(measurements))}
            self.net_.partial_fit(inputs, clean, epochs=self.max_epochs if epochs is None
                                  else epochs)
        self.n_iter_ = len(self.net_.history)
        return self

    def _fit_start(self, epochs):
        """``(device, continuing)`` of a ``fit`` (``epochs=None``) or ``partial_fit`` call:
        the device to train on, and whether the fitted model trains further."""
        device = distributed.setup(resolve_device(self.device))
        return device, hasattr(self, "net_") and (self.warm_start or epochs is not None)

    def _fit_operator(self, continuing):
        """The operator a fit measures with: the fitted one when training continues, else a
        copy of the one the parameters name."""
        return self.operator_ if continuing else copy.deepcopy(self._make_operator())

    def _initialise(self, measurements, clean, operator, device, reuse_fixed_points=True):
        """Fit the numbers of the model (``noise_std_``, ``lam_``, ``prior_sigma_``), resolve
        them into ``spec_`` and build the network around ``build_model(spec_)``."""
        # a refit that fails below must not leave the previous net_ beside the new attributes
        self.__dict__.pop("net_", None)
        self.operator_ = operator
        self.image_shape_ = tuple(measurements.shape[1:])
        self.n_channels_ = measurements.shape[1]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.noise_std_ = noise_level(self, measurements, clean, operator)
        recipe = self._recipe(operator, SeedStream.of(self.random_state).seed)
        numbers = fit_numbers(self, recipe, measurements, clean, operator)
        if numbers.scores is not None:
            self.prior_scores_ = numbers.scores
        seed, self.lam_, self.noise_std_ = distributed.agree(
            (recipe.seed, numbers.lam, self.noise_std_), device)
        self.prior_sigma_ = numbers.sigma
        self.spec_ = recipe.replace(lam=self.lam_, sigma=self.prior_sigma_, seed=seed)
        bound = safe_step(self, operator, clean.shape)
        prior = numbers.prior
        if prior is None:
            prior = build_prior(self.spec_)
            check_regularizer(prior, clean[:1])
            warn_if_not_contractive(self, bound)
        cache = FixedPointCache.for_data(distributed.own(clean)) \
            if self.reuse_fixed_points and reuse_fixed_points else None
        self.net_ = make_net(self, device, prior=prior, cache=cache,
                             hint=divergence_hint(self.eta, bound))
        self.pretraining_history_ = None
        if self.pretrain_epochs:
            # each process pretrains on its own shard; rank 0's weights are broadcast below
            own = distributed.own(measurements)
            sampler = self.net_.training_measurements
            inputs = {"measurement": own, "index": torch.arange(len(own))}
            self.pretraining_history_ = pretrain(
                self.net_.module_.fixed_point_map, inputs, distributed.own(clean),
                sampler=sampler, criterion=CRITERIA[self.loss],
                optimizer=self.optimizer, lr=self.lr, epochs=self.pretrain_epochs,
                batch_size=distributed.local_batch_size(self.batch_size), device=device,
                generator=torch.Generator().manual_seed(
                    SeedStream(sampler.seed).pretraining_shuffle()))
        distributed.broadcast_parameters(self.net_.module_)

    def _recipe(self, operator, seed):
        """The :class:`ModelSpec` of the hyperparameters, its fitted numbers not yet resolved."""
        return ModelSpec(operator, regularizer=self.regularizer, channels=self.n_channels_,
                         lam=None, eta=self.eta, precondition=self.precondition,
                         learn_step=self.learn_step, solver=self.solver, gradient=self.gradient,
                         max_iter=self.max_iter, tol=self.tol,
                         train_max_iter=self.train_max_iter, train_tol=self.train_tol,
                         precision=self.precision, seed=seed)

    @property
    def regularizer_(self):
        """The trained regularizer module (DE-GRAD) or denoiser (plug-and-play) that ``predict``
        uses, without any mixed-precision wrapper."""
        check_is_fitted(self, "net_")
        return self.net_.module_.regularizer

    # -- predict ------------------------------------------------------------------------------
    def predict(self, X, return_stats=False):
        """Reconstruct images from measurements.

        Parameters
        ----------
        X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F)
            Measurements.
        return_stats : bool, default False
            Deprecated: use :meth:`predict_with_stats`, which returns ``(images, stats)``.
            True still returns that pair, with a ``FutureWarning``.

        Returns
        -------
        images : array of shape (n, H, W), (n, C, H, W) or (n, F_out)
            Same layout, kind and dtype as ``X``. Never NaN: a sample whose solve did not
            converge gets its lowest-residual iterate (at worst its Tikhonov starting point) and
            a ``ConvergenceWarning`` is emitted.
        """
        images, stats = self._predict(X)
        if return_stats:
            warnings.warn("predict(X, return_stats=True) is deprecated and will be removed in "
                          "the next release: use predict_with_stats(X), which returns "
                          "(images, stats)", FutureWarning, stacklevel=2)
            return images, stats
        return images

    def predict_with_stats(self, X):
        """Reconstruct images from measurements, with the statistics of their solves.

        Parameters
        ----------
        X : array-like of shape (n, H', W'), (n, C, H', W') or (n, F)
            Measurements.

        Returns
        -------
        images : array of shape (n, H, W), (n, C, H, W) or (n, F_out)
            As :meth:`predict` returns them.
        stats : SolverStats
            Per sample (tensors of shape (n,)): ``converged`` flags, iterations, residuals.
        """
        return self._predict(X)

    def _predict(self, X):
        """``(images, stats)`` of :meth:`predict_with_stats`."""
        check_is_fitted(self, "net_")
        measurements, layout = validate_measurements(X, self)
        warn_if_out_of_range(measurements, "X")
        module = self.net_.module_
        module.eval()
        outputs, parts = [], []
        chunk = 4 * self.batch_size
        with torch_threads(self.n_threads), float32_default(), torch.no_grad():
            for start in range(0, measurements.shape[0], chunk):
                batch = measurements[start:start + chunk].to(self.net_.device)
                output = module(batch).cpu()
                if not bool(torch.isfinite(output).all()):
                    # the solver returns finite iterates from a finite start: only a start that
                    # overflows float32 (absurdly large measurements) gets here
                    raise ValueError(
                        f"X has values of magnitude up to {float(batch.abs().max()):.3g}: the "
                        "starting point of the solve overflows float32; images must be scaled "
                        "to [0, 1]")
                outputs.append(output)
                parts.append(module.last_stats)
        stats = SolverStats.concatenate(parts)
        warn_if_unconverged(stats, stacklevel=3)
        return layout.restore(torch.cat(outputs)), stats

    @property
    def history(self):
        """The skorch history of training (per epoch: loss, duration, solver statistics)."""
        check_is_fitted(self, "net_")
        return self.net_.history

    # -- persistence and continued training --------------------------------------------------
    def save(self, path):
        """Write the estimator (hyperparameters, fitted attributes and weights) to ``path``.

        The file is written beside ``path`` and then renamed over it, so a failed save never
        truncates an existing file. See :mod:`implicit_inverse.estimators.persistence`.

        Parameters
        ----------
        path : str or os.PathLike
        """
        persistence.save(self, path)

    @classmethod
    def from_pretrained(cls, operator=None, *, noise_std, name=None, channels=1,
                        fixed_point_map="proximal", **params):
        """An estimator around a shipped denoising prior, ready to ``predict`` without training.

        The map is plug-and-play proximal gradient,
        ``x <- D_sigma(x - eta (A^T A + lam I)^{-1} A^T (A x - d))``, with the prior ``D``
        (or, with ``fixed_point_map="red"``, DE-GRAD with the RED gradient ``lam (x - D(x))``).
        With ``lam="auto"`` (the default) ``lam`` and ``sigma`` are calibrated for this
        operator and noise level by restoring four 64x64 crops of the prior's own training
        photos, measured through ``operator`` with noise of std ``noise_std`` (a few seconds;
        :func:`~implicit_inverse.training.calibration.calibrate_prior`): no data of the user's
        is needed. ``fit`` with ``warm_start=True``, or ``partial_fit``, then fine-tunes the
        prior on the user's pairs (JFB by default).

        Parameters
        ----------
        operator : LinearOperator or None
            The forward model (task estimators build their default when None).
        noise_std : float >= 0
            Noise std of the measurements to restore (pixel values in [0, 1]).
        name : str or None
            A prior of :func:`~implicit_inverse.networks.priors.available_priors`; None is the
            class's :attr:`default_prior` (for deblurring, ``"unet-gray-kernels"``: the
            equilibrium model trained across blur kernels), or the package's default denoiser
            prior when the class names none.
        channels : int, default 1
            Channels of the images to restore (3 for RGB: a grayscale prior restores each
            channel).
        fixed_point_map : {"proximal", "red"}, default "proximal"; see ``docs/priors.rst``
        **params
            Further hyperparameters (``max_iter``, ``tol``, ``device``, ``lam``, ...).

        Returns
        -------
        estimator : instance of ``cls``
            Fitted: images of any size with ``channels`` channels, shaped (n, H, W) or
            (n, C, H, W), can be restored.
        """
        return pretrained(cls, operator, noise_std=noise_std, name=name, channels=channels,
                          fixed_point_map=fixed_point_map, params=params)

    @classmethod
    def load(cls, path, *, params=None, allow_pickle=False):
        """Read an estimator written by :meth:`save`; no code from the file is run.

        A model trained on a GPU loads on a machine without CUDA: its tensors are mapped to
        the CPU and a ``device`` naming CUDA becomes ``"cpu"`` (with a warning).

        Parameters
        ----------
        path : str or os.PathLike
        params : dict or None, default None
            Values the file cannot store (objects of your own classes, such as a custom
            regularizer module, whose weights are then loaded into a copy of it).
        allow_pickle : bool, default False
            Unsafe: also read files of the old pickle format (version 1), which run code while
            loading. Only for files you trust; save them again to convert them.

        Returns
        -------
        estimator : instance of ``cls`` (or of a subclass)
        """
        return persistence.load(path, expected_class=cls, params=params,
                                allow_pickle=allow_pickle)

    def __setstate__(self, state):
        super().__setstate__(state)
        # skorch maps the network to the CPU when CUDA is missing; keep `device` consistent
        persistence.use_available_device(self)

    def _match_fixed_point_cache(self, clean):
        """Start a fresh warm-start cache when continued training gets other images (or its
        first images, for a model from :meth:`from_pretrained`)."""
        module = self.net_.module_
        cache = getattr(module, "cache", None)
        if (cache is None and self.reuse_fixed_points and self.n_iter_ == 0) or \
                (cache is not None and not cache.matches(clean)):
            module.cache = FixedPointCache.for_data(clean).to(self.net_.device)
