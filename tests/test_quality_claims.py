"""Fast versions of the quality claims of the default model (the benchmark is
``benchmarks/quality.py``): the untrained default model is the Tikhonov reconstruction, a few
epochs of training beat it on held-out faces, and the preconditioned map needs fewer iterations
than the plain gradient step on the same learned regularizer."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from implicit_inverse import ImplicitDeblurRegressor, TikhonovRegressor
from implicit_inverse.datasets import load_faces
from implicit_inverse.equilibrium import GradientStep, ImplicitLayer, safe_step_size
from implicit_inverse.networks import DnCNN, TikhonovPlusNetwork
from implicit_inverse.operators import Blur, gaussian_kernel, make_measurements

pytestmark = pytest.mark.filterwarnings("error::implicit_inverse.equilibrium.ConvergenceWarning")


@pytest.fixture(scope="module")
def faces_task():
    """80 training and 20 held-out faces of 16 x 16, blur 5x5 sigma 1, noise 0.01."""
    faces = load_faces(size=16)
    operator = Blur(gaussian_kernel(5, 1.0))
    train, test = faces[:80], faces[80:]
    X_train = make_measurements(train, operator, noise_std=0.01, random_state=0)
    X_test = make_measurements(test, operator, noise_std=0.01, random_state=1)
    return operator, (X_train, train), (X_test, test)


class UntrainedPredictions(Callback):
    """Reconstructions of ``measurements`` by the network as it is before the first step."""

    def __init__(self, measurements):
        self.measurements = measurements

    def on_train_begin(self, net, **kwargs):
        module = net.module_
        module.eval()
        with torch.no_grad():
            self.images = module(self.measurements).numpy()[:, 0]
        self.stats = module.layer.last_stats
        module.train()


def test_the_untrained_default_model_is_the_tikhonov_reconstruction(faces_task):
    operator, (X_train, train), (X_test, _) = faces_task
    untrained = UntrainedPredictions(torch.from_numpy(X_test)[:, None])
    est = ImplicitDeblurRegressor(operator=operator, max_epochs=1, random_state=0, n_threads=1,
                                  callbacks=[untrained])
    est.fit(X_train, train)
    callback = dict(est.net_.callbacks_)["user_0"]
    tikhonov = TikhonovRegressor(operator, lam=est.lam_).fit(X_train, train).predict(X_test)
    # float32 FFTs: the map's one step at the start amplifies round-off by up to 1 / lam
    atol = 10 * np.finfo(np.float32).eps / est.lam_
    np.testing.assert_allclose(callback.images, tikhonov, rtol=0, atol=atol)
    assert bool(callback.stats.converged.all())
    assert int(callback.stats.iterations.max()) <= 2  # it starts at its own fixed point


def test_a_few_epochs_of_the_default_model_beat_tuned_tikhonov_on_held_out_faces(faces_task):
    operator, (X_train, train), (X_test, test) = faces_task
    est = ImplicitDeblurRegressor(operator=operator, max_epochs=8, random_state=0, n_threads=1)
    est.fit(X_train, train)
    tikhonov = TikhonovRegressor(operator, lam=est.lam_).fit(X_train, train)
    _, stats = est.predict_with_stats(X_test)
    assert bool(stats.converged.all())
    assert est.score(X_test, test) > tikhonov.score(X_test, test) + 0.25  # measured: +0.39 dB


def test_pretraining_makes_one_epoch_at_least_as_good_as_without_it(faces_task):
    operator, (X_train, train), (X_test, test) = faces_task
    scores = {}
    for epochs in (0, 10):
        est = ImplicitDeblurRegressor(operator=operator, max_epochs=1, pretrain_epochs=epochs,
                                      random_state=0, n_threads=1).fit(X_train, train)
        scores[epochs] = est.score(X_test, test)
    assert est.pretraining_history_ is not None and len(est.pretraining_history_) == 10
    losses = est.pretraining_history_[:, "train_loss"]
    assert losses[-1] < losses[0]  # minus PSNR of one map application: it learned
    assert scores[10] >= scores[0] + 0.1  # measured: +0.5 dB


def test_pretraining_is_reproducible_and_recorded_only_when_asked(faces_task):
    operator, (X_train, train), (X_test, _) = faces_task
    fitted = [ImplicitDeblurRegressor(operator=operator, max_epochs=1, pretrain_epochs=epochs,
                                      random_state=0, n_threads=1).fit(X_train[:32], train[:32])
              for epochs in (2, 2, 0)]
    np.testing.assert_array_equal(fitted[0].predict(X_test), fitted[1].predict(X_test))
    assert len(fitted[0].pretraining_history_) == 2
    assert fitted[2].pretraining_history_ is None


def test_the_preconditioned_map_converges_in_fewer_iterations(faces_task):
    """Same regularizer (a DnCNN with small random output weights behind alpha x), same
    measurements: ``(A^T A + lam I)^{-1}``-preconditioned step with eta 1 against the plain step
    at 90% of its largest safe eta."""
    operator, _, (X_test, _) = faces_task
    lam = 0.01
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = DnCNN(depth=3, width=8, zero_output=False)
        with torch.no_grad():
            network.body[-1].weight.mul_(1e-3)
            network.body[-1].bias.zero_()
    regularizer = TikhonovPlusNetwork(network, alpha=lam)
    d = torch.from_numpy(X_test)[:, None]
    plain_eta = 0.9 * safe_step_size(operator, d.shape, alpha=lam)
    iterations = {}
    for precondition, eta in ((True, 1.0), (False, plain_eta)):
        step = GradientStep(operator, regularizer, eta=eta, precondition=precondition, lam=lam,
                            initializer="adjoint")
        layer = ImplicitLayer(step, solver="forward", max_iter=2000, tol=1e-4)
        with torch.no_grad():
            layer(d)
        assert bool(layer.last_stats.converged.all()), precondition
        iterations[precondition] = float(layer.last_stats.iterations.float().mean())
    assert iterations[True] * 5 < iterations[False], iterations  # measured: 3 against 104
