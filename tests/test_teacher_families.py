"""Every teacher family through one API: diffusers UNet2DModel, ADM .pt checkpoints, latent (Stable Diffusion-style)
UNets and DiT, plus Hugging Face ids from the local cache. Tiny random models built here; nothing is downloaded."""
import json
import math
import shutil
import socket

import pytest
import torch
import yaml
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DiTTransformer2DModel,
    UNet2DConditionModel,
    UNet2DModel,
)
from safetensors.torch import load_file, save_file

from diffrep import cli
from diffrep.errors import UserError
from diffrep.teacher import adm_flags, load_teacher, teacher_from_config
from diffrep.teacher.adm import ADMUNet
from diffrep.teacher.adm_teacher import adm_architecture
from diffrep.teacher.taps import discover

ADM_FLAGS = {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "attention_resolutions": "16",
             "channel_mult": "1,2", "learn_sigma": True, "num_head_channels": 16, "resblock_updown": True,
             "use_new_attention_order": True}
ADM_FLAG_STRING = ("--image_size 32 --num_channels 32 --num_res_blocks 1 --attention_resolutions 16 --channel_mult 1,2 "
                   "--learn_sigma True --num_head_channels 16 --resblock_updown True --use_new_attention_order True")
FAMILIES = ["unet2d", "adm", "latent-unet", "dit"]
DEFAULT_TAP = {"unet2d": "mid_block", "adm": "middle_block", "latent-unet": "mid_block", "dit": "transformer_blocks.0"}
TWO_TAPS = {"unet2d": ["down_blocks.1", "mid_block"], "adm": ["input_blocks.2", "middle_block"],
            "latent-unet": ["down_blocks.0", "mid_block"], "dit": ["pos_embed", "transformer_blocks.0"]}
LAST_MODULE = {"unet2d": "conv_out", "adm": "out", "latent-unet": "conv_out", "dit": "proj_out_2"}
SHAPE = {"unet2d": (1, 16), "adm": (3, 32), "latent-unet": (3, 16), "dit": (3, 16)}  # (channels, resolution)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """ADM and DiT start with zeroed output layers (blocks are identities): fill every weight so tests can tell."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                         norm_num_groups=8, sample_size=16)


def save_pipeline(root, name: str, denoiser, scheduler: DDPMScheduler):
    denoiser.save_pretrained(root / name, safe_serialization=True)
    tiny_vae().save_pretrained(root / "vae", safe_serialization=True)
    scheduler.save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def adm_checkpoint(tmp_path_factory):
    """model.pt (torch.save of the state dict, as the releases ship) with its flags in model.yaml beside it."""
    folder = tmp_path_factory.mktemp("adm")
    torch.manual_seed(0)
    torch.save(randomised(adm_architecture(ADM_FLAGS).unet).state_dict(), folder / "model.pt")
    (folder / "model.yaml").write_text(yaml.safe_dump(ADM_FLAGS))
    return folder / "model.pt"


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8)
    return save_pipeline(tmp_path_factory.mktemp("sd"), "unet", unet, DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012))


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory):
    torch.manual_seed(0)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2)
    return save_pipeline(tmp_path_factory.mktemp("dit"), "transformer", randomised(dit), DDPMScheduler())


@pytest.fixture(scope="module")
def paths(tiny_teacher_dir, adm_checkpoint, sd_dir, dit_dir):
    return {"unet2d": tiny_teacher_dir, "adm": adm_checkpoint, "latent-unet": sd_dir, "dit": dit_dir}


@pytest.fixture(scope="module")
def teachers(paths):
    return {family: load_teacher(path) for family, path in paths.items()}


def images(family: str, n: int = 2, seed: int = 0) -> torch.Tensor:
    channels, size = SHAPE[family]
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def full_pass_with_hooks(teacher, x, t, taps):
    """The naive reference: plain hooks on the denoiser, run to the end with the teacher's conditioning."""
    out, modules = {}, dict(teacher.unet.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda m, a, o, name=name: out.__setitem__(name, o[0] if isinstance(o, tuple) else o)) for name in taps]
    args, kwargs = teacher.denoiser_inputs(x, t)
    with torch.no_grad():
        teacher.unet(*args, **kwargs)
    for handle in handles:
        handle.remove()
    return {name: teacher.as_map(value) for name, value in out.items()}


