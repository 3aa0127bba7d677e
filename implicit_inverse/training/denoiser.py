"""Training a :class:`NoiseLevelDenoiser` as a prior: random noisy crops, skorch, resumable.

Every epoch draws fresh crops (a pure function of the seed, the epoch and the item index, so a
resumed run sees what an uninterrupted one would), with the eight flips and quarter turns and a
noise level drawn uniformly from ``sigma_range`` per crop. The skorch net keeps the loop,
progress bar and checkpoint (parameters, optimizer and history after every epoch); calling
:func:`pretrain_denoiser` again with the same checkpoint folder continues where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback, Checkpoint, ProgressBar
from torch import nn

from ..data.photos import TRAINING_PHOTOS
from ..networks.precision import PRECISIONS
from ..networks.priors import DENOISER_KINDS


class NoisyCrops(torch.utils.data.Dataset):
    """Random noisy crops of grayscale planes, as skorch items ``({"x", "sigma"}, clean)``.

    Parameters
    ----------
    planes : sequence of ndarray of shape (H, W)
        Training images in [0, 1], each at least ``crop`` pixels on both sides.
    weights : sequence of float or None
        Sampling weight of each plane (None: uniform).
    crop : int
        Side of the square crops.
    sigma_range : (float, float)
        Noise standard deviations drawn uniformly per crop.
    length : int
        Crops per epoch.
    seed : int
        Seed of the crop positions, augmentations and noise.

    Notes
    -----
    Items are ``x`` (1, crop, crop) float32, ``sigma`` a 0-d float32 tensor, and the clean crop
    (1, crop, crop). :meth:`set_epoch` changes the draws from one epoch to the next.
    """

    def __init__(self, planes, weights, crop, sigma_range, length, seed):
        self.planes = list(planes)
        small = [plane.shape for plane in self.planes if min(plane.shape) < crop]
        if small:
            raise ValueError(f"crop={crop} is larger than training images of shapes {small}")
        weights = np.ones(len(self.planes)) if weights is None else np.asarray(weights, float)
        self.probabilities = weights / weights.sum()
        self.crop, self.sigma_range = crop, tuple(sigma_range)
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch):
        """Draw the crops of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        plane = self.planes[rng.choice(len(self.planes), p=self.probabilities)]
        top = rng.integers(plane.shape[0] - self.crop + 1)
        left = rng.integers(plane.shape[1] - self.crop + 1)
        clean = plane[top:top + self.crop, left:left + self.crop]
        clean = np.rot90(clean, k=rng.integers(4))
        if rng.random() < 0.5:
            clean = clean[:, ::-1]
        clean = np.ascontiguousarray(clean, dtype=np.float32)[None]
        sigma = np.float32(rng.uniform(*self.sigma_range))
        noisy = clean + sigma * rng.standard_normal(clean.shape, dtype=np.float32)
        return {"x": torch.from_numpy(noisy), "sigma": torch.tensor(sigma)}, \
            torch.from_numpy(clean)


def parse_architecture(spec):
    """A denoiser architecture from its short spec.

    Parameters
    ----------
    spec : str
        ``"dncnn:DEPTHxWIDTH"`` (for example ``"dncnn:12x32"``) or
        ``"unet:W1,W2,...[xBLOCKS]"`` (for example ``"unet:16,32,64,128"``, one residual block
        per scale, or ``"unet:16,32,64,128x2"``).

    Returns
    -------
    dict
        ``{"kind": ..., **constructor arguments}``, as :func:`pretrain_denoiser` takes it.

    Raises
    ------
    ValueError
        Naming the spec and the expected forms.
    """
    expected = "expected 'dncnn:DEPTHxWIDTH' or 'unet:W1,W2,...[xBLOCKS]'"
    kind, _, body = str(spec).partition(":")
    try:
        if kind == "dncnn":
            depth, width = (int(part) for part in body.split("x"))
            return {"kind": kind, "depth": depth, "width": width}
        if kind == "unet":
            widths, _, blocks = body.partition("x")
            return {"kind": kind, "widths": [int(w) for w in widths.split(",")],
                    "blocks": int(blocks) if blocks else 1}
    except ValueError:
        pass
    raise ValueError(f"denoiser architecture {spec!r} not understood; {expected}")


