"""A diffusers UNet2DModel's forward pass cut in two halves, so one encoder pass can feed two decoders.

`run_down` is the time embedding + conv_in + down blocks (the half PDAE reuses frozen), `run_up` the mid
block + up blocks + output layers. Run back to back on the same UNet they compute exactly UNet2DModel.forward.
`run_up` only needs the attributes mid_block, up_blocks, conv_norm_out, conv_act, conv_out, so it also runs the
gradient estimator's new decoder half.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from diffusers import UNet2DModel

from diffrep.errors import UserError

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")


class Encoding(NamedTuple):
    """The encoder half's output: the last feature map, every skip feature, the time embedding."""
    h: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    emb: torch.Tensor


def check_config(config) -> dict:
    """The config without diffusers' private keys (_class_name, ...), once checked: UNet2DModel configs built
    from plain down/up blocks with a positional time embedding and no classes."""
    config = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    for key, valid in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
        bad = [kind for kind in config[key] if kind not in valid]
        if bad:
            raise UserError(f"PDAE supports UNet2DModel teachers built from {', '.join(valid)}; this one has {bad[0]}")
    if config.get("time_embedding_type", "positional") != "positional":
        raise UserError(f"PDAE supports positional time embeddings, not '{config['time_embedding_type']}'")
    if config.get("class_embed_type") is not None or config.get("num_class_embeds") is not None:
        raise UserError("PDAE needs an unconditional teacher; this one is class-conditional")
    return config


def time_embedding_dim(config) -> int:
    return config.get("time_embedding_dim") or config["block_out_channels"][0] * 4


def time_embedding(unet: UNet2DModel, t: torch.Tensor) -> torch.Tensor:
    return unet.time_embedding(unet.time_proj(t).to(unet.dtype))


def run_down(unet: UNet2DModel, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    if unet.config.center_input_sample:
        x = 2 * x - 1.0
    h = unet.conv_in(x)
    skips = (h,)
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=temb)
        skips += res
    return h, skips


def encode(unet: UNet2DModel, x: torch.Tensor, t: torch.Tensor) -> Encoding:
    emb = time_embedding(unet, t)
    return Encoding(*run_down(unet, x, emb), emb)


def run_up(parts, h: torch.Tensor, skips: tuple, temb: torch.Tensor) -> torch.Tensor:
    if parts.mid_block is not None:
        h = parts.mid_block(h, temb)
    for block in parts.up_blocks:
        n = len(block.resnets)  # each up block takes the last n skips, deepest first
        h, skips = block(h, skips[-n:], temb), skips[:-n]
    return parts.conv_out(parts.conv_act(parts.conv_norm_out(h)))
