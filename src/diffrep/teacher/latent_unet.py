"""Latent UNet teachers: a Stable Diffusion-style pipeline folder (unet/ UNet2DConditionModel, vae/ AutoencoderKL)."""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from diffrep.errors import UserError
from diffrep.teacher.conditioning import text_conditioning
from diffrep.teacher.latent import LatentTeacher
from diffrep.teacher.pipeline import load_component, load_vae
from diffrep.teacher.schedule import load_scheduler


class LatentUNetTeacher(LatentTeacher):
    """A text-conditioned UNet on VAE latents, run with one fixed context (see diffrep.teacher.conditioning)."""

    family = "latent-unet"

    def __init__(self, unet: UNet2DConditionModel, vae, scheduler, context: torch.Tensor, conditioning: str,
                 path: str | Path | None = None):
        super().__init__(unet, vae, scheduler, path)
        self.context = context.to(self.device)
        self.conditioning = conditioning

    def denoiser_inputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[tuple, dict]:
        return (x, t), {"encoder_hidden_states": self.context.to(x).expand(len(x), -1, -1)}

    def to(self, device) -> LatentUNetTeacher:
        super().to(device)
        self.context = self.context.to(device)
        return self

    def fresh_denoiser(self) -> UNet2DConditionModel:
        return UNet2DConditionModel.from_config(self.unet.config)

    def describe_model(self) -> list[str]:
        cfg = self.unet.config
        return [self.describe_latent(),
                f"channels     {list(cfg.block_out_channels)}, {cfg.layers_per_block} res-block(s) per level",
                f"down blocks  {', '.join(cfg.down_block_types)}",
                f"up blocks    {', '.join(cfg.up_block_types)}",
                f"conditioning {self.conditioning} ({' x '.join(map(str, self.context.shape))})"]


def _check_unet(unet: UNet2DConditionModel, vae, folder: Path) -> None:
    cfg = unet.config
    if cfg.get("addition_embed_type") is not None:
        raise UserError(f"{folder}: UNets with added conditioning ({cfg.addition_embed_type}, e.g. SDXL) are not "
                        f"supported yet")
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise UserError(f"{folder}: UNets with a class embedding (e.g. upscalers) are not supported")
    if cfg.in_channels != vae.config.latent_channels:
        raise UserError(f"{folder}: the UNet takes {cfg.in_channels} channels but the VAE makes "
                        f"{vae.config.latent_channels}-channel latents (an inpainting or depth UNet?)")


def load_latent_unet(root: Path, conditioning=None) -> LatentUNetTeacher:
    """A pipeline folder with unet/ and vae/ (and text_encoder/ + tokenizer/ for the empty-prompt conditioning)."""
    vae = load_vae(root, "UNet2DConditionModel")
    unet = load_component(UNet2DConditionModel, root / "unet")
    _check_unet(unet, vae, root / "unet")
    context, how = text_conditioning(root, conditioning, int(unet.config.cross_attention_dim))
    return LatentUNetTeacher(unet, vae, load_scheduler(root), context, how, root)
