"""Training on a torch ``Dataset`` of clean images, streamed batch by batch (never materialised).

``ImplicitRegressor.fit(dataset)`` wraps the dataset in :class:`MeasuredDataset`, whose items
are what skorch trains on for arrays: ``({"measurement": A y_i, "index": i}, y_i)``. The
measurement is noise-free: every training batch is measured again through the operator with
fresh noise of std ``noise_std`` (:class:`~.training.TrainingMeasurements` adds
``measurement - A y = 0`` plus the fresh noise), so a float ``noise_std`` is required.

Items of the dataset are clean images: a tensor or array of shape (C, H, W) (or (H, W), one
channel), or a tuple/list whose first element is such an image (``(image, label)`` as
torchvision's datasets return; the rest is ignored).
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import Callback

__all__ = ["MeasuredDataset", "SetEpoch", "clean_item", "first_items", "is_dataset"]

#: items of the dataset used to tune ``lam="auto"`` (measured with seeded noise of ``noise_std``)
LAM_SAMPLES = 256


def is_dataset(X):
    """True for a map-style ``torch.utils.data.Dataset`` (not a tensor or array)."""
    return isinstance(X, torch.utils.data.Dataset)


def clean_item(item):
    """One clean image of a dataset item as a float32 tensor (C, H, W)."""
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("a dataset item is an empty tuple; expected an image (C, H, W)")
        item = item[0]
    image = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError("dataset items must be clean images of shape (C, H, W) or (H, W) "
                         f"(or tuples whose first element is one), got shape {tuple(image.shape)}")
    if not torch.is_floating_point(image):
        raise ValueError(f"dataset images must be floating point, got {image.dtype}")
    image = image.to(torch.float32)
    if not torch.isfinite(image).all():
        raise ValueError("dataset images must be finite (no NaN or inf)")
    return image


def first_items(dataset, count):
    """The first ``min(count, len(dataset))`` clean images stacked (n, C, H, W)."""
    if len(dataset) < 2:
        raise ValueError(f"the dataset must hold at least 2 images, got {len(dataset)}")
    images = [clean_item(dataset[i]) for i in range(min(count, len(dataset)))]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(f"dataset images must all have the same shape, got {sorted(shapes)}")
    return torch.stack(images)


class MeasuredDataset(torch.utils.data.Dataset):
    """Items ``({"measurement": A y_i, "index": i}, y_i)`` of a dataset of clean images ``y_i``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Clean images (see the module's docstring for the items accepted).
    operator : LinearOperator
        Applied to one image at a time, on the CPU (pass a copy the net does not move).
    """

    def __init__(self, dataset, operator):
        self.dataset = dataset
        self.operator = operator

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        clean = clean_item(self.dataset[index])
        with torch.no_grad():
            measurement = self.operator(clean[None])[0]
        return {"measurement": measurement, "index": torch.tensor(index)}, clean

    def set_epoch(self, epoch):
        """Forward ``set_epoch`` to the wrapped dataset when it has one."""
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


class SetEpoch(Callback):
    """Call ``dataset_train.set_epoch(epoch)`` (0-based, from the history) at each epoch start.

    Stateless (it holds no dataset), so saved models do not carry the data; a no-op for datasets
    without ``set_epoch`` (skorch's own, for arrays).
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        set_epoch = getattr(dataset_train, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(len(net.history) - 1)