# --- one API for every family ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_family_resolution_and_default_tap(teachers, family):
    teacher = teachers[family]
    assert teacher.family == family and teacher.default_tap == DEFAULT_TAP[family]
    assert (teacher.channels, teacher.resolution) == SHAPE[family]
    assert teacher.default_tap in teacher.taps and all(len(shape) == 3 for shape, _ in teacher.taps.values())
    assert isinstance(teacher.unet, {"unet2d": UNet2DModel, "adm": ADMUNet, "latent-unet": UNet2DConditionModel,
                                     "dit": DiTTransformer2DModel}[family])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("t, mode", [(0, "clean"), (500, "noised")])
def test_early_exit_equals_a_full_pass_with_hooks(teachers, family, t, mode):
    teacher, taps = teachers[family], TWO_TAPS[family]
    x0 = images(family)
    ran = []
    handle = dict(teacher.unet.named_modules())[LAST_MODULE[family]].register_forward_hook(lambda *a: ran.append(1))
    try:
        feats = teacher.features(x0, t, taps, input=mode, generator=torch.Generator().manual_seed(1))
        assert ran == []  # stopped after the last requested tap
        naive = teacher.features(x0, t, taps, input=mode, generator=torch.Generator().manual_seed(1),
                                 early_exit=False)
        assert ran == [1]
    finally:
        handle.remove()
    t_vec = torch.full((len(x0),), t)
    x = teacher.encode(x0)
    if mode == "noised":
        x = teacher.noised(x, t_vec, generator=torch.Generator().manual_seed(1))
    reference = full_pass_with_hooks(teacher, x, t_vec, taps)
    assert list(feats) == taps
    for tap in taps:
        assert feats[tap].shape == (2, *teacher.taps[tap][0])
        torch.testing.assert_close(feats[tap], reference[tap], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats[tap], naive[tap], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_taps_found_on_shapes_only_equal_a_real_pass(teachers, family):
    teacher = teachers[family]
    args, kwargs = teacher.denoiser_inputs(torch.zeros(1, *teacher.model_shape), torch.zeros(1, dtype=torch.long))
    real = discover(teacher.unet, args, kwargs, teacher.as_map)
    assert list(teacher.taps.items()) == list(real.items())


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_info_lists_every_family(paths, family, capsys):
    assert cli.main(["teacher", "info", str(paths[family]), "--depth", "1"]) == 0
    out = capsys.readouterr().out
    shape = " x ".join(map(str, load_teacher(paths[family]).taps[DEFAULT_TAP[family]][0]))
    assert f"{family} family, default tap {DEFAULT_TAP[family]}" in out
    assert any(line.split()[:1] == [DEFAULT_TAP[family]] and shape in line for line in out.splitlines())


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_runs_on_every_family(paths, family, tmp_path):
    out = tmp_path / "probe"
    assert cli.main(["probe", "--teacher", str(paths[family]), "--data", "digits", "--data.train_size", "100",
                     "--data.test_size", "50", "--timesteps", "0,500", "--taps", DEFAULT_TAP[family], "--inputs",
                     "clean", "--random_teacher", "false", "--progress_bar", "false", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_tap"] == DEFAULT_TAP[family] and 0.0 <= metrics["best_accuracy"] <= 1.0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["data"]["channels"], config["data"]["resolution"]) == SHAPE[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_eps_is_the_epsilon_prediction(teachers, family):
    teacher = teachers[family]
    x_t = torch.randn(2, *teacher.model_shape, generator=torch.Generator().manual_seed(0))
    args, kwargs = teacher.denoiser_inputs(x_t, torch.tensor([3, 3]))
    out = teacher.unet(*args, **kwargs)
    out = out.sample if hasattr(out, "sample") else out
    half = {"adm": 3, "dit": 4}.get(family)  # learned sigma: (eps, variance) along channels
    assert out.shape[1] == 2 * half if half else out.shape[1] == x_t.shape[1]
    torch.testing.assert_close(teacher.eps(x_t, 3), out[:, :half] if half else out)


@pytest.mark.parametrize("family", FAMILIES)
def test_reinitialized_is_a_seeded_random_teacher_of_the_same_family(teachers, family):
    teacher = teachers[family]
    a, b = teacher.reinitialized(7), teacher.reinitialized(7)
    assert a.family == family and a.path is None and a.taps == teacher.taps
    first = [next(t.unet.parameters()) for t in (a, b, teacher)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])


def test_teacher_from_config_takes_a_path_or_a_mapping(adm_checkpoint, tiny_teacher_dir):
    assert teacher_from_config(str(tiny_teacher_dir)).family == "unet2d"
    bare = adm_checkpoint.parent / "bare"
    bare.mkdir(exist_ok=True)
    shutil.copy(adm_checkpoint, bare / "model.pt")
    assert teacher_from_config({"path": str(bare / "model.pt"), "flags": ADM_FLAG_STRING}).family == "adm"
    with pytest.raises(UserError, match="unknown teacher option 'flag'"):
        teacher_from_config({"path": str(bare / "model.pt"), "flag": ADM_FLAG_STRING})
    with pytest.raises(UserError, match="teacher must be a path"):
        teacher_from_config(3)
    with pytest.raises(UserError, match="ADM flags and presets apply to ADM"):
        load_teacher(tiny_teacher_dir, preset="adm-imagenet-64")


# --- ADM ----------------------------------------------------------------------------------------------------------

def test_adm_state_dict_has_the_official_key_names_and_round_trips(tmp_path):
    flags = {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
             "attention_resolutions": "16", "class_cond": True}
    model = randomised(adm_architecture(flags).unet)
    state = model.state_dict()
    official = {  # guided-diffusion's UNetModel for these flags: key -> shape
        "time_embed.0.weight": (128, 32), "time_embed.2.weight": (128, 128), "label_emb.weight": (1000, 128),
        "input_blocks.0.0.weight": (32, 3, 3, 3), "input_blocks.1.0.in_layers.0.weight": (32,),
        "input_blocks.1.0.in_layers.2.weight": (32, 32, 3, 3), "input_blocks.1.0.emb_layers.1.weight": (64, 128),
        "input_blocks.1.0.out_layers.3.weight": (32, 32, 3, 3), "input_blocks.2.0.op.weight": (32, 32, 3, 3),
        "input_blocks.3.0.skip_connection.weight": (64, 32, 1, 1), "input_blocks.3.1.norm.weight": (64,),
        "input_blocks.3.1.qkv.weight": (192, 64, 1), "input_blocks.3.1.proj_out.weight": (64, 64, 1),
        "middle_block.0.in_layers.2.weight": (64, 64, 3, 3), "middle_block.1.qkv.bias": (192,),
        "middle_block.2.out_layers.3.bias": (64,), "output_blocks.0.0.in_layers.0.weight": (128,),
        "output_blocks.0.1.qkv.weight": (192, 64, 1), "output_blocks.1.2.conv.weight": (64, 64, 3, 3),
        "output_blocks.2.0.skip_connection.weight": (32, 96, 1, 1), "output_blocks.3.0.in_layers.0.weight": (64,),
        "out.0.weight": (32,), "out.2.weight": (3, 32, 3, 3),
    }
    assert {key: tuple(state[key].shape) for key in official} == official
    assert len(state) == 129 and all(k.split(".")[0] in ("time_embed", "label_emb", "input_blocks", "middle_block",
                                                         "output_blocks", "out") for k in state)
    torch.save(state, tmp_path / "cond.pt")
    teacher = load_teacher(tmp_path / "cond.pt", flags=flags, conditioning=207)
    for key, value in teacher.unet.state_dict().items():
        assert torch.equal(value, state[key]), key
    x_t = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(teacher.eps(x_t, 5), model(x_t, torch.tensor([5, 5]), torch.tensor([207, 207])))
        unlabelled = load_teacher(tmp_path / "cond.pt", flags=flags).eps(x_t, 5)
    torch.testing.assert_close(unlabelled, model(x_t, torch.tensor([5, 5])))
    with pytest.raises(UserError, match="class id in 0..999"):
        load_teacher(tmp_path / "cond.pt", flags=flags, conditioning=1000)


def test_adm_flags_from_string_dict_yaml_and_preset_agree(adm_checkpoint):
    assert adm_flags.resolve(ADM_FLAG_STRING) == adm_flags.resolve(ADM_FLAGS) == adm_flags.resolve(
        checkpoint=adm_checkpoint)
    assert adm_flags.resolve("--image_size=64 --channel_mult= --class_cond true")["channel_mult"] == (1, 2, 3, 4)
    pasted = ADM_FLAG_STRING + " --timestep_respacing 250 --use_kl False --batch_size 4"  # sampling flags: ignored
    assert adm_flags.resolve(pasted) == adm_flags.resolve(ADM_FLAGS)
    imagenet = adm_flags.resolve(preset="adm-imagenet-64")
    assert imagenet["num_channels"] == 192 and imagenet["noise_schedule"] == "cosine"
    assert adm_flags.resolve("--num_channels 128", preset="adm-imagenet-64")["num_channels"] == 128  # flags win


@pytest.mark.parametrize("preset, millions", [("adm-imagenet-64", 296), ("adm-imagenet-256", 554),
                                              ("improved-imagenet-64-cond", 270)])
def test_presets_build_the_released_architectures(preset, millions):
    with torch.device("meta"):  # shapes only: no memory, no time
        model = ADMUNet(**adm_flags.model_kwargs(adm_flags.resolve(preset=preset)))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.015)


def test_adm_schedules_are_the_releases():
    linear = adm_flags.scheduler(adm_flags.resolve("--diffusion_steps 4000"))
    torch.testing.assert_close(linear.betas[[0, -1]], torch.tensor([0.25e-4, 0.25 * 0.02]))
    cosine = adm_flags.scheduler(adm_flags.resolve("--noise_schedule cosine --diffusion_steps 1000"))
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 1, 501)]
    assert float(cosine.alphas_cumprod[0]) == pytest.approx(f[1] / f[0], rel=1e-5)
    assert float(cosine.alphas_cumprod[500]) == pytest.approx(f[2] / f[0], rel=1e-4)


