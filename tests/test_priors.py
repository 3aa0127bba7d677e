"""Pretrained priors: the denoiser, its data-only file format, its trainer, the proximal map,
regularizer specs and the zero-shot estimator."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.cli import main
from implicit_inverse.data.image_files import ImageInfo, write_image
from implicit_inverse.equilibrium import (Anderson, Exact, GradientStep, ImplicitLayer,
                                          ProximalStep)
from implicit_inverse.networks import DnCNN, NoiseLevelUNet, TikhonovPlusNetwork
from implicit_inverse.networks.denoiser import (DenoiserGradient, NoiseLevelDenoiser,
                                                NoiseLevelPrior)
from implicit_inverse.networks.priors import (PriorFileError, available_priors, load_prior,
                                              load_prior_file, save_prior_file)
from implicit_inverse.networks.specs import build_regularizer, parse_regularizer
from implicit_inverse.operators import Blur, disk_kernel, gaussian_kernel
from implicit_inverse.training.denoiser import NoisyCrops, pretrain_denoiser
from implicit_inverse.training.recipe import ModelSpec, build_model


@pytest.fixture
def tiny_denoiser():
    torch.manual_seed(0)
    return NoiseLevelDenoiser(depth=3, width=4)


# -- the denoiser ------------------------------------------------------------------------------
def test_denoiser_keeps_shape_and_restores_colour_channel_by_channel(tiny_denoiser):
    colour = torch.rand(2, 3, 12, 10)
    out = tiny_denoiser(colour, 0.05)
    assert out.shape == colour.shape
    one_channel = tiny_denoiser(colour[:, 1:2], 0.05)
    torch.testing.assert_close(out[:, 1:2], one_channel)


def test_denoiser_uses_each_samples_noise_level(tiny_denoiser):
    x = torch.rand(2, 1, 8, 8)
    both = tiny_denoiser(x, torch.tensor([0.01, 0.08]))
    torch.testing.assert_close(both[1:], tiny_denoiser(x[1:], 0.08))
    assert not torch.allclose(tiny_denoiser(x, 0.01), tiny_denoiser(x, 0.08))


def test_untrained_denoiser_is_close_to_the_identity():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16)
    assert (NoiseLevelDenoiser()(x, 0.05) - x).abs().max() < 0.05


# -- the prior file: data only ------------------------------------------------------------------
def test_prior_file_round_trip(tmp_path, tiny_denoiser):
    path = tmp_path / "prior.pt"
    save_prior_file(path, tiny_denoiser, {"epochs": 3})
    loaded, card = load_prior_file(path)
    assert card == {"epochs": 3}
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(loaded(x, 0.03), tiny_denoiser(x, 0.03))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_prior_file_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "implicit_inverse.prior", "payload": _Exploit(marker)}, path)
    with pytest.raises(PriorFileError, match="evil.pt.*data only"):
        load_prior_file(path)
    assert not marker.exists()
    with open(path, "wb") as handle:
        pickle.dump(_Exploit(marker), handle)
    with pytest.raises(PriorFileError, match="evil.pt"):
        load_prior_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload, message", [
    ({"format": "something else"}, "not an implicit_inverse prior"),
    ({"format": "implicit_inverse.prior", "version": 99}, "version 99"),
    ({"format": "implicit_inverse.prior", "version": 1, "architecture": {"depth": 3},
      "state_dict": {}}, "does not match"),
])
def test_prior_files_of_another_kind_are_refused(tmp_path, payload, message):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(PriorFileError, match=message):
        load_prior_file(path)


def test_missing_and_corrupt_prior_files_are_one_line_errors(tmp_path, tiny_denoiser):
    with pytest.raises(PriorFileError, match="does not exist"):
        load_prior_file(tmp_path / "nowhere.pt")
    path = tmp_path / "cut.pt"
    save_prior_file(path, tiny_denoiser, {})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PriorFileError) as error:
        load_prior_file(path)
    assert "\n" not in str(error.value)


def test_priors_ship_with_cards_and_unknown_names_list_the_available_ones():
    assert {"dncnn-gray", "unet-gray"} <= set(available_priors())
    assert isinstance(load_prior("dncnn-gray")[0], NoiseLevelDenoiser)
    assert isinstance(load_prior()[0], NoiseLevelUNet)
    for name in available_priors():
        _, card = load_prior(name)
        assert {"data", "recipe", "optimizer_steps", "wall_seconds", "hardware"} <= set(card)
        assert "camera" in card["data"] and "held out" in card["data"]
    with pytest.raises(ValueError, match="available priors: dncnn-gray, unet-gray"):
        load_prior("no-such-prior")


# -- training a prior ---------------------------------------------------------------------------
def test_noisy_crops_are_a_pure_function_of_seed_epoch_and_index():
    planes = [np.random.default_rng(0).random((20, 30), dtype=np.float32)]
    crops = NoisyCrops(planes, None, 8, (0.0, 0.1), 4, seed=1)
    first, again = crops[2], NoisyCrops(planes, None, 8, (0.0, 0.1), 4, seed=1)[2]
    torch.testing.assert_close(first[0]["x"], again[0]["x"])
    crops.set_epoch(1)
    assert not torch.equal(crops[2][1], first[1])
    with pytest.raises(ValueError, match="crop=40"):
        NoisyCrops(planes, None, 40, (0.0, 0.1), 4, seed=1)


def test_pretraining_resumes_where_it_stopped(tmp_path):
    planes = [np.random.default_rng(0).random((24, 24), dtype=np.float32)]
    # the learning-rate step is placed by the planned total (decay_at * epochs): an interrupted
    # run continues the same plan; here no step falls inside the three epochs
    options = dict(architecture={"kind": "dncnn", "depth": 3, "width": 4}, crops_per_epoch=8,
                   crop=8, batch_size=4, progress=False, decay_at=1.0)
    straight = pretrain_denoiser(planes, tmp_path / "a", epochs=3, **options)
    pretrain_denoiser(planes, tmp_path / "b", epochs=2, **options)
    resumed = pretrain_denoiser(planes, tmp_path / "b", epochs=3, **options)
    assert len(resumed.history) == 3
    for a, b in zip(straight.module_.parameters(), resumed.module_.parameters()):
        torch.testing.assert_close(a, b)


def test_pretrain_command_writes_a_prior_and_keeps_existing_files(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        write_image(photos / f"p{index}.png", rng.random((3, 24, 24), dtype=np.float32),
                    ImageInfo("PNG", 8, 3, 24, 24))
    out = tmp_path / "prior.pt"
    argv = ["pretrain", str(photos), "--out", str(out), "--checkpoint", str(tmp_path / "ck"),
            "--depth", "3", "--width", "4", "--epochs", "1", "--crops-per-epoch", "4",
            "--crop", "8", "--batch-size", "4"]
    assert main(argv) == 0
    denoiser, card = load_prior_file(out)
    assert card["epochs"] == 1 and denoiser.depth == 3
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err


# -- the proximal map ---------------------------------------------------------------------------
def test_proximal_data_step_is_the_half_quadratic_splitting_step(tiny_denoiser):
    operator = Blur(gaussian_kernel(5, 1.0))
    x, d = torch.rand(2, 1, 12, 12, dtype=torch.float64), torch.rand(2, 1, 12, 12,
                                                                     dtype=torch.float64)
    step = ProximalStep(operator, tiny_denoiser.double(), lam=0.1, sigma=0.02)
    expected = operator.solve_normal(0.1 * x + operator.adjoint(d), 0.1)
    torch.testing.assert_close(step.data_step(x, d), expected)
    zero = ProximalStep(Blur(gaussian_kernel(5, 1.0), boundary="zero"), tiny_denoiser, lam=0.1,
                        sigma=0.02)
    assert zero.data_step(x, d).shape == x.shape


@pytest.mark.parametrize("gradient", ["jfb", "exact", "unrolled"])
def test_every_gradient_strategy_trains_the_proximal_map(tiny_denoiser, gradient):
    operator = Blur(gaussian_kernel(5, 1.0))
    with torch.no_grad():  # a denoiser at the identity: the map is a linear contraction
        tiny_denoiser.residual.body[-1].weight.zero_()
    step = ProximalStep(operator, tiny_denoiser, lam=1.0, sigma=0.03)
    layer = ImplicitLayer(step, solver=Anderson(), gradient=gradient, max_iter=100, tol=1e-4)
    clean = torch.rand(2, 1, 12, 12)
    out = layer(operator(clean))
    assert layer.last_stats.converged.all()
    ((out - clean) ** 2).mean().backward()
    assert step.log_sigma.grad is not None and torch.isfinite(step.log_sigma.grad)
    assert all(p.grad is not None for p in tiny_denoiser.parameters())


def test_exact_gradient_of_the_proximal_map_agrees_with_jfb_in_direction(tiny_denoiser):
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        tiny_denoiser.residual.body[-1].weight.zero_()
    grads = []
    for gradient in ("jfb", Exact(max_iter=200, tol=1e-6)):
        step = ProximalStep(operator, tiny_denoiser, lam=1.0, sigma=0.03)
        layer = ImplicitLayer(step, gradient=gradient, max_iter=200, tol=1e-6)
        tiny_denoiser.zero_grad()
        ((layer(operator(clean)) - clean) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in tiny_denoiser.parameters()]))
    assert torch.nn.functional.cosine_similarity(*grads, dim=0) > 0.5


# -- regularizer specs --------------------------------------------------------------------------
@pytest.mark.parametrize("spec, kind", [("dncnn:5x24", "dncnn"), ("dncnn:17x64", "dncnn"),
                                        ("pretrained", "pretrained"),
                                        ("pretrained:dncnn-gray", "pretrained"),
                                        ("red", "red"), ("red:unet-gray", "red"),
                                        (None, "dncnn")])
def test_regularizer_specs(spec, kind):
    assert parse_regularizer(spec)[0] == kind


@pytest.mark.parametrize("spec", ["dncnn", "dncnn:5", "dncnn:1x8", "dncnn:5x0", "cnn:5x24",
                                  "pretrained:", "red:", "redx", 3])
def test_malformed_regularizer_specs_name_the_accepted_forms(spec):
    with pytest.raises(ValueError, match="regularizer must be .*dncnn:DEPTHxWIDTH"):
        parse_regularizer(spec)


def test_a_dncnn_spec_builds_the_tikhonov_plus_network_with_the_fitted_lam():
    module = build_regularizer("dncnn:3x8", channels=3, lam=0.02)
    assert isinstance(module, TikhonovPlusNetwork) and isinstance(module.network, DnCNN)
    assert module.scale == pytest.approx(2.0) and float(module.alpha) == pytest.approx(0.02)
    assert module.network.body[0].in_channels == 3 and module.network.body[0].out_channels == 8


def test_regularizer_spec_is_built_in_fit_and_exposed_as_regularizer_(blurred):
    X, y = blurred
    est = ImplicitDeblurRegressor(kernel_size=5, kernel_sigma=1.0, regularizer="dncnn:3x8",
                                  max_epochs=1, batch_size=16, random_state=0).fit(X, y)
    assert isinstance(est.regularizer_, TikhonovPlusNetwork)
    assert est.regularizer_.scale == pytest.approx(100 * est.lam_)
    before = est.predict(X[:2])
    with torch.no_grad():
        est.regularizer_.network.body[-1].bias.add_(0.05)
    assert not np.allclose(before, est.predict(X[:2]))
    with pytest.raises(ValueError, match="regularizer must be"):
        clone(est).set_params(regularizer="dncnn:big").fit(X, y)


# -- noise_std: one meaning ---------------------------------------------------------------------
def test_a_float_noise_std_replaces_the_noise_of_the_given_measurements(faces):
    operator = Blur(gaussian_kernel(5, 1.0))
    clean = torch.from_numpy(np.asarray(faces))[:, None]
    fitted = []
    for given_noise in (0.0, 0.05):
        X = (operator(clean) + given_noise * torch.randn(clean.shape)).numpy()[:, 0]
        est = ImplicitDeblurRegressor(operator=operator, noise_std=0.01, max_epochs=1,
                                      batch_size=16, random_state=0).fit(X, faces)
        fitted.append(est)
    assert fitted[0].noise_std_ == fitted[1].noise_std_ == 0.01
    assert fitted[0].lam_ == fitted[1].lam_


# -- zero-shot use ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zero_shot():
    return ImplicitDeblurRegressor.from_pretrained(operator=Blur(disk_kernel(2)), noise_std=0.02,
                                                   max_iter=60)


def test_from_pretrained_predicts_any_size_at_once(zero_shot):
    rng = np.random.default_rng(0)
    for shape in [(1, 40, 40), (2, 33, 50)]:
        clean = rng.random(shape, dtype=np.float32)
        X = zero_shot.operator_(torch.from_numpy(clean)[:, None]).numpy()[:, 0]
        assert zero_shot.predict(X).shape == shape
    assert isinstance(zero_shot.regularizer_, NoiseLevelPrior)
    assert zero_shot.n_iter_ == 0 and zero_shot.lam_ > 0 and zero_shot.prior_sigma_ > 0


def test_from_pretrained_restores_better_than_tikhonov(zero_shot):
    from implicit_inverse.data.photos import load_photo
    clean = np.stack([load_photo("astronaut")[200:264, 200:264]])
    operator = zero_shot.operator_
    X = (operator(torch.from_numpy(clean)[:, None])
         + 0.02 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    tikhonov = operator.solve_normal(operator.adjoint(X), zero_shot.lam_).clamp(0, 1)
    from implicit_inverse.metrics import psnr
    assert zero_shot.score(X.numpy()[:, 0], clean) > psnr(clean, tikhonov.numpy()[:, 0]) + 1.0


def test_from_pretrained_restores_colour_and_checks_its_arguments():
    est = ImplicitDeblurRegressor.from_pretrained(operator=Blur(disk_kernel(1)), noise_std=0.02,
                                                  channels=3, max_iter=40)
    assert est.predict(np.random.default_rng(0).random((1, 3, 24, 24),
                                                       dtype=np.float32)).shape == (1, 3, 24, 24)
    with pytest.raises(ValueError, match="noise_std must be a float"):
        ImplicitDeblurRegressor.from_pretrained(noise_std="auto")
    with pytest.raises(ValueError, match="available priors"):
        ImplicitDeblurRegressor.from_pretrained(noise_std=0.01, name="missing")


def test_from_pretrained_fine_tunes_with_warm_start_and_partial_fit(zero_shot):
    est = ImplicitDeblurRegressor.from_pretrained(operator=zero_shot.operator_, noise_std=0.02,
                                                  max_iter=60, max_epochs=1, batch_size=4,
                                                  warm_start=True, random_state=0)
    before = [p.detach().clone() for p in est.regularizer_.parameters()]
    rng = np.random.default_rng(1)
    clean = rng.random((4, 24, 24), dtype=np.float32)
    X = est.operator_(torch.from_numpy(clean)[:, None]).numpy()[:, 0]
    est.fit(X, clean)
    assert est.n_iter_ == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, est.regularizer_.parameters()))
    est.partial_fit(X, clean)
    assert est.n_iter_ == 2


class HalvedDenoiser(torch.nn.Module):
    """``D(x, sigma) / 2`` of a denoiser ``D``: a prior whose RED map surely contracts."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, sigma):
        return self.denoiser(x, sigma) / 2