def with_dead_leaves(planes, fraction, *, count=64, size=256, seed=0):
    """``planes`` plus a bank of dead-leaves images drawn ``fraction`` of the time.

    Parameters
    ----------
    planes : list of ndarray of shape (H, W)
    fraction : float in [0, 1)
        Share of the training crops taken from the synthetic images (0: photos only).
    count, size, seed : int
        The bank: ``count`` images of ``size`` pixels, a pure function of ``seed``.

    Returns
    -------
    planes : list of ndarray of shape (H, W)
    weights : list of float or None
        Sampling weights for :class:`NoisyCrops` (None when ``fraction`` is 0).
    """
    from ..data.synthetic import dead_leaves_planes

    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0:
        return list(planes), None
    synthetic = dead_leaves_planes(count, size, seed)
    weight = fraction * len(planes) / (count * (1 - fraction))
    return list(planes) + synthetic, [1.0] * len(planes) + [weight] * count


class _SetEpochAndRate(Callback):
    """At each epoch start: the dataset's epoch, and the learning rate of the step schedule
    (``lr`` until ``decay_at`` of the planned epochs, then ``lr / 10``), both from the history,
    so that a resumed run continues the same schedule."""

    def __init__(self, lr, decay_epoch):
        self.lr, self.decay_epoch = lr, decay_epoch

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        epoch = len(net.history) - 1
        dataset_train.set_epoch(epoch)
        rate = self.lr if epoch < self.decay_epoch else self.lr / 10
        for group in net.optimizer_.param_groups:
            group["lr"] = rate


class _DropBatchRecords(Callback):
    """Keep the epoch-level records (loss, batch count, seconds) and each epoch's last batch
    record in the history: all batch records would make the checkpoint's ``history.json`` grow
    by ~15 KB per epoch of 256 steps, and it is rewritten after every epoch of a run of hundreds.
    """

    def on_epoch_end(self, net, **kwargs):
        net.history.record("batches", net.history[-1, "batches"][-1:])


class _Seconds(Callback):
    """Record each epoch's wall time in the history (``"seconds"``), for the model card."""

    def on_epoch_begin(self, net, **kwargs):
        self.start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        net.history.record("seconds", time.perf_counter() - self.start_)


