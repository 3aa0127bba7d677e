"""Feed-forward pretraining of the learned map before equilibrium training.

One application of the map from its starting point, ``T(x0(d); d)``, is trained to give the clean
image: with the default map this is the Tikhonov solution corrected once by the network, a
feed-forward post-processor that costs one network forward and backward per image (no
fixed-point solve, no Jacobian penalty). The equilibrium training that follows starts from a
network that already knows what a correction looks like.
"""

from __future__ import annotations

import torch
from skorch import NeuralNetRegressor
from torch import nn

from .._runtime import SeedStream


class OneStepModule(nn.Module):
    """skorch's module for pretraining: measurements (N, C, H', W') -> ``T(x0; d)`` (N, C, H, W).

    Parameters
    ----------
    fixed_point_map : FixedPointMap
        The map being trained (shared, not copied: pretraining moves its parameters).
    """

    def __init__(self, fixed_point_map):
        super().__init__()
        self.map = fixed_point_map

    def forward(self, measurement):
        """One map application from the map's own starting point."""
        with torch.no_grad():
            start = self.map.initial_point(measurement)
        return self.map(start, measurement)


class PretrainingNet(NeuralNetRegressor):
    """``NeuralNetRegressor`` whose batches are measured afresh, as in equilibrium training.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNetRegressor`.
    training_measurements : TrainingMeasurements
        The sampler of the equilibrium training (fresh noise, augmentation).
    """

    def __init__(self, *args, training_measurements=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.training_measurements = training_measurements

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Seed this epoch's noise and transforms from its index (reproducible runs)."""
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                               **kwargs)
        self.training_measurements.start_epoch(SeedStream.pretraining_epoch(len(self.history) - 1))

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        _, clean = batch
        measurement, clean, _ = self.training_measurements(clean.to(self.device))
        prediction = self.module_(measurement)
        loss = self.get_loss(prediction, clean, X=measurement, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": prediction}


def pretrain(fixed_point_map, inputs, clean, *, sampler, criterion, optimizer, lr, epochs,
             batch_size, device, generator):
    """Train ``fixed_point_map`` in place so that one application from its start gives ``clean``.

    Parameters
    ----------
    fixed_point_map : FixedPointMap
    inputs : dict with "measurement" : torch.Tensor of shape (n, C, H', W') (and "index")
    clean : torch.Tensor of shape (n, C, H, W)
    sampler : TrainingMeasurements
    criterion : type of torch.nn.Module
    optimizer : torch optimizer class
    lr : float
    epochs : int >= 1
    batch_size : int
    device : str
    generator : torch.Generator
        Shuffling of the batches.

    Returns
    -------
    skorch.History
        Loss per epoch of the pretraining.
    """
    net = PretrainingNet(
        OneStepModule(fixed_point_map), criterion=criterion, optimizer=optimizer, lr=lr,
        max_epochs=epochs, batch_size=batch_size, train_split=None, device=device,
        verbose=0, iterator_train__shuffle=True,
        iterator_train__generator=generator, training_measurements=sampler)
    net.fit(inputs, clean)
    return net.history
