"""ADM flags: the command-line flags of the guided-diffusion / improved-diffusion releases, their presets, and the
UNet and noise schedule they describe.

Users copy MODEL_FLAGS and DIFFUSION_FLAGS from the release READMEs; a preset spares them that. Flags that only
matter for training or sampling (lr, batch_size, timestep_respacing, ...) are accepted and ignored, so a pasted
line works; an unknown flag or a bad value is a UserError that names it.
"""
from __future__ import annotations

import difflib
import shlex
from pathlib import Path

import yaml
from diffusers import DDPMScheduler

from diffrep.errors import UserError

NUM_CLASSES = 1000

# guided-diffusion's model_and_diffusion_defaults (improved-diffusion differs only in rescale_timesteps, see presets)
DEFAULTS: dict = {
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4, "num_heads_upsample": -1,
    "num_head_channels": -1, "attention_resolutions": "16,8", "channel_mult": "", "dropout": 0.0,
    "class_cond": False, "learn_sigma": False, "use_scale_shift_norm": True, "resblock_updown": False,
    "use_fp16": False, "use_new_attention_order": False, "noise_schedule": "linear", "diffusion_steps": 1000,
    "rescale_timesteps": False, "predict_xstart": False,
}
# channel_mult when the flag is empty, by image_size (guided-diffusion; 32 from improved-diffusion)
CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4),
                32: (1, 2, 2, 2)}
# flags of the release scripts that do not change the network or its noise schedule
IGNORED = {"timestep_respacing", "use_kl", "rescale_learned_sigmas", "sigma_small", "use_checkpoint", "use_ddim",
           "clip_denoised", "num_samples", "batch_size", "microbatch", "lr", "ema_rate", "log_interval",
           "save_interval", "resume_checkpoint", "fp16_scale_growth", "weight_decay", "lr_anneal_steps",
           "schedule_sampler", "data_dir", "model_path", "iterations", "anneal_lr", "classifier_scale",
           "classifier_path", "classifier_depth", "classifier_width", "classifier_pool", "classifier_use_fp16",
           "classifier_attention_resolutions", "classifier_use_scale_shift_norm", "classifier_resblock_updown"}
UNSUPPORTED = {"large_size": "super-resolution (upsampler) checkpoints are not supported",
               "small_size": "super-resolution (upsampler) checkpoints are not supported"}

_GUIDED = {"attention_resolutions": "32,16,8", "diffusion_steps": 1000, "learn_sigma": True, "resblock_updown": True,
           "use_fp16": True, "use_scale_shift_norm": True, "num_res_blocks": 2, "num_channels": 256}
_IMPROVED = {"num_channels": 128, "num_res_blocks": 3, "learn_sigma": True, "diffusion_steps": 4000,
             "noise_schedule": "cosine", "rescale_timesteps": True}
PRESETS: dict[str, dict] = {  # MODEL_FLAGS + DIFFUSION_FLAGS of the release READMEs
    "adm-imagenet-64": {**_GUIDED, "image_size": 64, "class_cond": True, "num_channels": 192, "num_res_blocks": 3,
                        "num_head_channels": 64, "use_new_attention_order": True, "dropout": 0.1,
                        "noise_schedule": "cosine"},
    "adm-imagenet-128": {**_GUIDED, "image_size": 128, "class_cond": True, "num_heads": 4, "noise_schedule": "linear"},
    "adm-imagenet-256": {**_GUIDED, "image_size": 256, "class_cond": True, "num_head_channels": 64,
                         "noise_schedule": "linear"},
    "adm-256-uncond": {**_GUIDED, "image_size": 256, "class_cond": False, "num_head_channels": 64,
                       "noise_schedule": "linear"},
    "adm-imagenet-512": {**_GUIDED, "image_size": 512, "class_cond": True, "num_head_channels": 64,
                         "noise_schedule": "linear", "use_fp16": False},
    "adm-lsun-256": {**_GUIDED, "image_size": 256, "class_cond": False, "num_head_channels": 64, "dropout": 0.1,
                     "noise_schedule": "linear"},  # lsun_bedroom.pt, lsun_cat.pt, lsun_horse.pt
    "improved-cifar10-32": {**_IMPROVED, "image_size": 32, "dropout": 0.3},
    "improved-imagenet-64": {**_IMPROVED, "image_size": 64},  # unconditional, L_hybrid or L_vlb
    "improved-imagenet-64-cond": {**_IMPROVED, "image_size": 64, "num_channels": 192, "class_cond": True,
                                  "rescale_timesteps": False},
    "improved-lsun-bedroom-256": {"image_size": 256, "num_channels": 128, "num_res_blocks": 2, "num_heads": 1,
                                  "learn_sigma": True, "use_scale_shift_norm": False, "attention_resolutions": "16",
                                  "diffusion_steps": 1000, "noise_schedule": "linear"},
}
ARCHITECTURE = ("num_channels", "channel_mult", "num_res_blocks", "attention_resolutions", "resblock_updown",
                "use_scale_shift_norm", "learn_sigma", "class_cond")  # the flags a checkpoint's shapes reveal