def test_a_red_spec_builds_de_grad_with_the_denoiser_residual_as_gradient(tiny_denoiser):
    operator = Blur(gaussian_kernel(5, 1.0))
    denoiser = HalvedDenoiser(tiny_denoiser)
    spec = ModelSpec(operator, regularizer="red", channels=1, lam=0.05, sigma=0.05)
    layer = build_model(spec, prior=denoiser).eval()
    assert isinstance(layer.map, GradientStep)
    assert isinstance(layer.map.prior, DenoiserGradient)
    assert layer.map.prior.denoiser is denoiser
    clean = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    d = operator(clean)
    with torch.no_grad():
        x = layer(d)
        # a fixed point of RED solves A^T (A x - d) + lam (x - D_sigma(x)) = 0
        stationarity = (operator.adjoint(operator(x) - d)
                        + 0.05 * (x - denoiser(x, 0.05)))
    assert bool(layer.last_stats.converged.all())
    assert stationarity.norm() < 1e-3 * operator.adjoint(d).norm()


def test_from_pretrained_offers_the_red_map_and_saves_it(tmp_path):
    est = ImplicitDeblurRegressor.from_pretrained(operator=Blur(disk_kernel(1)), noise_std=0.02,
                                                  fixed_point_map="red", max_iter=60)
    assert est.regularizer == "red:unet-gray-kernels"
    assert isinstance(est.regularizer_, DenoiserGradient)
    assert est.lam_ > 0 and est.prior_sigma_ > 0
    X = np.random.default_rng(0).random((1, 24, 24), dtype=np.float32)
    restored = est.predict(X)
    est.save(tmp_path / "red.pt")
    loaded = ImplicitDeblurRegressor.load(tmp_path / "red.pt")
    assert isinstance(loaded.regularizer_, DenoiserGradient)
    np.testing.assert_allclose(loaded.predict(X), restored, atol=1e-6)
    with pytest.raises(ValueError, match="fixed_point_map must be one of"):
        ImplicitDeblurRegressor.from_pretrained(noise_std=0.01, fixed_point_map="prox")


