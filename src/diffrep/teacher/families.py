"""load_teacher: tell the family from what a path is, and read it. The one entry point to every teacher family.

    a diffusers UNet2DModel folder (or a pipeline folder with unet/)   -> "unet2d"
    an ADM .pt / .safetensors checkpoint, with flags, preset or YAML -> "adm"
    a pipeline folder with unet/ (UNet2DConditionModel) and vae/     -> "latent-unet"
    a pipeline folder with transformer/ (DiTTransformer2DModel), vae/ -> "dit"
    owner/name that is no local path                                 -> the same, from the local Hugging Face cache
"""
from __future__ import annotations

from pathlib import Path

import torch

from diffrep.errors import UserError
from diffrep.shipped import names, shipped_teacher
from diffrep.teacher.adm_teacher import load_adm
from diffrep.teacher.dit import load_dit
from diffrep.teacher.hub import is_hub_id, resolve
from diffrep.teacher.latent_unet import load_latent_unet
from diffrep.teacher.model import SHIPPED_TEACHER, Teacher, load_unet2d
from diffrep.teacher.pipeline import class_name

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
TEACHER_KEYS = ("path", "flags", "preset", "conditioning")


def family_of(path: Path) -> str:
    """'unet2d' | 'adm' | 'latent-unet' | 'dit', from the files (never from the name); a UserError if none fits."""
    if path.is_file():
        if path.suffix in CHECKPOINT_SUFFIXES:
            return "adm"
        raise UserError(f"teacher {path} is a file, not a teacher (expected a diffusers folder, or an ADM checkpoint: "
                        f"{', '.join(CHECKPOINT_SUFFIXES)})")
    if (path / "transformer" / "config.json").is_file():
        return "dit"
    for folder in (path, path / "unet"):
        kind = class_name(folder)
        if kind == "UNet2DConditionModel":
            if folder == path:
                raise UserError(f"{path}: a bare UNet2DConditionModel; latent teachers need the pipeline folder "
                                f"(with unet/ and vae/)")
            return "latent-unet"
        if kind == "DiTTransformer2DModel":
            raise UserError(f"{path}: a bare DiTTransformer2DModel; point at the pipeline folder (with transformer/ "
                            f"and vae/)")
        if (folder / "config.json").is_file():
            return "unet2d"  # the UNet2DModel loader names any other class it finds
    checkpoints = [p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()]
    if len(checkpoints) == 1 and not (path / "model_index.json").is_file():
        return "adm"
    return "unet2d"  # its loader explains what a UNet2DModel folder needs


def _adm_file(path: Path) -> Path:
    if path.is_file():
        return path
    return next(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())


def load_teacher(path: str | Path | None = None, device: str | torch.device = "cpu", flags=None,
                 preset: str | None = None, conditioning=None) -> Teacher:
    """A frozen teacher of any family (default: the shipped Fashion-MNIST teacher).

    flags / preset: the release flags of an ADM checkpoint (a dict, or '--image_size 64 --num_channels 192 ...');
    conditioning: latent UNets 'empty-prompt' | 'zeros' | an embedding file; DiT 'null' or a class id;
    class-conditional ADM a class id.
    """
    if path is None:
        if flags is not None or preset is not None:
            raise UserError("ADM flags and presets describe a checkpoint: give its path too")
        path = SHIPPED_TEACHER
    text = str(path)
    path = shipped_teacher(text) or (resolve(text) if is_hub_id(text) else Path(text).expanduser())
    if not path.exists():
        raise UserError(f"teacher not found: {path} (expected a diffusers folder, an ADM .pt checkpoint, an "
                        f"owner/name in the local Hugging Face cache, or a shipped teacher: {', '.join(names())})")
    family = family_of(path)
    if family != "adm" and (flags is not None or preset is not None):
        raise UserError(f"{path}: ADM flags and presets apply to ADM .pt checkpoints, not to this {family} teacher")
    if family == "adm":
        teacher = load_adm(_adm_file(path), flags, preset, conditioning)
    elif family == "latent-unet":
        teacher = load_latent_unet(path, conditioning)
    elif family == "dit":
        teacher = load_dit(path, conditioning)
    else:
        if conditioning is not None:
            raise UserError(f"{path}: conditioning applies to latent, DiT and class-conditional ADM teachers, "
                            f"not to a UNet2DModel teacher")
        teacher = load_unet2d(path)
    return teacher.to(device)


def teacher_from_config(value, device: str | torch.device = "cpu") -> Teacher:
    """The teacher a command's `teacher` option names: None (the shipped one), a path or hub id, or a mapping
    {path, flags, preset, conditioning}."""
    if value is None or isinstance(value, (str, Path)):
        return load_teacher(value, device)
    if not isinstance(value, dict):
        raise UserError(f"teacher must be a path, a Hugging Face id or a mapping with {', '.join(TEACHER_KEYS)}; "
                        f"got {type(value).__name__}")
    unknown = [key for key in value if key not in TEACHER_KEYS]
    if unknown:
        raise UserError(f"unknown teacher option '{unknown[0]}' (valid: {', '.join(TEACHER_KEYS)})")
    return load_teacher(value.get("path"), device, value.get("flags"), value.get("preset"), value.get("conditioning"))
