"""The training objective: the PSNR loss and the Jacobian penalty that keeps the map contractive.

Claims checked on tiny settings: the loss is minus the mean PSNR that ``score`` reports; the
penalty is recorded per epoch and left out at weight 0; with a learning rate high enough to push
the map towards non-contraction, the penalty keeps the Jacobian at the fixed points smaller
and the solves shorter than the same run without it.
"""

import numpy as np
import pytest
import torch
from torch import nn

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.equilibrium import estimate_lipschitz
from implicit_inverse.estimators import PSNRLoss
from implicit_inverse.metrics import psnr
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork

pytestmark = pytest.mark.filterwarnings("ignore::implicit_inverse.equilibrium.ConvergenceWarning")


def test_psnr_loss_is_minus_the_mean_psnr_of_score():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand((5, 1, 12, 12), generator=generator)
    prediction = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    loss = PSNRLoss()(prediction, target)
    assert float(loss) == pytest.approx(-psnr(target.numpy(), prediction.numpy()), rel=1e-5)


def test_psnr_loss_weighs_every_image_alike():
    """Scaling one image's error by k moves the loss by 10 log10(k^2) / n, whatever the others."""
    target = torch.zeros((2, 1, 4, 4))
    errors = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.001)])
    base = float(PSNRLoss()(target + errors, target))
    scaled = errors.clone()
    scaled[1] *= 10
    assert float(PSNRLoss()(target + scaled, target)) - base == pytest.approx(10.0, rel=1e-4)


def test_psnr_loss_of_a_perfect_prediction_is_finite():
    target = torch.rand((2, 1, 4, 4))
    assert float(PSNRLoss()(target, target)) == pytest.approx(-100.0)


def regularizer(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TikhonovPlusNetwork(DnCNN(depth=3, width=8), alpha=0.01, scale=1.0)


def train(blurred, blur, **params):
    X, y = blurred
    est = ImplicitDeblurRegressor(operator=blur, regularizer=regularizer(), batch_size=8,
                                  max_iter=60, random_state=0, n_threads=1, **params)
    return est.fit(X[:24], y[:24])


def test_the_penalty_is_recorded_per_epoch_and_absent_at_weight_zero(blurred, blur):
    est = train(blurred, blur, max_epochs=2)
    assert isinstance(est.net_.criterion_, PSNRLoss)
    values = est.history[:, "jac"]
    assert len(values) == 2 and all(np.isfinite(values)) and all(v >= 0 for v in values)
    plain = train(blurred, blur, max_epochs=1, jacobian_penalty=0.0, loss="mse")
    assert "jac" not in plain.history[-1]
    assert isinstance(plain.net_.criterion_, nn.MSELoss)


def test_the_penalty_keeps_the_learned_map_contractive(blurred, blur):
    """Same data, seed and (aggressive) learning rate, with and without the penalty."""
    X, _ = blurred
    runs = {weight: train(blurred, blur, max_epochs=6, lr=1e-2, jacobian_penalty=weight)
            for weight in (0.0, 2.0)}
    d = torch.from_numpy(np.array(X[24:32]))[:, None]
    lipschitz, iterations = {}, {}
    for weight, est in runs.items():
        module = est.net_.module_
        with torch.no_grad():
            _, stats = est.predict_with_stats(X[24:32])
            x_star = module(d)
        lipschitz[weight] = float(estimate_lipschitz(module.layer.map, x_star, d).max())
        iterations[weight] = float(stats.iterations.float().mean())
    assert lipschitz[2.0] < lipschitz[0.0]
    assert iterations[2.0] < iterations[0.0]
