import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from conftest import TINY_UNET, killed_at_step, run_cli
from diffrep import cli
from diffrep import config as config_lib
from diffrep.data import load
from diffrep.errors import UserError
from diffrep.pdae import (GradientEstimator, SemanticEncoder, eps_and_gradient, load_autoencoder, loss_weights,
                          posterior_mean, posterior_variance, predicted_x0, shift_coefficient, shifted_eps)
from diffrep.pdae import baseline, fit
from diffrep.pdae.autoencoder import PDAE
from diffrep.pdae.module import PDAEModule
from diffrep.pdae.precision import use_precision
from diffrep.pdae.zblock import ZResnetBlock2D
from diffrep.teacher import SHIPPED_TEACHER, Teacher, load_teacher
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.train import step_generator

TINY_PDAE = ["--data", "digits", "--data.train_size", "64", "--optim.batch_size", "8", "--encoder.channels", "[16,32]",
             "--trainer.log_every_n_steps", "1", "--trainer.progress_bar", "false"]
# every kind of block a UNet2DModel teacher may use: resnet up/down-samplers, two layers, attention at both ends
VARIANT_UNET = {**TINY_UNET, "layers_per_block": 2, "upsample_type": "resnet", "downsample_type": "resnet",
                "resnet_time_scale_shift": "scale_shift", "mid_block_scale_factor": 2.0, "dropout": 0.1,
                "down_block_types": ("AttnDownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "AttnUpBlock2D")}


def tiny_cfg(module, teacher_dir, out, **overrides):
    args = [a for pair in overrides.items() for a in (f"--{pair[0]}", str(pair[1]))]
    cfg = config_lib.resolve(module.DEFAULTS, None, [*TINY_PDAE[2:], *args])
    return {**cfg, "teacher": str(teacher_dir), "out": str(out), "data": {**cfg["data"], "name": "digits"}}


def random_teacher(config: dict) -> Teacher:
    torch.manual_seed(0)
    return Teacher(UNet2DModel(**config), ddpm_scheduler())


def shipped_config() -> dict:
    config = json.loads((SHIPPED_TEACHER / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_encoder_is_the_reference_network_at_128_and_64_px():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SemanticEncoder(3, 128, 512)) == 3_914_240  # reference 2.1, its own arithmetic
    assert count(SemanticEncoder(3, 64, 512)) == 1_487_104   # "about 1.49M"
    assert SemanticEncoder(1, 32, 128)(torch.randn(2, 1, 32, 32)).shape == (2, 128)


@pytest.mark.parametrize("config", [TINY_UNET, VARIANT_UNET, "shipped"], ids=["tiny", "variant", "shipped"])
def test_estimator_mirrors_the_decoder_and_starts_as_the_teacher(config):
    teacher = random_teacher(shipped_config() if config == "shipped" else config)
    estimator = GradientEstimator(teacher.unet.config, z_dim=8)
    decoder_resnets = [n for n, m in teacher.unet.named_modules() if type(m).__name__ == "ResnetBlock2D"
                       and n.startswith(("mid_block", "up_blocks"))]
    assert sorted(n for n, m in estimator.named_modules() if isinstance(m, ZResnetBlock2D)) == sorted(decoder_resnets)
    res = teacher.resolution
    x, t, z = torch.randn(3, teacher.channels, res, res), torch.tensor([0, 400, 999]), torch.randn(3, 8)
    eps, gradient = eps_and_gradient(teacher, estimator, x, t, z)
    assert gradient.shape == x.shape and not gradient.any()  # zero-initialised output conv
    assert torch.equal(shifted_eps(teacher, estimator, x, t, z), teacher.unet(x, t).sample)


def test_the_shift_moves_the_posterior_mean_by_sigma_times_g():
    abar = ddpm_scheduler().alphas_cumprod
    coef = shift_coefficient(abar)
    assert coef[0] == 0 and [round(-float(coef[t]), 3) for t in (10, 100, 500, 999)] == [0.040, 0.318, 0.955, 0.990]
    torch.manual_seed(0)
    t = torch.tensor([1, 10, 300, 999])
    x_t, eps, g = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    eps_hat = eps + coef[t].view(-1, 1, 1, 1) * g  # the code's convention: "+ shift_coef * G", shift_coef < 0
    moved = posterior_mean(abar, x_t, t, predicted_x0(abar, x_t, t, eps_hat))
    base = posterior_mean(abar, x_t, t, predicted_x0(abar, x_t, t, eps))
    torch.testing.assert_close(moved - base, posterior_variance(abar)[t].view(-1, 1, 1, 1) * g, rtol=1e-3, atol=1e-5)


def test_weightings_against_hand_formulas():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    pdae, none, p2 = (loss_weights(abar, name) for name in ("pdae", "none", "p2"))
    for t in (0, 10, 100, 475, 999):
        s = float(abar[t] / (1 - abar[t]))
        assert pdae[t] == pytest.approx(s ** 0.1 / (1 + s), rel=1e-4)
        assert p2[t] == pytest.approx(1 / (1 + s), rel=1e-4)
        assert none[t] == 1
    assert int(pdae.argmax()) == 475 and float(pdae.max()) == pytest.approx(0.722, abs=1e-3)  # reference 1.5
    assert float(pdae[100]) == pytest.approx(0.13, abs=5e-3) and float(pdae[0]) == pytest.approx(2.5e-4, rel=0.05)
    assert loss_weights(abar, "pdae", gamma=0.5)[200] == pytest.approx(float((abar[200] / (1 - abar[200])) ** 0.5
                                                                              / (1 / (1 - abar[200]))), rel=1e-4)


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`:UserWarning")  # the step is called by hand
def test_the_step_trains_only_e_and_g_with_the_weighted_shifted_loss(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    before = {k: v.clone() for k, v in teacher.unet.state_dict().items()}
    model = PDAE(SemanticEncoder(1, 16, 8, [16, 32]), GradientEstimator(teacher.unet.config, 8))
    torch.nn.init.constant_(model.estimator.conv_out.bias, 0.5)  # G = 0.5 everywhere: the loss shows its sign
    weights = loss_weights(teacher.alphas_cumprod)
    data = load({"name": "digits", "resolution": 16, "channels": 1, "train_size": 16}, "train")
    module = PDAEModule(teacher, model, weights, {"lr": 1e-3, "batch_size": 8, "ema_decay": 0.9}, data, 0, False)
    x0, _ = next(iter(module.train_dataloader()))

    gen = step_generator(0, 0, stream=2)  # the draws of step 0
    t = torch.randint(0, 1000, (8,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    abar = teacher.alphas_cumprod[t].view(-1, 1, 1, 1)
    eps = teacher.unet(abar.sqrt() * x0 + (1 - abar).sqrt() * noise, t).sample
    expected = (weights[t].view(-1, 1, 1, 1) * (noise - eps - shift_coefficient(teacher.alphas_cumprod)[t]
                                                .view(-1, 1, 1, 1) * 0.5) ** 2).mean()
    loss = module.training_step((x0, None), 0)
    torch.testing.assert_close(loss, expected)

    opt = module.configure_optimizers()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    for _ in range(3):
        opt.zero_grad()
        module.training_step((x0, None), 0).backward()
        opt.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.unet.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.unet.state_dict().items())
    assert not all(torch.equal(encoder_before[k], v) for k, v in model.encoder.state_dict().items())
    assert {n for n, _ in module.named_parameters() if not n.startswith("ema.")} == \
        {f"model.{n}" for n, _ in model.named_parameters()}  # the teacher is no submodule


def test_fit_writes_metrics_and_a_loadable_model(tiny_teacher_dir, tmp_path):
    out = tmp_path / "run"
    run_cli("pdae", "fit", "--teacher", str(tiny_teacher_dir), *TINY_PDAE, "--trainer.max_steps", "3",
            "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["final_loss"] > 0 and metrics["train_seconds"] > 0
    assert "z_dim: 64" in (out / "config.yaml").read_text()  # the tiny teacher's time-embedding width
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["kind"] == "pdae" and saved["teacher"] == str(tiny_teacher_dir)
    model = load_autoencoder(out / "model")
    teacher = load_teacher(saved["teacher"])
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    z = model.encoder(x)
    assert z.shape == (2, 64)
    assert shifted_eps(teacher, model.estimator, x, torch.tensor([5, 500]), z).shape == x.shape
    assert {"train/loss", "train/mse"} <= set((out / "logs" / "metrics.csv").read_text().splitlines()[0].split(","))


def test_a_crashed_run_resumes_to_the_same_model(tiny_teacher_dir, tmp_path, monkeypatch):
    options = {"trainer.checkpoint_every_n_steps": 2, "trainer.max_steps": 4, "optim.ema_decay": 0.5,
               "optim.lr": 1e-3}
    fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "straight", **options))
    with killed_at_step(monkeypatch, PDAEModule):
        fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "resumed", **options))
    fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "resumed", **options), resume=True)
    straight, resumed = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "resumed"))
    assert a["steps"] == b["steps"] == 4 and a["final_loss"] == b["final_loss"]


def test_a_warm_start_continues_from_a_saved_model_of_the_same_teacher(tiny_teacher_dir, tmp_path):
    fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "first", **{"trainer.max_steps": 2}))
    init = tmp_path / "first" / "model"
    fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "more", init=init,
                     **{"trainer.max_steps": 1, "optim.lr": 1e-12}))  # a step that moves nothing
    first, more = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("first", "more"))
    for key in first:
        torch.testing.assert_close(more[key], first[key], rtol=0, atol=1e-6, msg=key)
    saved = json.loads((tmp_path / "more" / "model" / "config.json").read_text())
    assert (saved["steps"], saved["init_steps"]) == (1, 2)
    with pytest.raises(UserError, match="another encoder or estimator"):
        fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "wider", init=init, z_dim=32))
    other = tmp_path / "other-teacher"
    shutil.copytree(tiny_teacher_dir, other)
    with pytest.raises(UserError, match="was trained on the teacher"):
        fit.run(tiny_cfg(fit, other, tmp_path / "other", init=init))


def test_the_diffae_baseline_trains_a_whole_z_conditioned_unet(tiny_teacher_dir, tmp_path):
    metrics = baseline.run(tiny_cfg(baseline, tiny_teacher_dir, tmp_path, **{"trainer.max_steps": 2}))
    assert metrics["steps"] == 2 and metrics["final_loss"] == metrics["final_mse"]  # the plain eps loss
    model = load_autoencoder(tmp_path / "model")
    blocks = [m for m in model.unet.modules() if isinstance(m, ZResnetBlock2D)]
    assert len(blocks) == 14 and not any(b.z_shift for b in blocks)  # down, mid and up; z scales only
    teacher = load_teacher(tiny_teacher_dir)
    assert metrics["parameters"] > sum(p.numel() for p in teacher.unet.parameters())  # trained from scratch
    x = torch.randn(2, 1, 16, 16)
    assert model.unet(x, torch.tensor([1, 2]), model.encoder(x)).shape == x.shape


@pytest.mark.parametrize("command, option, value, message", [
    ("fit", "--weighting", "p3", "--weighting must be one of pdae, none, p2, got 'p3'"),
    ("fit", "--data.resolution", "32", "data.resolution is 32 but the teacher expects 16"),
    ("fit", "--z_dim", "0", "--z_dim must be an integer >= 1 (or null), got 0"),
    ("fit", "--gamma", "high", "--gamma must be a number >= 0, got 'high'"),
    ("fit", "--encoder.channels", "[16,16,16,16,16]", "do not divide 16 x 16 images evenly"),
    ("fit-diffae", "--weighting", "none", "unknown option 'weighting'"),
])
def test_bad_options_are_one_line_errors(tiny_teacher_dir, tmp_path, capsys, command, option, value, message):
    code = cli.main(["pdae", command, "--teacher", str(tiny_teacher_dir), *TINY_PDAE, option, value,
                     "--trainer.max_steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_an_unsupported_teacher_is_a_one_line_error(tmp_path, capsys):
    skip = {**TINY_UNET, "down_block_types": ("DownBlock2D",) * 3 + ("SkipDownBlock2D",),
            "up_block_types": ("SkipUpBlock2D",) + ("UpBlock2D",) * 3}
    UNet2DModel(**skip).save_pretrained(tmp_path / "teacher", safe_serialization=True)
    code = cli.main(["pdae", "fit", "--teacher", str(tmp_path / "teacher"), *TINY_PDAE, "--trainer.max_steps", "1",
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "SkipDownBlock2D" in err, err


def test_float64_schedule_gives_the_official_shift_coefficient_and_weights(tiny_teacher_dir):
    """The official code computes alpha_t, abar_t, the SNR, lambda_t and the shift coefficient in float64 from
    np.linspace betas and casts at use; with precision float64 diffrep's float32 values are the same numbers."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    official_shift = (-np.sqrt(alphas) * (1.0 - abar_prev) / np.sqrt(1.0 - abar)).astype(np.float32)
    snr = abar / (1.0 - abar)
    official_weight = (snr ** 0.1 / (1.0 + snr)).astype(np.float32)

    teacher = use_precision(load_teacher(tiny_teacher_dir), "float64")
    ours_shift = shift_coefficient(teacher.alphas_cumprod).numpy()
    np.testing.assert_allclose(ours_shift, official_shift, rtol=2e-7, atol=0)  # float32 rounding at most
    np.testing.assert_allclose(loss_weights(teacher.alphas_cumprod).numpy(), official_weight, rtol=2e-7, atol=0)
    float32_teacher = use_precision(load_teacher(tiny_teacher_dir), "float32")  # the option keeps the old values
    assert np.abs(shift_coefficient(float32_teacher.alphas_cumprod).numpy()[1:4] / official_shift[1:4] - 1).max() > 1e-5
