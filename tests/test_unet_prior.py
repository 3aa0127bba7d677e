"""The U-Net denoising prior, prior files of either kind, the pretraining options (architecture
specs, bfloat16, channels_last) and the dead-leaves images."""

import numpy as np
import pytest
import torch

from implicit_inverse.cli import main
from implicit_inverse.data.synthetic import dead_leaves, dead_leaves_planes
from implicit_inverse.networks import NoiseLevelDenoiser, NoiseLevelUNet
from implicit_inverse.networks.priors import (PriorFileError, load_prior, load_prior_file,
                                              save_prior_file)
from implicit_inverse.training.denoiser import (parse_architecture, pretrain_denoiser,
                                                with_dead_leaves)


@pytest.fixture
def tiny_unet():
    torch.manual_seed(0)
    return NoiseLevelUNet(widths=(4, 8, 8), blocks=1)


# -- the network --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 13, 22), (1, 1, 3, 5)])
def test_unet_keeps_any_image_size(tiny_unet, shape):
    x = torch.rand(shape)
    assert tiny_unet(x, 0.05).shape == shape


def test_unet_starts_near_the_identity_and_uses_the_noise_level(tiny_unet):
    x = torch.rand(2, 1, 16, 16)
    assert (tiny_unet(x, 0.05) - x).abs().max() < 0.05
    both = tiny_unet(x, torch.tensor([0.01, 0.08]))
    torch.testing.assert_close(both[1:], tiny_unet(x[1:], 0.08))
    assert not torch.equal(both[:1], tiny_unet(x[:1], 0.08))


def test_unet_sees_beyond_a_dncnn_receptive_field(tiny_unet):
    # an impulse 12 px away changes the output at the centre: three scales reach that far
    for layer in tiny_unet.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(layer.weight, std=0.3)
    x = torch.zeros(1, 1, 32, 32)
    moved = x.clone()
    moved[0, 0, 16, 28] = 1.0
    assert (tiny_unet(x, 0.05) - tiny_unet(moved, 0.05))[0, 0, 16, 16].abs() > 0


def test_unet_denoises_colour_channel_by_channel(tiny_unet):
    colour = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(tiny_unet(colour, 0.05)[:, 2:], tiny_unet(colour[:, 2:], 0.05))


@pytest.mark.parametrize("arguments, name", [
    (dict(widths=()), "widths"), (dict(widths=(4, 0)), "widths"), (dict(widths=(4, 2.5)), "widths"),
    (dict(blocks=0), "blocks"), (dict(blocks=True), "blocks")])
def test_unet_rejects_bad_arguments(arguments, name):
    with pytest.raises(ValueError, match=name):
        NoiseLevelUNet(**arguments)


# -- prior files of either kind -------------------------------------------------------------------
def test_unet_prior_file_round_trip(tmp_path, tiny_unet):
    save_prior_file(tmp_path / "u.pt", tiny_unet, {"epochs": 1})
    loaded, _ = load_prior_file(tmp_path / "u.pt")
    assert isinstance(loaded, NoiseLevelUNet) and loaded.widths == (4, 8, 8)
    x = torch.rand(1, 1, 12, 12)
    torch.testing.assert_close(loaded(x, 0.03), tiny_unet(x, 0.03))


def test_prior_files_without_a_kind_are_dncnns(tmp_path):
    torch.manual_seed(0)
    dncnn = NoiseLevelDenoiser(depth=3, width=4)
    payload = {"format": "implicit_inverse.prior", "version": 1,
               "architecture": dncnn.architecture(), "state_dict": dncnn.state_dict(), "card": {}}
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_prior_file(tmp_path / "old.pt")
    assert isinstance(loaded, NoiseLevelDenoiser) and loaded.depth == 3


@pytest.mark.parametrize("kind", ["transformer", ["unet"], 3])
def test_unknown_denoiser_kind_is_a_one_line_error(tmp_path, kind):
    payload = {"format": "implicit_inverse.prior", "version": 1,
               "architecture": {"kind": kind}, "state_dict": {}, "card": {}}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(PriorFileError, match="kind"):
        load_prior_file(tmp_path / "bad.pt")


# -- pretraining options --------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("dncnn:12x32", {"kind": "dncnn", "depth": 12, "width": 32}),
    ("unet:16,32,64,128", {"kind": "unet", "widths": [16, 32, 64, 128], "blocks": 1}),
    ("unet:8,16x2", {"kind": "unet", "widths": [8, 16], "blocks": 2})])
def test_architecture_specs(spec, expected):
    assert parse_architecture(spec) == expected


@pytest.mark.parametrize("spec", ["dncnn:12", "unet:", "resnet:3x3", "unet:8,a", "dncnn12x32"])
def test_bad_architecture_specs_say_what_is_expected(spec):
    with pytest.raises(ValueError, match="dncnn:DEPTHxWIDTH"):
        parse_architecture(spec)