# -- the command line ---------------------------------------------------------------------------
def test_restore_without_a_model_uses_the_shipped_prior(tmp_path, capsys):
    from implicit_inverse.data.image_files import read_image
    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).random((3, 20, 24), dtype=np.float32)
    write_image(photo, pixels, ImageInfo("PNG", 8, 3, 20, 24))
    out = tmp_path / "out"
    assert main(["restore", str(photo), "--kernel", "disk:1", "--noise", "0.02", "--out",
                 str(out)]) == 0
    assert "pretrained prior default (proximal map)" in capsys.readouterr().out
    restored, info = read_image(out / "photo.png")
    assert restored.shape == (3, 20, 24) and info.bit_depth == 8
    assert main(["restore", str(photo), "--out", str(tmp_path / "o2")]) == 2
    assert "--kernel SPEC and --noise STD" in capsys.readouterr().err
    assert main(["restore", str(photo), "--kernel", "disk:1", "--noise", "0.02", "--prior",
                 "nope", "--out", str(tmp_path / "o3")]) == 2
    assert "available priors" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()
    assert main(["restore", str(photo), "--kernel", "disk:1", "--noise", "0.02", "--map", "red",
                 "--out", str(tmp_path / "o4")]) == 0
    assert "(red map)" in capsys.readouterr().out
    assert (tmp_path / "o4" / "photo.png").exists()


def test_train_from_pretrained_fine_tunes_the_prior(tmp_path, capsys):
    model = tmp_path / "model.pt"
    assert main(["train", "--data", "patches", "--n-images", "4", "--size", "16", "--kernel",
                 "disk:1", "--noise", "0.02", "--from-pretrained", "--epochs", "1",
                 "--max-iter", "10", "--model", str(model)]) == 0
    assert model.exists()
    assert main(["train", "--data", "patches", "--n-images", "4", "--size", "16", "--kernel",
                 "disk:1", "--from-pretrained", "nope", "--epochs", "1",
                 "--model", str(tmp_path / "other.pt")]) == 2
    assert "--from-pretrained: unknown prior 'nope'" in capsys.readouterr().err