def test_adm_rescaled_timesteps_feed_the_model_0_to_1000(adm_checkpoint):
    teacher = load_teacher(adm_checkpoint, flags={"diffusion_steps": 4000, "rescale_timesteps": True})
    x_t = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher.eps(x_t, 2000), teacher.unet(x_t, torch.tensor([500.0]))[:, :3])


def test_wrong_adm_flags_name_the_first_bad_key_and_the_fix(adm_checkpoint):
    cases = {"--num_channels 64": "key time_embed.0.weight has shape .* the checkpoint looks like --num_channels 32 "
                                  r"\(the flags say 64\)",
             "--learn_sigma False": "key out.2.weight .* looks like --learn_sigma True",
             "--resblock_updown False": "key input_blocks.2.0.op.weight is missing .* --resblock_updown True",
             "--class_cond True": "key label_emb.weight is missing .* --class_cond False",
             "--num_res_blocks 2": "--num_res_blocks 1 \\(the flags say 2\\)",
             "--num_channel 64": r"unknown ADM flag --num_channel in the flags \(did you mean --num_channels\?\)",
             "--class_cond maybe": "--class_cond: expected True or False, got 'maybe'",
             "--attention_resolutions 12": "no level of this UNet has resolution 12",
             "--large_size 256": "super-resolution"}
    for flags, message in cases.items():
        with pytest.raises(UserError, match=message) as err:
            load_teacher(adm_checkpoint, flags=flags)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown ADM preset 'adm-imagenet64' \\(did you mean adm-imagenet-64\\?\\)"):
        load_teacher(adm_checkpoint, preset="adm-imagenet64")