def _pretrain(tmp_path, name, **options):
    planes = [np.random.default_rng(0).random((24, 24), dtype=np.float32)]
    return pretrain_denoiser(planes, tmp_path / name, epochs=1, crops_per_epoch=8, crop=16,
                             batch_size=4, progress=False,
                             architecture={"kind": "unet", "widths": [4, 8]}, **options)


def test_channels_last_training_gives_the_same_network(tmp_path):
    plain = _pretrain(tmp_path, "plain")
    last = _pretrain(tmp_path, "last", channels_last=True)
    for a, b in zip(plain.module_.parameters(), last.module_.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_training_keeps_float32_weights_and_learns(tmp_path):
    net = _pretrain(tmp_path, "bf16", precision="bfloat16")
    assert all(p.dtype == torch.float32 for p in net.module_.parameters())
    assert np.isfinite(net.history[-1, "train_loss"])
    untrained = _pretrain(tmp_path, "fp32")
    assert any(not torch.allclose(a, b) for a, b in
               zip(net.module_.parameters(), untrained.module_.parameters()))


def test_pretraining_rejects_unknown_kinds_and_precisions(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        pretrain_denoiser([np.zeros((16, 16), np.float32)], tmp_path, architecture={"kind": "x"})
    with pytest.raises(ValueError, match="precision"):
        _pretrain(tmp_path, "p", precision="int8")


def test_pretrain_command_trains_a_unet_with_dead_leaves(tmp_path):
    out = tmp_path / "u.pt"
    argv = ["pretrain", "--out", str(out), "--checkpoint", str(tmp_path / "ck"), "--net",
            "unet:4,8", "--precision", "bfloat16", "--channels-last", "--dead-leaves", "0.5",
            "--epochs", "1", "--crops-per-epoch", "4", "--crop", "16", "--batch-size", "4"]
    assert main(argv) == 0
    denoiser, card = load_prior_file(out)
    assert isinstance(denoiser, NoiseLevelUNet)
    assert "dead-leaves" in card["data"] and "bfloat16" in card["recipe"]


@pytest.mark.parametrize("option, value", [("--net", "unet:x"), ("--dead-leaves", "1.0")])
def test_pretrain_command_reports_bad_options(tmp_path, capsys, option, value):
    argv = ["pretrain", "--out", str(tmp_path / "u.pt"), "--checkpoint", str(tmp_path / "ck"),
            option, value]
    assert main(argv) == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "u.pt").exists()


# -- dead leaves ----------------------------------------------------------------------------------
def test_dead_leaves_are_reproducible_images_with_edges_at_many_scales():
    first = dead_leaves_planes(3, 64, seed=1)
    again = dead_leaves_planes(3, 64, seed=1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    image = first[0]
    assert image.dtype == np.float32 and image.shape == (64, 64)
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    assert not np.array_equal(first[0], dead_leaves_planes(1, 64, seed=2)[0])


def test_dead_leaves_reject_bad_radii():
    with pytest.raises(ValueError, match="radius_range"):
        dead_leaves(16, np.random.default_rng(0), radius_range=(4.0, 2.0))


def test_dead_leaves_weights_give_the_asked_share_of_crops():
    photos = [np.zeros((8, 8), np.float32)] * 6
    planes, weights = with_dead_leaves(photos, 0.25, count=4, size=16)
    assert len(planes) == 10
    share = sum(weights[6:]) / sum(weights)
    assert share == pytest.approx(0.25)
    assert with_dead_leaves(photos, 0.0) == (photos, None)
    with pytest.raises(ValueError, match="fraction"):
        with_dead_leaves(photos, 1.0)


# -- the RED gradient -----------------------------------------------------------------------------
def test_red_gradient_is_the_weighted_denoiser_residual(tiny_unet):
    from implicit_inverse.networks.denoiser import DenoiserGradient

    x = torch.rand(2, 1, 12, 12)
    gradient = DenoiserGradient(tiny_unet, sigma=0.03, weight=0.5)
    torch.testing.assert_close(gradient(x), 0.5 * (x - tiny_unet(x, 0.03)))
    for bad in (dict(sigma=0.0, weight=1.0), dict(sigma=0.1, weight=-1.0),
                dict(sigma=True, weight=1.0), dict(sigma=0.1, weight="1")):
        with pytest.raises(ValueError, match="sigma|weight"):
            DenoiserGradient(tiny_unet, **bad)


class _Shrink(torch.nn.Module):
    """``D(x, sigma) = x / (1 + 10 sigma)``: its RED gradient is Tikhonov's ``c x``."""

    def forward(self, x, sigma):
        return x / (1 + 10 * sigma)


def test_red_fixed_point_of_a_shrinking_denoiser_is_the_tikhonov_solution():
    from implicit_inverse.equilibrium import Anderson, GradientStep
    from implicit_inverse.networks.denoiser import DenoiserGradient
    from implicit_inverse.operators import Blur, gaussian_kernel

    operator = Blur(gaussian_kernel(5, 1.0))
    d = operator(torch.rand(1, 1, 16, 16, dtype=torch.float64))
    red = DenoiserGradient(_Shrink(), sigma=0.1, weight=0.2)   # R(x) = 0.2 * 0.5 x
    step = GradientStep(operator, red, precondition=True, lam=0.1, initializer="tikhonov")
    with torch.no_grad():
        x, stats = Anderson().solve(lambda x, index: step(x, d[index]), step.initial_point(d),
                                    max_iter=200, tol=1e-9)
    assert bool(stats.converged.all())
    torch.testing.assert_close(x, operator.solve_normal(operator.adjoint(d), 0.1))


# -- the prior trained across kernels -------------------------------------------------------------
def test_deblurring_uses_the_prior_trained_across_kernels_by_default():
    from implicit_inverse import ImplicitDeblurRegressor, ImplicitRegressor
    from implicit_inverse.operators import Blur, disk_kernel

    _, card = load_prior("unet-gray-kernels")
    assert "JFB across random kernels" in card["across_kernels"]
    model = ImplicitDeblurRegressor.from_pretrained(Blur(disk_kernel(2)), noise_std=0.01,
                                                    lam=0.05)
    assert model.regularizer == "pretrained:unet-gray-kernels"
    assert ImplicitRegressor.default_prior is None
    named = ImplicitDeblurRegressor.from_pretrained(Blur(disk_kernel(2)), noise_std=0.01,
                                                    lam=0.05, name="dncnn-gray")
    assert named.regularizer == "pretrained:dncnn-gray"


def test_random_blurs_cover_the_three_families_within_the_size_limit():
    from implicit_inverse.training.across_kernels import MAX_KERNEL, random_blur

    rng = np.random.default_rng(0)
    shapes = [random_blur(rng).kernel.shape for _ in range(30)]
    assert all(max(shape) <= MAX_KERNEL for shape in shapes)
    assert len(set(shapes)) > 5


def test_one_across_kernels_step_moves_the_denoiser_and_records_the_solve(tiny_unet):
    from implicit_inverse.training.across_kernels import AcrossKernelsTrainer

    planes = [np.random.default_rng(0).random((40, 40), dtype=np.float32)]
    before = [p.detach().clone() for p in tiny_unet.parameters()]
    trainer = AcrossKernelsTrainer(tiny_unet, planes, crop=16, batch_size=2, max_iter=5)
    entry = trainer.step()
    assert trainer.steps_ == 1 and set(entry) == {"loss", "penalty", "iterations", "converged",
                                                 "seconds"}
    assert np.isfinite(entry["loss"]) and 1 <= entry["iterations"] <= 5
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny_unet.parameters()))
    with pytest.raises(ValueError, match="noise_range"):
        AcrossKernelsTrainer(tiny_unet, planes, noise_range=(0.1, 0.0))