class DenoiserNet(NeuralNetRegressor):
    """``NeuralNetRegressor`` whose forward pass may run under ``torch.autocast`` and in the
    ``channels_last`` memory layout.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNetRegressor`.
    precision : {"float32", "bfloat16", "float16"}, default "float32"
        Dtype of the convolutions; parameters, loss and optimizer stay float32.
    channels_last : bool, default False
        Hold the module's weights and the inputs as (N, H, W, C) in memory (oneDNN's fast
        layout for convolutions on CPUs); values and results are unchanged.
    """

    def __init__(self, *args, precision="float32", channels_last=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = precision
        self.channels_last = channels_last

    def initialize_module(self):
        super().initialize_module()
        if self.channels_last:
            self.module_ = self.module_.to(memory_format=torch.channels_last)
        return self

    def infer(self, x, **fit_params):
        if self.channels_last:
            x = dict(x, x=x["x"].contiguous(memory_format=torch.channels_last))
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return super().infer(x, **fit_params)
        with torch.autocast(device_type=torch.device(self.device).type, dtype=dtype):
            output = super().infer(x, **fit_params)
        return output.float().contiguous()


def pretrain_denoiser(planes, checkpoint_dir, *, architecture=None, epochs=100,
                      crops_per_epoch=2048, crop=48, batch_size=32, sigma_range=(0.0, 0.1),
                      lr=1e-3, decay_at=0.8, weights=None, seed=0, device="cpu",
                      precision="float32", channels_last=False, progress=True):
    """Train (or continue training) a grayscale denoising prior on ``planes``.

    Parameters
    ----------
    planes : sequence of ndarray of shape (H, W)
        Clean grayscale training images in [0, 1] (never held-out evaluation photos).
    checkpoint_dir : str or Path
        Folder of the resumable checkpoint (``params.pt``, ``optimizer.pt``, ``history.json``),
        written after every epoch; an existing checkpoint is continued up to ``epochs``.
    architecture : dict or None
        ``{"kind": "dncnn" | "unet", **constructor arguments}`` (see
        :data:`~implicit_inverse.networks.priors.DENOISER_KINDS`); None means a DnCNN 12x32.
        ``channels`` is always 1.
    epochs : int
        Total epochs, counting those already in the checkpoint.
    crops_per_epoch, crop, batch_size : int
        Crops drawn per epoch, their side, and the batch size.
    sigma_range : (float, float)
        Range of the training noise levels.
    lr : float
        Adam's learning rate, divided by 10 after ``decay_at`` of the epochs.
    weights : sequence of float or None
        Sampling weight of each plane.
    seed : int
    device : str
        "cpu" or "cuda".
    precision : {"float32", "bfloat16", "float16"}
        Autocast dtype of the forward pass (bfloat16 is about 2x faster on CPUs with AVX-512
        BF16; float16 needs CUDA).
    channels_last : bool
        Train in the (N, H, W, C) memory layout (faster convolutions on most CPUs).
    progress : bool
        One skorch progress bar per epoch.

    Returns
    -------
    net : skorch.NeuralNetRegressor
        ``net.module_`` is the trained denoiser; ``net.history`` its per-epoch loss and seconds.
    """
    checkpoint_dir = Path(checkpoint_dir)
    arguments = dict(architecture or {"kind": "dncnn", "depth": 12, "width": 32})
    kind = arguments.pop("kind", "dncnn")
    if kind not in DENOISER_KINDS:
        raise ValueError(f"architecture kind must be one of {sorted(DENOISER_KINDS)}, "
                         f"got {kind!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    arguments["channels"] = 1
    dataset = NoisyCrops(planes, weights, crop, sigma_range, crops_per_epoch, seed)
    callbacks = [("schedule", _SetEpochAndRate(lr, int(decay_at * epochs))),
                 ("seconds", _Seconds()),
                 ("compact_history", _DropBatchRecords()),
                 ("checkpoint", Checkpoint(monitor=None, dirname=str(checkpoint_dir),
                                           f_params="params.pt", f_optimizer="optimizer.pt",
                                           f_history="history.json", f_criterion=None,
                                           load_best=False))]
    if progress:
        callbacks.append(("progress", ProgressBar()))
    torch.manual_seed(seed)
    net = DenoiserNet(
        DENOISER_KINDS[kind], **{f"module__{key}": value for key, value in arguments.items()},
        precision=precision, channels_last=channels_last, criterion=nn.MSELoss,
        optimizer=torch.optim.Adam, lr=lr, batch_size=batch_size, iterator_train__shuffle=False,
        train_split=None, device=device, callbacks=callbacks, max_epochs=epochs)
    net.initialize()
    if (checkpoint_dir / "params.pt").exists():
        net.load_params(f_params=checkpoint_dir / "params.pt",
                        f_optimizer=checkpoint_dir / "optimizer.pt",
                        f_history=checkpoint_dir / "history.json")
    remaining = epochs - len(net.history)
    if remaining > 0:
        net.partial_fit(dataset, None, epochs=remaining)
    return net


def model_card(net, *, crop, batch_size, sigma_range, hardware, precision="float32",
               dead_leaves=0.0):
    """The training facts stored beside the weights (plain values).

    Parameters
    ----------
    net : skorch.NeuralNetRegressor
        As returned by :func:`pretrain_denoiser`.
    crop, batch_size : int
    sigma_range : (float, float)
    hardware : str
    precision : str
        The autocast dtype of training.
    dead_leaves : float
        Share of crops drawn from dead-leaves images.

    Returns
    -------
    dict
    """
    history = net.history
    steps = int(sum(history[:, "train_batch_count"])) if len(history) else 0
    synthetic = (f"; {dead_leaves:.0%} of the crops from procedural dead-leaves images"
                 if dead_leaves else "")
    return {
        "data": "scikit-image sample photos " + ", ".join(TRAINING_PHOTOS)
                + " (luminance and each colour channel); camera and coffee held out" + synthetic,
        "recipe": f"random {crop}x{crop} crops, flips and quarter turns, Gaussian noise of std "
                  f"uniform in [{sigma_range[0]}, {sigma_range[1]}], MSE, Adam, "
                  f"batch {batch_size}, learning rate / 10 for the last epochs, {precision} "
                  f"forward",
        "epochs": len(history),
        "optimizer_steps": steps,
        "final_train_loss": float(history[-1, "train_loss"]) if len(history) else None,
        "wall_seconds": float(sum(history[:, "seconds"])) if len(history) else 0.0,
        "hardware": hardware,
    }
