"""The frozen teacher as PDAE uses it, whatever its family: an encoder half run once, its own decoder half (eps_theta)
and a gradient estimator G that reads the same encoding.

    backbone.check(teacher)                         # UserError for a family or a model PDAE cannot shift
    encoding = backbone.encode(teacher, x_t, t)     # time embedding, last feature map, skip features
    eps = backbone.decode(teacher, encoding)        # the teacher's own decoder half: eps_theta
    estimator = backbone.build_estimator(teacher, z_dim)

Families: `unet2d` (diffusers UNet2DModel: unet_parts, estimator.GradientEstimator) and `adm` (guided-diffusion:
adm_parts). Latent UNets and DiT are not supported: their denoisers have no unconditional encoder half of this form.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from diffrep.errors import UserError
from diffrep.pdae import adm_parts, unet_parts
from diffrep.pdae.estimator import GradientEstimator
from diffrep.pdae.unet_parts import Encoding
from diffrep.teacher import adm_flags

FAMILIES = ("unet2d", "adm")


def check(teacher) -> None:
    if teacher.family not in FAMILIES:
        raise UserError(f"PDAE supports diffusers UNet2DModel and ADM (guided-diffusion) teachers; {teacher.path} "
                        f"is a {teacher.family} teacher")
    if teacher.family == "adm":
        adm_parts.check_flags(teacher.flags)
    else:
        unet_parts.check_config(teacher.unet.config)


def architecture(teacher) -> dict:
    """What an estimator's config records of its teacher (JSON-normalised, to compare with a saved model's)."""
    if teacher.family == "adm":
        return {"adm_flags": adm_flags.as_string(teacher.flags)}
    return json.loads(json.dumps({"unet_config": unet_parts.check_config(teacher.unet.config)}))


def default_z_dim(teacher) -> int:
    """The time-embedding width, as the reference (4C)."""
    if teacher.family == "adm":
        return 4 * teacher.flags["num_channels"]
    return unet_parts.time_embedding_dim(teacher.unet.config)


def encode(teacher, x_t: torch.Tensor, t: torch.Tensor) -> Encoding:
    if teacher.family == "adm":
        return adm_parts.encode(teacher, x_t, t)
    return unet_parts.encode(teacher.unet, x_t, t)


def decode(teacher, encoding: Encoding) -> torch.Tensor:
    """eps_theta from the encoding (the first half of the channels when the teacher also predicts sigma)."""
    parts = adm_parts if teacher.family == "adm" else unet_parts
    out = parts.run_up(teacher.unet, encoding.h, encoding.skips, encoding.emb)
    return out[:, :teacher.channels]


def build_estimator(teacher, z_dim: int) -> nn.Module:
    return estimator_from_config({**architecture(teacher), "z_dim": z_dim})


def estimator_from_config(config: dict) -> nn.Module:
    if "adm_flags" in config:
        return adm_parts.ADMGradientEstimator(config["adm_flags"], config["z_dim"])
    return GradientEstimator(config["unet_config"], config["z_dim"])
