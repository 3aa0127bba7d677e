"""The hyperparameters of the implicit estimators: their shared documentation, their
constraints and the checks the constraints cannot express."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from torch import nn

from ..equilibrium import FixedPointSolver, GradientStrategy
from ..equilibrium.gradients import STRATEGIES
from ..equilibrium.solvers import SOLVERS
from ..networks.precision import PRECISIONS
from ..networks.specs import parse_regularizer
from ..operators import LinearOperator
from ..training.losses import CRITERIA

SHARED_PARAMETERS_DOC = """
    regularizer : str or torch.nn.Module, default "dncnn:5x24"
        The learned part of the map, built inside ``fit`` (so it can use the fitted ``lam_``) and
        available afterwards as ``regularizer_``:

        - ``"dncnn:DEPTHxWIDTH"``: ``R_theta = TikhonovPlusNetwork(DnCNN(DEPTH, WIDTH),
          alpha=lam_, scale=100 * lam_)``, ``alpha x`` plus a DnCNN whose output starts at
          zero, so the untrained model is exactly Tikhonov (the gain 100 makes the network's
          amplification by the preconditioner independent of the noise level).
          ``"dncnn:17x64"`` is the reference paper's size.
        - ``"pretrained"`` or ``"pretrained:NAME"``: a shipped denoising prior ``D`` (see
          :func:`~implicit_inverse.networks.priors.available_priors`) in the plug-and-play map
          ``x <- D_sigma(x - eta P A^T (A x - d))``
          (:class:`~implicit_inverse.equilibrium.ProximalStep`); ``lam="auto"`` then calibrates
          ``lam`` and the denoiser strength ``sigma`` by restoring the first training pairs
          (:func:`~implicit_inverse.training.calibration.calibrate_prior`), and training
          fine-tunes the prior and ``sigma``. See :meth:`from_pretrained` for use without
          training.
        - ``"red"`` or ``"red:NAME"``: the same denoiser as the RED gradient of DE-GRAD,
          ``R(x) = lam (x - D_sigma(x))``
          (:class:`~implicit_inverse.networks.denoiser.DenoiserGradient`), calibrated the
          same way; training fine-tunes the prior and the step size.
        - a ``torch.nn.Module`` (image -> image of the same shape), trained as ``R_theta`` of
          DE-GRAD; ``fit`` trains a copy: the module passed in is never modified.
    eta : float, default 1.0
        Step size of the DE-GRAD map, > 0. With ``precondition=True`` steps in (0, 2) contract;
        without it, ``eta < 2 / (||A||^2 + alpha)`` (``fit`` warns outside the safe range).
    noise_std : float >= 0 or "auto", default "auto"
        Noise level of the training measurements, with one meaning for arrays and datasets:
        every training batch is measured afresh, ``A y`` plus Gaussian noise of this std (the
        noise of the given ``X`` is replaced, not added to), and ``lam="auto"`` is tuned on
        measurements of this noise. "auto" uses the std estimated from the training pairs
        (RMS of ``X - A y``; arrays only). ``predict`` never adds noise.
    gradient : {"jfb", "exact", "unrolled"} or GradientStrategy, default "jfb"
        How the loss at the fixed point is differentiated.
    solver : {"anderson", "forward"} or FixedPointSolver, default "anderson"
    max_iter : int, default 100
        Cap on fixed-point iterations per sample (per solve; converged samples stop early).
    tol : float, default 1e-4
        Relative residual ``||T(x) - x|| / ||x||`` at which a solve has converged (``predict``).
    train_max_iter : int, default 30
        Cap on fixed-point iterations of the training solves.
    train_tol : float, default 1e-3
        Tolerance of the training solves. A training solve feeds a gradient, which needs far
        less accuracy than a reconstruction: a looser tolerance roughly halves the cost of an
        epoch (measured in ``benchmarks/quality.py``) without changing what ``predict``
        returns.
    lam : float > 0 or "auto", default "auto"
        Tikhonov weight used by the preconditioner, the starting point and the default
        regularizer's initial ``alpha``. "auto" picks the weight that maximises the PSNR of the
        Tikhonov reconstruction on the training data (stored in ``lam_``).
    precondition : bool, default True
        Use the step ``x - eta (A^T A + lam I)^{-1} (A^T (A x - d) + R(x))`` (closed form for
        circular blur, masks and downsampling): fewer iterations, and JFB becomes a close
        approximation of the exact gradient.
    learn_step : bool, default True
        Train the step size, kept in ``(0, 2 eta)``.
    augment : bool, default True
        Random flips and quarter turns of the clean training images, measured again through the
        operator.
    reuse_fixed_points : bool, default True
        Start each training sample's solve from its converged fixed point of the previous epoch
        (one cached image per training sample, on ``device``, saved with the weights so that
        checkpoints resume exactly; dropped by a new ``fit`` and when continued training gets
        other images). Fewer iterations per epoch, same fixed points.
    loss : {"psnr", "mse"}, default "psnr"
        Training loss. "psnr" is minus the mean per-image PSNR (what ``score`` reports): every
        image counts alike and its scale does not depend on the noise level. "mse" is the mean
        squared error of the batch.
    jacobian_penalty : float >= 0, default 2.0
        Weight of the Jacobian regularization added to the loss: a one-probe Hutchinson
        estimate of ``||dT/dx||_F^2 / n`` at the fixed points
        (:func:`~implicit_inverse.equilibrium.jacobian_penalty`, after Bai et al. 2021). It
        keeps the learned map contractive, so solves stay short and JFB stays a good
        gradient; 0 turns it off. The weight is relative to the loss: with ``loss="mse"``,
        whose values are ~1e-3, use a weight about 1e-3 times smaller.
    pretrain_epochs : int >= 0, default 0
        Epochs of feed-forward pretraining before the equilibrium training: one application of
        the map from its starting point (the Tikhonov solution corrected once by the network)
        is trained to give the clean image, at the cost of one network forward and backward per
        image (no solve, no Jacobian penalty; see
        :mod:`~implicit_inverse.training.pretraining`). Its loss per epoch is in
        ``pretraining_history_``.
    max_epochs : int, default 40
    batch_size : int, default 32
        Training batch size; ``predict`` works in chunks of ``4 * batch_size`` images, so its
        memory does not grow with the number of images.
    lr : float, default 5e-4
        Learning rate of the optimizer.
    lr_schedule : {"cosine", "constant"}, default "cosine"
        "cosine" decays the learning rate to 0 over ``max_epochs`` (per epoch, resumable);
        "constant" keeps it.
    optimizer : torch optimizer class, default torch.optim.Adam
    device : {"cpu", "cuda", "auto"} or str, default "cpu"
        Torch device; "auto" uses CUDA when available. Asking for CUDA without it is an error.
    random_state : int, RandomState or None, default None
        Seeds the network initialisation, the shuffling, the noise and the augmentation.
    verbose : int, default 0
        0 is silent; 1 prints skorch's table per epoch (loss, time, solver statistics); 2 adds
        a progress bar.
    callbacks : list of skorch callbacks or None, default None
        Extra callbacks; they are copied. To checkpoint and resume:
        ``cp = Checkpoint(dirname=folder, monitor=None)`` saves every epoch (there is no
        validation split, so skorch's default monitor ``"valid_loss_best"`` does not exist;
        ``"train_loss_best"`` keeps the best epoch), and ``callbacks=[cp, LoadInitState(cp)]``
        resumes from the last checkpoint: a run resumed after k epochs with
        ``max_epochs = total - k`` gives the parameters of an uninterrupted run.
    warm_start : bool, default False
        Continue training the fitted model on a new ``fit`` instead of starting over.
    image_shape : tuple (C, H, W) or None, default None
        Shape of one measurement when ``X`` is 2-D (flattened images). None infers a square
        single-channel image when the number of features is a perfect square, else one row.
    n_threads : int or None, default None
        Torch CPU threads during ``fit`` and ``predict`` (restored afterwards). None keeps
        torch's setting. Use 1 with ``GridSearchCV(n_jobs=k)``.
    precision : {"float32", "bfloat16", "float16"}, default "float32"
        Arithmetic of the regularizer during training: "bfloat16" (CPU and GPU) or "float16"
        (GPU only) run its forward under ``torch.autocast``
        (:class:`~implicit_inverse.networks.MixedPrecision`; its parameters stay float32).
        The operators' FFTs, the data term, the preconditioner and the fixed-point residuals
        stay float32, and ``predict`` runs in float32, so that its solves reach ``tol``. A
        bfloat16 regularizer limits the residual a training solve can reach to a few 1e-3:
        use ``train_tol=5e-3`` with it (2.3x less CPU time per epoch than the float32
        default in ``benchmarks/mixed_precision.py``, same test PSNR).
