"""PDAE on ADM (guided-diffusion) teachers: the official ShiftUNet on the official UNet; what PDAE refuses."""
import json

import pytest
import torch
import yaml

from conftest import run_cli
from diffrep import cli
from diffrep.errors import UserError
from diffrep.pdae import ADMGradientEstimator, backbone, eps_and_gradient, load_autoencoder, shifted_eps
from diffrep.pdae.adm_parts import ResBlockShift
from diffrep.teacher import adm_flags
from diffrep.teacher.adm import AttentionBlock, ResBlock
from diffrep.teacher.adm_teacher import adm_architecture
from test_teacher_families import ADM_FLAGS, randomised

# learned sigma, BigGAN up/down res-blocks, new attention order (ADM_FLAGS); and the improved-diffusion style:
# plain resampling, no scale-shift norm, legacy attention order, rescaled timesteps, a cosine schedule
IMPROVED_FLAGS = {"image_size": 32, "num_channels": 32, "num_res_blocks": 2, "attention_resolutions": "16,8",
                  "channel_mult": "1,2,2", "num_heads": 2, "use_scale_shift_norm": False, "rescale_timesteps": True,
                  "noise_schedule": "cosine", "diffusion_steps": 500}
FLAG_SETS = {"guided": ADM_FLAGS, "improved": IMPROVED_FLAGS}
TINY = ["--data", "digits", "--data.train_size", "32", "--optim.batch_size", "4", "--encoder.channels", "[16,32]",
        "--trainer.progress_bar", "false"]


def adm_teacher(flags: dict, seed: int = 0):
    teacher = adm_architecture(flags)
    randomised(teacher.unet, seed)
    return teacher


def inputs(teacher, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 3, teacher.resolution, teacher.resolution, generator=gen)
    t = torch.tensor([0, teacher.num_timesteps // 2, teacher.num_timesteps - 1])
    return x, t, torch.randn(3, 16, generator=gen)


@pytest.mark.parametrize("flags", FLAG_SETS.values(), ids=FLAG_SETS.keys())
def test_the_two_halves_are_the_teachers_eps(flags):
    teacher = adm_teacher(flags)
    x, t, _ = inputs(teacher)
    eps = backbone.decode(teacher, backbone.encode(teacher, x, t))
    assert eps.shape == x.shape  # the learned sigma's half is dropped
    torch.testing.assert_close(eps, teacher.eps(x, t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("flags", FLAG_SETS.values(), ids=FLAG_SETS.keys())
def test_the_estimator_is_the_official_shift_unet_and_starts_as_the_teacher(flags):
    teacher = adm_teacher(flags)
    estimator = backbone.build_estimator(teacher, z_dim=16)
    assert isinstance(estimator, ADMGradientEstimator)
    # the teacher's middle and output blocks, module by module, with every ResBlock (the up-sampling ones too) shifted
    def kinds(module):
        return [(name, ResBlockShift if isinstance(m, (ResBlock, ResBlockShift)) else type(m))
                for name, m in module.named_modules() if isinstance(m, (ResBlock, ResBlockShift, AttentionBlock))]
    for part in ("middle_block", "output_blocks"):
        assert kinds(getattr(estimator, part)) == kinds(getattr(teacher.unet, part))
    assert not any(isinstance(m, ResBlock) for m in estimator.modules())
    assert estimator.z_embedding.weight.shape == (4 * flags["num_channels"], 16)  # the reference's label_emb
    x, t, z = inputs(teacher)
    eps, gradient = eps_and_gradient(teacher, estimator, x, t, z)
    assert gradient.shape == x.shape and not gradient.any()  # zero-initialised shift_out
    torch.testing.assert_close(shifted_eps(teacher, estimator, x, t, z), teacher.eps(x, t), rtol=0, atol=1e-6)


def test_g_depends_on_z_and_trains_only_its_own_parameters():
    teacher = adm_teacher(ADM_FLAGS)
    estimator = randomised(ADMGradientEstimator(adm_flags.as_string(adm_flags.resolve(ADM_FLAGS)), 16), seed=1)
    x, t, z = inputs(teacher)
    _, g1 = eps_and_gradient(teacher, estimator, x, t, z)
    _, g2 = eps_and_gradient(teacher, estimator, x, t, z + 1)
    assert not torch.allclose(g1, g2)
    g1.square().mean().backward()
    assert estimator.z_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.unet.parameters())  # the teacher stays frozen


def test_fit_and_an_application_on_an_adm_checkpoint(tmp_path):
    """Flags given on the command line are saved with the model, so the applications find the teacher again."""
    checkpoint = tmp_path / "adm" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save(adm_teacher(ADM_FLAGS).unet.state_dict(), checkpoint)
    flags = adm_flags.as_string(adm_flags.resolve(ADM_FLAGS))
    run_cli("pdae", "fit", "--teacher", str(checkpoint), "--teacher.flags", flags, *TINY, "--trainer.max_steps", "2",
            "--out", str(tmp_path / "fit"))
    saved = json.loads((tmp_path / "fit" / "model" / "config.json").read_text())
    assert saved["teacher"] == str(checkpoint) and saved["teacher_flags"] == flags
    assert saved["estimator"]["adm_flags"] == flags and saved["estimator"]["z_dim"] == 128  # 4 x num_channels
    model = load_autoencoder(tmp_path / "fit" / "model")
    assert isinstance(model.estimator, ADMGradientEstimator)
    run_cli("pdae", "gap", "--model", str(tmp_path / "fit" / "model"), "--timesteps", "3", "--data.test_size", "8",
            "--progress_bar", "false", "--out", str(tmp_path / "gap"))
    metrics = json.loads((tmp_path / "gap" / "metrics.json").read_text())
    assert metrics["gap_mean_dpm"] > 0 and metrics["gap_mean_pdae"] > 0


def test_a_model_refuses_an_adm_teacher_of_other_flags(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    torch.save(adm_teacher(ADM_FLAGS).unet.state_dict(), checkpoint)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(ADM_FLAGS))
    run_cli("pdae", "fit", "--teacher", str(checkpoint), *TINY, "--trainer.max_steps", "1", "--out",
            str(tmp_path / "fit"))
    other = tmp_path / "other" / "model.pt"
    other.parent.mkdir()
    torch.save(adm_teacher(IMPROVED_FLAGS).unet.state_dict(), other)
    (other.parent / "model.yaml").write_text(yaml.safe_dump(IMPROVED_FLAGS))
    code = cli.main(["pdae", "reconstruct", "--model", str(tmp_path / "fit" / "model"), "--teacher", str(other),
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "another architecture" in err, err


@pytest.mark.parametrize("flags, message", [
    ({**ADM_FLAGS, "class_cond": True}, "unconditional teacher; this ADM model is class-conditional"),
    ({**ADM_FLAGS, "predict_xstart": True}, "predicts x0"),
])
def test_adm_models_pdae_cannot_shift_are_one_line_errors(flags, message):
    with pytest.raises(UserError, match=message):
        backbone.check(adm_architecture(flags))


def test_the_diffae_baseline_refuses_an_adm_teacher(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    torch.save(adm_teacher(ADM_FLAGS).unet.state_dict(), checkpoint)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(ADM_FLAGS))
    code = cli.main(["pdae", "fit-diffae", "--teacher", str(checkpoint), *TINY, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Diff-AE baseline supports diffusers UNet2DModel" in err, err
    assert not (tmp_path / "o").exists()