def parse_string(text: str) -> dict[str, str]:
    """'--image_size 64 --class_cond True' (or --key=value) -> {'image_size': '64', 'class_cond': 'True'}."""
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise UserError(f"cannot parse the ADM flags '{text}': {err}") from None
    flags, i = {}, 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or len(word) == 2:
            raise UserError(f"ADM flags are '--name value' pairs; '{word}' is not a flag name")
        if "=" in word:
            name, value = word[2:].split("=", 1)
            i += 1
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            name, value = word[2:], words[i + 1]
            i += 2
        else:
            raise UserError(f"ADM flag {word} has no value")
        flags[name] = value
    return flags


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "t", "y", "1"):
        return True
    if text in ("no", "false", "f", "n", "0"):
        return False
    raise UserError(f"ADM flag --{name}: expected True or False, got '{value}'")


def _number(name: str, value, kind):
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if kind is int and float(value) != number:
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise UserError(f"ADM flag --{name}: expected {'an integer' if kind is int else 'a number'}, "
                        f"got '{value}'") from None


def _numbers(name: str, value, kind) -> tuple:
    """'32,16,8', [32, 16, 8] or 16 -> (32, 16, 8); '' -> ()."""
    items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
    return tuple(_number(name, v.strip() if isinstance(v, str) else v, kind) for v in items)