"""


PARAMETER_CONSTRAINTS = {
    "operator": [LinearOperator, str, None],
    "regularizer": [nn.Module, str, None],
    "eta": [Interval(Real, 0, None, closed="neither")],
    "noise_std": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    "gradient": [StrOptions(set(STRATEGIES)), GradientStrategy],
    "solver": [StrOptions(set(SOLVERS)), FixedPointSolver],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "train_max_iter": [Interval(Integral, 1, None, closed="left")],
    "train_tol": [Interval(Real, 0, None, closed="left")],
    "lam": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "precondition": ["boolean"],
    "learn_step": ["boolean"],
    "augment": ["boolean"],
    "reuse_fixed_points": ["boolean"],
    "loss": [StrOptions(set(CRITERIA))],
    "jacobian_penalty": [Interval(Real, 0, None, closed="left")],
    "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "lr_schedule": [StrOptions({"cosine", "constant"})],
    "optimizer": [callable],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "callbacks": [list, None],
    "warm_start": ["boolean"],
    "image_shape": [tuple, None],
    "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    "precision": [StrOptions(set(PRECISIONS))],
}
"""``_parameter_constraints`` of :class:`ImplicitRegressor` (task estimators extend it)."""


def check_scalar_params(estimator):
    """The rules ``_parameter_constraints`` cannot say, checked when ``fit`` starts: ints that
    are not bools, finite floats, a regularizer spec that parses, a 3-int ``image_shape``.

    Parameters
    ----------
    estimator : ImplicitRegressor

    Raises
    ------
    InvalidParameterError, ValueError
        Naming the parameter.
    """
    for name in ("max_iter", "train_max_iter", "pretrain_epochs", "max_epochs", "batch_size",
                 "n_threads"):
        # a bool passes Interval(Integral)
        if isinstance(getattr(estimator, name), (bool, np.bool_)):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be an int >= 1, got "
                f"the bool {getattr(estimator, name)!r}")
    for name in ("eta", "lr", "tol", "train_tol", "jacobian_penalty"):
        if not math.isfinite(getattr(estimator, name)):
            raise ValueError(f"{name} must be finite, got {getattr(estimator, name)!r}")
    for name in ("noise_std", "lam"):
        value = getattr(estimator, name)
        if not isinstance(value, str) and not math.isfinite(value):
            raise ValueError(f"{name} must be finite or 'auto', got {value!r}")
    parse_regularizer(estimator.regularizer)
    if estimator.image_shape is not None and (
            len(estimator.image_shape) != 3
            or not all(isinstance(s, Integral) and s >= 1 for s in estimator.image_shape)):
        raise ValueError("image_shape must be a tuple of 3 positive ints (C, H, W), got "
                         f"{estimator.image_shape!r}")
