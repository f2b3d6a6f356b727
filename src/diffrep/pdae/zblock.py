"""z-conditioned residual blocks: a diffusers ResnetBlock2D whose second group norm is a nested adaptive GN.

PDAE's ResBlockShift (reference section 2.3), with t-emb and z-emb both of the time-embedding width:
    scale_t, shift_t = Linear(SiLU(t_emb)),  scale_z, shift_z = Linear(SiLU(z_emb))
    h = (GN(h) * (1 + scale_t) + shift_t) * (1 + scale_z) + shift_z      # time first, then z
followed by SiLU, dropout and a zero-initialised conv (so a new block starts as its shortcut).
Diff-AE's block (z_shift=False) is the same with z scaling only: h * (1 + scale_z).

How diffusers blocks become z-conditioned: `z_condition(module)` swaps every ResnetBlock2D inside a module
(mid block, up blocks, their resnet up-samplers) for a ZResnetBlock2D that keeps the original's layers and
names. The diffusers blocks still call `resnet(h, temb)`; the caller passes temb = cat([t_emb, z_emb]) and the
z-block splits it, so UpBlock2D / AttnUpBlock2D / UNetMidBlock2D run unchanged (their attention ignores temb).
"""
from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


class ZResnetBlock2D(nn.Module):
    def __init__(self, block: ResnetBlock2D, emb_channels: int, z_shift: bool = True):
        super().__init__()
        out = block.norm2.num_channels
        # diffusers' layers, as built for the teacher's config (channels, groups, eps, dropout, up/down-sampling)
        self.norm1, self.conv1, self.norm2 = block.norm1, block.conv1, block.norm2
        self.dropout, self.conv2, self.conv_shortcut = block.dropout, block.conv2, block.conv_shortcut
        self.nonlinearity, self.upsample, self.downsample = block.nonlinearity, block.upsample, block.downsample
        self.output_scale_factor = block.output_scale_factor
        self.time_emb_proj = nn.Linear(emb_channels, 2 * out)  # scale and shift, whatever the teacher used
        self.z_shift = z_shift
        self.z_emb_proj = nn.Linear(emb_channels, (2 if z_shift else 1) * out)
        nn.init.zeros_(self.conv2.weight)  # the reference's zero_module on the block's last conv
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        t_emb, z_emb = temb.chunk(2, dim=1)  # see the module docstring: temb = cat([t_emb, z_emb])
        h = self.nonlinearity(self.norm1(x))
        if self.upsample is not None:
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1(h)
        scale, shift = self.time_emb_proj(self.nonlinearity(t_emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        z = self.z_emb_proj(self.nonlinearity(z_emb))[:, :, None, None]
        if self.z_shift:
            z_scale, z_shift = z.chunk(2, dim=1)
            h = h * (1 + z_scale) + z_shift
        else:
            h = h * (1 + z)
        h = self.conv2(self.dropout(self.nonlinearity(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


def z_condition(module: nn.Module, emb_channels: int, z_shift: bool = True) -> nn.Module:
    """Replace, in place, every ResnetBlock2D inside `module` by a ZResnetBlock2D; returns `module`."""
    for name, child in module.named_children():
        if isinstance(child, ResnetBlock2D):
            setattr(module, name, ZResnetBlock2D(child, emb_channels, z_shift))
        else:
            z_condition(child, emb_channels, z_shift)
    return module
