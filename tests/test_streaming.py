"""fit / partial_fit on a torch Dataset of clean images (implicit_inverse.training.streaming)."""

import numpy as np
import pytest
import torch
from PIL import Image

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.datasets import PatchDataset
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel

pytestmark = pytest.mark.filterwarnings(
    "ignore::implicit_inverse.equilibrium.ConvergenceWarning")

N, SIZE = 12, 16


def images(n=N, seed=0):
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, SIZE + 3, SIZE + 3,
                                                       generator=generator), 4, stride=1)
    return smooth.contiguous()


class Images(torch.utils.data.Dataset):
    """Clean images, optionally as (image, label) tuples, recording set_epoch calls."""

    def __init__(self, clean, tuples=False):
        self.clean, self.tuples, self.epochs = clean, tuples, []

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, index):
        return (self.clean[index], 0) if self.tuples else self.clean[index]

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def regularizer():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.01)


def model(**params):
    defaults = dict(regularizer=regularizer(), max_epochs=1, batch_size=4, max_iter=8,
                    train_max_iter=8, random_state=0, noise_std=0.01, lam=0.01, augment=False,
                    reuse_fixed_points=False, pretrain_epochs=0)
    return ImplicitDeblurRegressor(Blur(gaussian_kernel(5, 1.0)), **{**defaults, **params})


def weights(est):
    return {name: value.detach().clone() for name, value in est.net_.module_.state_dict().items()}


@pytest.mark.parametrize("tuples", [False, True])
def test_dataset_trains_and_predicts(tuples):
    clean = images()
    est = model(max_epochs=2).fit(Images(clean, tuples=tuples))
    assert est.n_iter_ == 2 and est.image_shape_ == (1, SIZE, SIZE)
    measured = est.operator_(clean)
    restored = est.predict(measured.numpy())
    assert restored.shape == (N, 1, SIZE, SIZE) and np.isfinite(restored).all()


def test_dataset_equals_arrays():
    """Same seeds: the dataset and the arrays ``X = A y`` (noise-free) train the same weights."""
    clean = images()
    est = model(max_epochs=2)
    operator = est._make_operator()
    # measured one image at a time, as the dataset's items are
    X = torch.cat([operator(image[None]) for image in clean])
    from_arrays = model(max_epochs=2).fit(X, clean)
    from_dataset = model(max_epochs=2).fit(Images(clean))
    first, second = weights(from_arrays), weights(from_dataset)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)
    assert (from_arrays.history[:, "train_loss"] == from_dataset.history[:, "train_loss"])


def test_lam_auto_is_tuned_on_the_dataset():
    est = model(lam="auto").fit(Images(images()))
    assert est.lam_ > 0


def test_noise_std_auto_with_dataset_is_refused():
    with pytest.raises(ValueError, match="noise_std"):
        model(noise_std="auto").fit(Images(images()))


def test_dataset_with_y_is_refused():
    clean = images()
    with pytest.raises(ValueError, match="y must be None"):
        model().fit(Images(clean), clean.numpy())
    with pytest.raises(ValueError, match="y must be None"):
        model().partial_fit(Images(clean), clean.numpy())


def test_arrays_without_y_are_refused():
    with pytest.raises(ValueError, match="y"):
        model().fit(images().numpy())


def test_set_epoch_is_called_each_epoch():
    data = Images(images())
    est = model(max_epochs=2).fit(data)
    assert data.epochs == [0, 1]
    est.partial_fit(data)
    assert data.epochs == [0, 1, 2] and est.n_iter_ == 3


def test_partial_fit_on_dataset_continues_array_model():
    clean = images()
    est = model(reuse_fixed_points=True).fit(clean.numpy(), clean.numpy())
    est.partial_fit(Images(clean))
    assert est.n_iter_ == 2


def test_patch_dataset_trains_one_epoch(tmp_path):
    rng = np.random.default_rng(0)
    for name in "abc":
        Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(
            tmp_path / f"{name}.png")
    patches = PatchDataset(tmp_path, patch_size=SIZE, patches_per_image=2)
    est = model().fit(patches)
    assert est.n_iter_ == 1 and patches.epoch == 0
    est.partial_fit(patches)
    assert patches.epoch == 1