def test_across_kernels_checkpoint_continues_as_an_uninterrupted_run(tiny_unet, tmp_path):
    """Two steps, a checkpoint, and a fresh trainer loading it take the same third step as the
    trainer that went on (same blur, crops and weights); a folder without one changes nothing."""
    import copy

    from implicit_inverse.training.across_kernels import AcrossKernelsTrainer

    planes = [np.random.default_rng(0).random((40, 40), dtype=np.float32)]
    settings = dict(crop=16, batch_size=2, max_iter=5)
    trainer = AcrossKernelsTrainer(copy.deepcopy(tiny_unet), planes, **settings)
    trainer.step(), trainer.step()
    trainer.save_checkpoint(tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "optimizer.pt", "params.pt", "trainer.json"]
    resumed = AcrossKernelsTrainer(copy.deepcopy(tiny_unet), planes, **settings)
    assert not resumed.load_checkpoint(tmp_path / "nothing")
    assert resumed.load_checkpoint(tmp_path / "state") and resumed.steps_ == 2
    expected, got = trainer.step(), resumed.step()
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    for a, b in zip(trainer.denoiser.parameters(), resumed.denoiser.parameters()):
        torch.testing.assert_close(a, b)
    assert len(resumed.history_) == 3


@pytest.mark.parametrize("penalty", ["spectral", "frobenius"])
def test_across_kernels_jacobian_penalty_is_recorded(tiny_unet, penalty):
    from implicit_inverse.training.across_kernels import AcrossKernelsTrainer

    planes = [np.random.default_rng(0).random((40, 40), dtype=np.float32)]
    trainer = AcrossKernelsTrainer(tiny_unet, planes, crop=16, batch_size=2, max_iter=5,
                                   jacobian_weight=1.0, penalty=penalty, margin=0.0)
    entry = trainer.step()
    assert entry["penalty"] > 0 and np.isfinite(entry["loss"])
    with pytest.raises(ValueError, match="penalty"):
        AcrossKernelsTrainer(tiny_unet, planes, penalty="nuclear")
    with pytest.raises(ValueError, match="jacobian_weight"):
        AcrossKernelsTrainer(tiny_unet, planes, jacobian_weight=-1.0)
