"""DiT teachers: a pipeline folder with transformer/ (DiTTransformer2DModel) and vae/ (AutoencoderKL).

Taps are the patch embedding and the transformer blocks; their (B, N, D) token sequences become (B, D, h, w) maps
on the patch grid, so pooling, probes and students treat them like UNet features.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiTTransformer2DModel

from diffrep.errors import UserError
from diffrep.teacher.latent import LatentTeacher
from diffrep.teacher.pipeline import load_component, load_vae
from diffrep.teacher.schedule import load_scheduler


class DiTTeacher(LatentTeacher):
    """A class-conditional DiT run with one class id: the null class (unconditional) unless told otherwise."""

    family = "dit"

    def __init__(self, transformer: DiTTransformer2DModel, vae, scheduler, class_label: int | None = None,
                 path: str | Path | None = None):
        super().__init__(transformer, vae, scheduler, path)
        self.class_label = self.null_class if class_label is None else class_label

    @property
    def null_class(self) -> int:
        """The id classifier-free guidance trained as 'no class': one past the last real class."""
        return int(self.unet.config.num_embeds_ada_norm)

    @property
    def grid(self) -> int:
        return self.latent_size // int(self.unet.config.patch_size)

    @property
    def default_tap(self) -> str:
        return f"transformer_blocks.{(int(self.unet.config.num_layers) - 1) // 2}"

    def denoiser_inputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[tuple, dict]:
        labels = torch.full((len(x),), self.class_label, dtype=torch.long, device=x.device)
        return (x,), {"timestep": t, "class_labels": labels}

    def as_map(self, output: torch.Tensor) -> torch.Tensor:
        """(B, h*w, D) tokens in raster order -> (B, D, h, w); other outputs unchanged."""
        if output.dim() == 3 and output.shape[1] == self.grid ** 2:
            return output.transpose(1, 2).reshape(len(output), -1, self.grid, self.grid)
        return output

    def fresh_denoiser(self) -> DiTTransformer2DModel:
        return DiTTransformer2DModel.from_config(self.unet.config)

    def describe_model(self) -> list[str]:
        cfg = self.unet.config
        width = cfg.num_attention_heads * cfg.attention_head_dim
        label = "null class (unconditional)" if self.class_label == self.null_class else f"class {self.class_label}"
        return [self.describe_latent(),
                f"blocks       {cfg.num_layers} transformer blocks, width {width}, {cfg.num_attention_heads} heads, "
                f"patch {cfg.patch_size} -> {self.grid} x {self.grid} tokens",
                f"conditioning {label} (id {self.class_label} of {self.null_class + 1})"]


def _class_label(conditioning, null: int) -> int | None:
    if conditioning is None or str(conditioning) == "null":
        return None
    text = str(conditioning).strip()
    if not text.isdigit() or int(text) > null:
        raise UserError(f"DiT conditioning is 'null' or a class id in 0..{null - 1}, got '{conditioning}'")
    return int(text)


def load_dit(root: Path, conditioning=None) -> DiTTeacher:
    vae = load_vae(root, "DiTTransformer2DModel")
    transformer = load_component(DiTTransformer2DModel, root / "transformer")
    if transformer.config.in_channels != vae.config.latent_channels:
        raise UserError(f"{root}: the transformer takes {transformer.config.in_channels} channels but the VAE makes "
                        f"{vae.config.latent_channels}-channel latents")
    label = _class_label(conditioning, int(transformer.config.num_embeds_ada_norm))
    return DiTTeacher(transformer, vae, load_scheduler(root), label, root)
