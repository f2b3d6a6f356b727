"""An ADM (guided-diffusion) UNet cut in two halves, and PDAE's gradient estimator on it: the official ShiftUNet.

The encoder half is the time embedding and `input_blocks` (run once, frozen); the decoder half is `middle_block`,
`output_blocks` and `out`. `run_up` needs only those three attributes, so the same function runs the teacher's own
decoder (-> eps_theta) and the estimator's new one (-> G). As in the reference (section 2.3):
  - `label_emb` = Linear(z_dim -> 4C) embeds z;
  - `shift_middle_block` / `shift_output_blocks` mirror the teacher's, every ResBlock (the up-sampling ones too)
    replaced by a ResBlockShift: h = (GN(h) (1 + scale_t) + shift_t) (1 + scale_z) + shift_z, time then z;
    attention blocks stay unconditioned;
  - `shift_out` ends in a zero-initialised conv to the image channels, so G = 0 and training starts from the DPM.
Here the attributes keep the teacher's names (middle_block, output_blocks, out) so that one `run_up` serves both.
"""
from __future__ import annotations

import torch
from torch import nn

from diffrep.errors import UserError
from diffrep.pdae.unet_parts import Encoding
from diffrep.teacher import adm_flags
from diffrep.teacher.adm import ADMUNet, ResBlock, TimestepBlock, input_branch, timestep_embedding, zeroed


def check_flags(flags: dict) -> dict:
    """The flags, once checked: PDAE needs an unconditional model that predicts eps."""
    if flags["class_cond"]:
        raise UserError("PDAE needs an unconditional teacher; this ADM model is class-conditional (--class_cond True)")
    if flags["predict_xstart"]:
        raise UserError("PDAE needs a teacher that predicts eps; this ADM model predicts x0 (--predict_xstart True)")
    return flags


def encode(teacher, x: torch.Tensor, t: torch.Tensor) -> Encoding:
    """Time embedding and input blocks of an ADM teacher (its own timestep rescaling applied)."""
    unet = teacher.unet
    (x, steps), _ = teacher.denoiser_inputs(x, t)
    emb = unet.time_embed(timestep_embedding(steps, unet.model_channels))
    h, skips = x, ()
    for block in unet.input_blocks:
        h = block(h, emb)
        skips += (h,)
    return Encoding(h, skips, emb)


def run_up(parts, h: torch.Tensor, skips: tuple, emb: torch.Tensor) -> torch.Tensor:
    h = parts.middle_block(h, emb)
    for block in parts.output_blocks:
        h, skips = block(torch.cat([h, skips[-1]], dim=1), emb), skips[:-1]
    return parts.out(h)


class ResBlockShift(TimestepBlock):
    """An ADM ResBlock (its layers, resampling and skip kept) with nested adaptive GN: time, then z. Takes
    emb = cat([t_emb, z_emb]) from the TimestepEmbedSequential that holds it."""

    def __init__(self, block: ResBlock, emb_channels: int):
        super().__init__()
        out = block.out_channels
        self.in_layers, self.updown, self.h_upd, self.x_upd = block.in_layers, block.updown, block.h_upd, block.x_upd
        self.out_layers, self.skip_connection = block.out_layers, block.skip_connection
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out))
        self.shift_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t_emb, z_emb = emb.chunk(2, dim=1)
        h, x = input_branch(self, x)
        scale, shift = self.emb_layers(t_emb).type(h.dtype)[..., None, None].chunk(2, dim=1)
        z_scale, z_shift = self.shift_emb_layers(z_emb).type(h.dtype)[..., None, None].chunk(2, dim=1)
        h = (self.out_layers[0](h) * (1 + scale) + shift) * (1 + z_scale) + z_shift
        return self.skip_connection(x) + self.out_layers[1:](h)


def _shift_resblocks(module: nn.Module, emb_channels: int) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, ResBlock):
            setattr(module, name, ResBlockShift(child, emb_channels))
        else:
            _shift_resblocks(child, emb_channels)
    return module


class ADMGradientEstimator(nn.Module):
    """G(x_t, z, t) for an ADM teacher described by its flags (the release's string form)."""

    def __init__(self, adm_flags_string: str, z_dim: int):
        super().__init__()
        flags = check_flags(adm_flags.resolve(adm_flags_string))
        self.config = {"adm_flags": adm_flags.as_string(flags), "z_dim": z_dim}
        template = ADMUNet(**{**adm_flags.model_kwargs(flags), "out_channels": 3})  # G has the image's channels
        emb = 4 * flags["num_channels"]
        self.z_embedding = nn.Linear(z_dim, emb)  # the reference's label_emb
        self.middle_block = _shift_resblocks(template.middle_block, emb)
        self.output_blocks = _shift_resblocks(template.output_blocks, emb)
        self.out = template.out
        zeroed(self.out[-1])  # G = 0 at init (ADM zeroes it already; said here because PDAE relies on it)

    def forward(self, encoding: Encoding, z: torch.Tensor) -> torch.Tensor:
        emb = torch.cat([encoding.emb, self.z_embedding(z)], dim=1)
        return run_up(self, encoding.h, encoding.skips, emb)
