"""Training batches measured afresh: the clean images are augmented (dihedral transforms) and
measured again through the operator with new noise, from seeded, per-epoch random streams."""

from __future__ import annotations

import torch

from .._runtime import SeedStream


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