def _check_names(flags: dict, where: str) -> None:
    for name in flags:
        if name in UNSUPPORTED:
            raise UserError(f"ADM flag --{name}: {UNSUPPORTED[name]}")
        if name not in DEFAULTS and name not in IGNORED:
            close = difflib.get_close_matches(name, list(DEFAULTS), n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise UserError(f"unknown ADM flag --{name} in {where}{hint}; valid: "
                            f"{', '.join('--' + k for k in DEFAULTS)}")


def as_dict(flags, where: str = "the flags") -> dict:
    """Flags given as a dict or as a release-style string, names checked, values still raw."""
    if flags is None:
        return {}
    if isinstance(flags, str):
        flags = parse_string(flags)
    if not isinstance(flags, dict):
        raise UserError(f"ADM flags must be a mapping or a '--name value ...' string, got {type(flags).__name__}")
    flags = {str(k).lstrip("-"): v for k, v in flags.items()}
    _check_names(flags, where)
    return flags


def preset_flags(name: str | None) -> dict:
    if name is None:
        return {}
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"unknown ADM preset '{name}'{hint}; valid: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def sidecar(checkpoint: Path) -> Path | None:
    """model.yaml (or .yml) beside model.pt: the flags a user keeps with a checkpoint."""
    for suffix in (".yaml", ".yml"):
        if checkpoint.with_suffix(suffix).is_file():
            return checkpoint.with_suffix(suffix)
    return None


def read_sidecar(path: Path) -> tuple[str | None, dict]:
    """(preset, flags) from a YAML mapping of flags that may name a preset."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of ADM flags, got {type(data).__name__}")
    data = dict(data)
    preset = data.pop("preset", None)
    return preset, as_dict(data, str(path))


def resolve(flags=None, preset: str | None = None, checkpoint: Path | None = None) -> dict:
    """The complete, typed flags: defaults < preset < YAML beside the checkpoint < flags given."""
    side_preset, side_flags = None, {}
    yaml_path = sidecar(checkpoint) if checkpoint else None
    if yaml_path:
        side_preset, side_flags = read_sidecar(yaml_path)
    return normalise({**DEFAULTS, **preset_flags(preset or side_preset), **side_flags, **as_dict(flags)})


def normalise(flags: dict) -> dict:
    """Typed values: ints, floats, bools, tuples for attention_resolutions and channel_mult, checked."""
    out = {k: v for k, v in flags.items() if k in DEFAULTS}
    for name, default in DEFAULTS.items():
        value = out[name]
        if name in ("attention_resolutions", "channel_mult"):
            out[name] = _numbers(name, value, int if name == "attention_resolutions" else float)
        elif isinstance(default, bool):
            out[name] = _bool(name, value)
        elif isinstance(default, int):
            out[name] = _number(name, value, int)
        elif isinstance(default, float):
            out[name] = _number(name, value, float)
        else:
            out[name] = str(value)
    size = out["image_size"]
    if not out["channel_mult"]:
        if size not in CHANNEL_MULT:
            raise UserError(f"ADM flag --channel_mult is needed for image_size {size} (defaults exist for "
                            f"{', '.join(map(str, sorted(CHANNEL_MULT)))})")
        out["channel_mult"] = CHANNEL_MULT[size]
    out["channel_mult"] = tuple(int(m) if float(m).is_integer() else m for m in out["channel_mult"])
    if out["noise_schedule"] not in ("linear", "cosine"):
        raise UserError(f"ADM flag --noise_schedule: expected linear or cosine, got '{out['noise_schedule']}'")
    for name in ("image_size", "num_channels", "num_res_blocks", "diffusion_steps"):
        if out[name] < 1:
            raise UserError(f"ADM flag --{name} must be >= 1, got {out[name]}")
    levels = [size // 2 ** i for i in range(len(out["channel_mult"]))]
    for res in out["attention_resolutions"]:
        if res not in levels:
            raise UserError(f"ADM flag --attention_resolutions: no level of this UNet has resolution {res} "
                            f"(levels: {', '.join(map(str, levels))})")
    return out


def model_kwargs(flags: dict) -> dict:
    """ADMUNet keyword arguments for typed flags (create_model of the releases)."""
    size = flags["image_size"]
    return dict(in_channels=3, model_channels=flags["num_channels"], out_channels=6 if flags["learn_sigma"] else 3,
                num_res_blocks=flags["num_res_blocks"],
                attention_ds=tuple(size // res for res in flags["attention_resolutions"]),
                dropout=flags["dropout"], channel_mult=flags["channel_mult"],
                num_classes=NUM_CLASSES if flags["class_cond"] else None, num_heads=flags["num_heads"],
                num_head_channels=flags["num_head_channels"], num_heads_upsample=flags["num_heads_upsample"],
                use_scale_shift_norm=flags["use_scale_shift_norm"], resblock_updown=flags["resblock_updown"],
                use_new_attention_order=flags["use_new_attention_order"])


def scheduler(flags: dict) -> DDPMScheduler:
    """The release's betas as a DDPMScheduler: linear scaled by 1000/T (1e-4 .. 0.02 at T = 1000), or cosine."""
    steps = flags["diffusion_steps"]
    if flags["noise_schedule"] == "cosine":
        schedule = {"beta_schedule": "squaredcos_cap_v2"}
    else:
        scale = 1000 / steps
        schedule = {"beta_schedule": "linear", "beta_start": scale * 1e-4, "beta_end": scale * 0.02}
    return DDPMScheduler(num_train_timesteps=steps, **schedule,
                         variance_type="learned_range" if flags["learn_sigma"] else "fixed_large",
                         prediction_type="sample" if flags["predict_xstart"] else "epsilon", clip_sample=False)


def as_string(flags: dict) -> str:
    """Typed flags back in the release's '--name value' form (for summaries and error hints)."""
    def show(value) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return " ".join(f"--{name} {show(flags[name])}" for name in DEFAULTS)
