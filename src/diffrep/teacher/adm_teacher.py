"""ADM teachers: a guided-diffusion / improved-diffusion `.pt` checkpoint and the flags that describe it."""
from __future__ import annotations

from pathlib import Path

import torch

from diffrep.errors import UserError
from diffrep.teacher import adm_flags
from diffrep.teacher.adm import ADMUNet
from diffrep.teacher.adm_checkpoint import load_strict, read_state_dict
from diffrep.teacher.model import Teacher


class ADMTeacher(Teacher):
    """An ADM UNet with the release's schedule. Timesteps are rescaled to 0..1000 when the release did that
    (improved-diffusion's rescale_timesteps); a class-conditional model gets `class_label`, or no class embedding."""

    family = "adm"

    def __init__(self, unet: ADMUNet, flags: dict, path: str | Path | None = None, class_label: int | None = None):
        super().__init__(unet, adm_flags.scheduler(flags), path)
        self.flags = flags
        self.class_label = class_label

    @property
    def default_tap(self) -> str:
        return "middle_block"

    @property
    def resolution(self) -> int:
        return int(self.flags["image_size"])

    @property
    def channels(self) -> int:
        return 3

    def denoiser_inputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[tuple, dict]:
        steps = t.float() * (1000.0 / self.num_timesteps) if self.flags["rescale_timesteps"] else t
        if self.class_label is None:
            return (x, steps), {}
        return (x, steps), {"y": torch.full((len(x),), self.class_label, dtype=torch.long, device=x.device)}

    def fresh_denoiser(self) -> ADMUNet:
        return ADMUNet(**adm_flags.model_kwargs(self.flags))

    def describe_model(self) -> list[str]:
        f = self.flags
        widths = [int(m * f["num_channels"]) for m in f["channel_mult"]]
        heads = (f"{f['num_head_channels']} channels per head" if f["num_head_channels"] != -1
                 else f"{f['num_heads']} head(s)")
        classes = ("none: the class embedding is left out" if self.class_label is None else f"class {self.class_label}"
                   ) if f["class_cond"] else "unconditional model"
        return [f"input        3 x {self.resolution} x {self.resolution}, in [-1, 1]",
                f"channels     {widths}, {f['num_res_blocks']} res-block(s) per level"
                f"{', resblock up/down' if f['resblock_updown'] else ''}"
                f"{', scale-shift norm' if f['use_scale_shift_norm'] else ''}",
                f"attention    at {', '.join(f'{r}px' for r in f['attention_resolutions'])}, {heads}, "
                f"{'new' if f['use_new_attention_order'] else 'legacy'} QKV order",
                f"output       {'eps and learned sigma (eps = first 3 channels)' if f['learn_sigma'] else 'eps'}"
                f"{'; timesteps rescaled to 0..1000' if f['rescale_timesteps'] else ''}; runs in float32"
                f"{' (trained in fp16)' if f['use_fp16'] else ''}",
                f"class        {classes}",
                f"flags        {adm_flags.as_string(f)}"]


def _class_label(conditioning, flags: dict) -> int | None:
    """None, or the class id of a class-conditional model ('207' or 207)."""
    if conditioning is None:
        return None
    if not flags["class_cond"]:
        raise UserError("conditioning applies to class-conditional ADM models only (--class_cond True)")
    text = str(conditioning).strip()
    if not text.isdigit() or int(text) >= adm_flags.NUM_CLASSES:
        raise UserError(f"ADM conditioning is a class id in 0..{adm_flags.NUM_CLASSES - 1}, got '{conditioning}'")
    return int(text)


def build(flags: dict, path: Path | None = None, class_label: int | None = None) -> ADMTeacher:
    try:
        unet = ADMUNet(**adm_flags.model_kwargs(flags))
    except ValueError as err:  # e.g. channels not divisible by num_head_channels
        raise UserError(f"these ADM flags describe no valid UNet: {err}") from None
    return ADMTeacher(unet, flags, path, class_label)


def load_adm(path: Path, flags=None, preset: str | None = None, conditioning=None) -> ADMTeacher:
    """A checkpoint with its flags (given, from a preset, or from a YAML of the same stem beside it)."""
    if not path.is_file():
        raise UserError(f"ADM checkpoint not found: {path}")
    if flags is None and preset is None and adm_flags.sidecar(path) is None:
        raise UserError(f"{path}: an ADM checkpoint needs its flags: pass flags='--image_size 64 ...' (--flags), "
                        f"a preset ({', '.join(adm_flags.PRESETS)}) or put them in {path.with_suffix('.yaml')}")
    resolved = adm_flags.resolve(flags, preset, path)
    state = read_state_dict(path)
    teacher = build(resolved, path, _class_label(conditioning, resolved))
    load_strict(teacher.unet, state, resolved, path)
    return teacher


def adm_architecture(flags=None, preset: str | None = None) -> ADMTeacher:
    """An ADM teacher with random weights: to list taps or benchmark an architecture without its checkpoint."""
    return build(adm_flags.resolve(flags, preset))