def test_malformed_adm_checkpoints_are_one_line_errors(adm_checkpoint, tmp_path, capsys):
    data = adm_checkpoint.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"<html>403 Forbidden</html>")
    torch.save({"step": 3}, tmp_path / "other.pt")
    for name in ("truncated.pt", "garbage.pt"):
        code = cli.main(["teacher", "info", str(tmp_path / name), "--flags", ADM_FLAG_STRING])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "not a readable checkpoint" in err
    with pytest.raises(UserError, match="not a state dict"):
        load_teacher(tmp_path / "other.pt", flags=ADM_FLAGS)
    shutil.copy(adm_checkpoint, tmp_path / "noflags.pt")
    with pytest.raises(UserError, match="needs its flags"):
        load_teacher(tmp_path / "noflags.pt")


def test_teacher_info_of_a_preset_without_checkpoint(capsys):
    assert cli.main(["teacher", "info", "--flags", "--image_size 32 --num_channels 32 --channel_mult 1,2 "
                     "--attention_resolutions 16", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "(in memory)" in out and "middle_block" in out and "64 x 16 x 16" in out


# --- latent UNets (Stable Diffusion family) -------------------------------------------------------------------------

def test_latent_teacher_encodes_with_the_vae_and_caches_per_batch(teachers):
    teacher = teachers["latent-unet"]
    x0 = images("latent-unet")
    expected = teacher.vae.encode(x0).latent_dist.mode() * teacher.vae.config.scaling_factor
    calls = []
    handle = teacher.vae.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        torch.testing.assert_close(teacher.encode(x0), expected)
        for t in (0, 500, 999):
            teacher.features(x0, t, "mid_block")
        assert len(calls) == 1  # one encode for the batch, whatever the timesteps
        x0.mul_(0.5)  # changed in place: encoded again
        teacher.features(x0, 0, "mid_block")
        teacher.features(x0.clone(), 0, "mid_block")  # another tensor: encoded again
        assert len(calls) == 3
    finally:
        handle.remove()
    assert teacher.model_shape == (4, 8, 8) and teacher.vae_factor == 2
    with pytest.raises(UserError, match=r"expects images of shape \(B, 3, 16, 16\)"):
        teacher.features(torch.zeros(1, 4, 8, 8), 0, "mid_block")  # latents are not images


def test_latent_noise_of_the_images_shape_is_accepted(teachers):
    teacher = teachers["latent-unet"]
    x0, noise = images("latent-unet"), torch.randn(2, 3, 16, 16)
    latent_noise = noise.reshape(2, -1)[:, :4 * 8 * 8].reshape(2, 4, 8, 8)
    torch.testing.assert_close(teacher.features(x0, 300, "mid_block", "noised", noise=noise)["mid_block"],
                               teacher.features(x0, 300, "mid_block", "noised", noise=latent_noise)["mid_block"])


def test_latent_conditioning_choices(sd_dir, teachers, tmp_path):
    assert teachers["latent-unet"].conditioning == "zeros"  # no text encoder in the folder
    assert torch.equal(teachers["latent-unet"].context, torch.zeros(1, 77, 32))
    save_file({"prompt_embeds": torch.randn(1, 5, 32)}, tmp_path / "cat.safetensors")
    torch.save(torch.randn(5, 16), tmp_path / "narrow.pt")
    cat = load_teacher(sd_dir, conditioning=str(tmp_path / "cat.safetensors"))
    assert cat.context.shape == (1, 5, 32)
    x0 = images("latent-unet")
    assert not torch.allclose(cat.features(x0, 10, "mid_block")["mid_block"],
                              teachers["latent-unet"].features(x0, 10, "mid_block")["mid_block"])
    for choice, message in ((str(tmp_path / "narrow.pt"), "has width 16 but the UNet's cross-attention takes 32"),
                            ("empty-prompt", "needs text_encoder/ and tokenizer/"),
                            ("a photo of a cat", "conditioning must be empty-prompt or zeros or an embedding file")):
        with pytest.raises(UserError, match=message):
            load_teacher(sd_dir, conditioning=choice)


def test_empty_prompt_conditioning_uses_the_pipelines_text_encoder(sd_dir, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the empty-prompt conditioning needs transformers")
    root = tmp_path / "sd"
    shutil.copytree(sd_dir, root)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5}
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    transformers.CLIPTokenizer(str(root / "tokenizer" / "vocab.json"), str(root / "tokenizer" / "merges.txt"),
                               model_max_length=77).save_pretrained(root / "tokenizer")
    config = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    transformers.CLIPTextModel(config).save_pretrained(root / "text_encoder")
    teacher = load_teacher(root)
    assert teacher.conditioning == "empty-prompt" and teacher.context.shape == (1, 77, 32)


def test_malformed_latent_pipelines_are_one_line_errors(sd_dir, tmp_path, capsys):
    no_vae = tmp_path / "no-vae"
    shutil.copytree(sd_dir, no_vae, ignore=shutil.ignore_patterns("vae"))
    code = cli.main(["teacher", "info", str(no_vae)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "needs the pipeline's vae/ folder" in err
    with pytest.raises(UserError, match="a bare UNet2DConditionModel"):
        load_teacher(sd_dir / "unet")
    broken = tmp_path / "broken"
    shutil.copytree(sd_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_in.wieght"] = state.pop("conv_in.weight")
    save_file(state, weights)
    with pytest.raises(UserError, match="key conv_in.weight is missing from the checkpoint") as err:
        load_teacher(broken)
    assert "\n" not in str(err.value)


# --- DiT ----------------------------------------------------------------------------------------------------------

def test_dit_taps_are_token_maps_and_the_class_is_explicit(teachers, dit_dir):
    teacher = teachers["dit"]
    assert teacher.class_label == teacher.null_class == 1000
    assert teacher.taps["transformer_blocks.1"][0] == (16, 4, 4) and teacher.taps["pos_embed"][0] == (16, 4, 4)
    x0 = images("dit")
    tokens = {}
    handle = teacher.unet.transformer_blocks[0].register_forward_hook(lambda m, a, o: tokens.setdefault("t", o))
    try:
        feature = teacher.features(x0, 10, "transformer_blocks.0")["transformer_blocks.0"]
    finally:
        handle.remove()
    assert torch.equal(feature[:, :, 1, 2], tokens["t"][:, 1 * 4 + 2])  # raster order: row 1, column 2
    labelled = load_teacher(dit_dir, conditioning=3)
    assert not torch.allclose(labelled.features(x0, 10, "transformer_blocks.0")["transformer_blocks.0"], feature)
    with pytest.raises(UserError, match="DiT conditioning is 'null' or a class id"):
        load_teacher(dit_dir, conditioning="cat")
    with pytest.raises(UserError, match="a bare DiTTransformer2DModel"):
        load_teacher(dit_dir / "transformer")


# --- Hugging Face ids -----------------------------------------------------------------------------------------------

def test_hub_ids_come_from_the_local_cache_only(tiny_teacher_dir, tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("diffrep tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--diffrep-test--tiny-ddpm"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_teacher_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert load_teacher("diffrep-test/tiny-ddpm").family == "unet2d"
    code = cli.main(["teacher", "info", "diffrep-test/not-cached"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"not in the Hugging Face cache ({tmp_path / 'hub'}" in err and "hf download diffrep-test/not-cached" in err


@pytest.mark.parametrize("family", ["latent-unet", "dit"])
def test_pdae_refuses_the_latent_families(teachers, family):
    from diffrep.pdae.fit import resolve
    with pytest.raises(UserError, match=f"PDAE supports diffusers UNet2DModel and ADM .* is a {family} teacher"):
        resolve({"data": {}}, teachers[family])
