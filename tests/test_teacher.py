import json

import pytest
import torch
from diffusers import UNet2DModel

from diffrep.errors import UserError
from diffrep.teacher import load_teacher
from diffrep.teacher.taps import run_with_taps

TAP_SETS = [["mid_block"], ["down_blocks.1", "mid_block", "up_blocks.0"], ["mid_block.resnets.1.conv2"],
            ["conv_in"], ["up_blocks.2", "down_blocks.0"]]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return load_teacher(tiny_teacher_dir)


def full_pass_with_hooks(unet, x, t, taps):
    """The naive reference: a plain hook on each module, the UNet run to the end."""
    out, handles = {}, []
    for name in taps:
        module = dict(unet.named_modules())[name]
        handles.append(module.register_forward_hook(
            lambda m, a, o, name=name: out.__setitem__(name, o[0] if isinstance(o, tuple) else o)))
    with torch.no_grad():
        unet(x, t)
    for h in handles:
        h.remove()
    return out


@pytest.mark.parametrize("taps", TAP_SETS)
def test_early_exit_equals_a_full_forward_pass(teacher, taps):
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    t = torch.tensor([0, 250, 999])
    feats = teacher.features(x, t, taps)
    reference = full_pass_with_hooks(teacher.unet, x, t, taps)
    assert list(feats) == taps
    for tap in taps:
        torch.testing.assert_close(feats[tap], reference[tap], atol=1e-5, rtol=1e-5)
        assert feats[tap].shape[1:] == teacher.taps[tap][0]


def test_early_exit_stops_after_the_last_tap(teacher):
    ran = []
    handle = teacher.unet.conv_out.register_forward_hook(lambda *a: ran.append("conv_out"))
    up = teacher.unet.up_blocks[0].register_forward_hook(lambda *a: ran.append("up_blocks.0"))
    teacher.features(torch.zeros(2, 1, 16, 16), 10, ["down_blocks.1", "mid_block"])
    assert ran == []
    teacher.features(torch.zeros(2, 1, 16, 16), 10, ["mid_block"], early_exit=False)
    assert ran == ["up_blocks.0", "conv_out"]
    handle.remove(), up.remove()


def test_scalar_t_equals_per_sample_t(teacher):
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    a = teacher.features(x, 50, "mid_block")["mid_block"]
    b = teacher.features(x, torch.tensor([50, 50]), "mid_block")["mid_block"]
    torch.testing.assert_close(a, b)


def test_noised_input_feeds_q_sample(teacher):
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    noise = torch.randn_like(x)
    t = torch.tensor([100, 900])
    abar = teacher.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    noised = teacher.features(x, t, ["mid_block"], input="noised", noise=noise)["mid_block"]
    torch.testing.assert_close(noised, teacher.features(x_t, t, ["mid_block"])["mid_block"])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(teacher.features(x, t, "mid_block", input="noised", generator=g())["mid_block"],
                               teacher.features(x, t, "mid_block", input="noised", generator=g())["mid_block"])


def test_default_schedule_is_ddpm_linear(teacher):
    assert teacher.num_timesteps == 1000
    torch.testing.assert_close(teacher.scheduler.betas[[0, -1]], torch.tensor([1e-4, 0.02]))


def test_scheduler_config_beside_the_unet_is_used(tmp_path, tiny_teacher_dir):
    for f in tiny_teacher_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDPMScheduler", "num_train_timesteps": 500, "beta_schedule": "squaredcos_cap_v2"}))
    assert load_teacher(tmp_path).num_timesteps == 500


def test_wrong_tap_lists_valid_names(teacher):
    with pytest.raises(UserError, match=r"unknown tap 'mid_blok' \(did you mean mid_block.*valid taps: conv_in, "):
        teacher.features(torch.zeros(1, 1, 16, 16), 0, ["mid_blok"])


def test_bad_inputs_are_user_errors(teacher):
    with pytest.raises(UserError, match=r"expects images of shape \(B, 1, 16, 16\)"):
        teacher.features(torch.zeros(1, 3, 16, 16), 0, "mid_block")
    with pytest.raises(UserError, match="timesteps must lie in 0..999"):
        teacher.features(torch.zeros(1, 1, 16, 16), 1000, "mid_block")
    with pytest.raises(UserError, match="unknown teacher input"):
        teacher.features(torch.zeros(1, 1, 16, 16), 0, "mid_block", input="blurred")


def test_taps_list_every_block_with_shapes(teacher):
    taps = teacher.taps
    assert taps["mid_block"][0] == (32, 2, 2) and taps["down_blocks.1"][0] == (16, 4, 4)
    assert "mid_block.resnets.1.conv2" in taps and "conv_out" in taps
    assert "down_blocks.0.resnets.0.nonlinearity" not in taps  # called twice per pass: not a tap


def test_loader_errors(tmp_path, tiny_teacher_dir):
    with pytest.raises(UserError, match="teacher not found"):
        load_teacher(tmp_path / "missing")
    with pytest.raises(UserError, match="not a diffusers UNet2DModel directory"):
        load_teacher(tmp_path)
    (tmp_path / "config.json").write_text((tiny_teacher_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no weights"):
        load_teacher(tmp_path)
    # weights of another architecture: a mismatched checkpoint
    UNet2DModel(**{**json.loads((tiny_teacher_dir / "config.json").read_text()),
                   "block_out_channels": (8, 8, 16, 16), "norm_num_groups": 4}).save_pretrained(
        tmp_path / "other", safe_serialization=True)
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(
        (tmp_path / "other" / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(UserError, match="cannot load the teacher"):
        load_teacher(tmp_path)


def test_run_with_taps_is_model_agnostic():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3))
    x = torch.randn(1, 1, 8, 8)
    out = run_with_taps(net, ["1"], True, x)
    torch.testing.assert_close(out["1"], torch.relu(net[0](x)))
