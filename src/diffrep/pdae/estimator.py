"""GradientEstimator G(x_t, z, t): a new, trainable decoder half on the frozen teacher's encoder half.

Reference section 2.3 (the official ShiftUNet). The teacher's time embedding, conv_in and down blocks run once,
frozen (`unet_parts.encode`); their last feature map and skip features feed two decoders: the teacher's own
(-> eps_theta) and this one (-> G). This one mirrors the teacher's decoder topology exactly (a fresh
UNet2DModel of the teacher's config supplies the mid block, up blocks and output layers: same block types,
channels, layers, groups, dropout), with two changes from the reference:
  - every residual block is a ZResnetBlock2D (nested adaptive GN, time then z; attention stays unconditioned);
  - the output conv is zero-initialised, so G = 0 and the model starts as the pre-trained DPM.
z enters through z_embedding = Linear(z_dim -> time-embedding width), the reference's `label_emb`.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from diffrep.pdae.unet_parts import Encoding, check_config, run_up, time_embedding_dim
from diffrep.pdae.zblock import z_condition


class GradientEstimator(nn.Module):
    def __init__(self, unet_config: dict, z_dim: int):
        super().__init__()
        unet_config = check_config(unet_config)
        self.config = {"unet_config": unet_config, "z_dim": z_dim}
        template = UNet2DModel(**unet_config)  # randomly initialised; only its decoder half is kept
        emb = time_embedding_dim(unet_config)
        self.z_embedding = nn.Linear(z_dim, emb)
        self.mid_block, self.up_blocks = template.mid_block, template.up_blocks
        self.conv_norm_out, self.conv_act, self.conv_out = template.conv_norm_out, template.conv_act, template.conv_out
        z_condition(self, emb, z_shift=True)
        nn.init.zeros_(self.conv_out.weight)  # G = 0 at init: training starts from the pre-trained DPM
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, encoding: Encoding, z: torch.Tensor) -> torch.Tensor:
        """G from the frozen teacher's encoding of (x_t, t) and the semantic code z."""
        temb = torch.cat([encoding.emb, self.z_embedding(z)], dim=1)
        return run_up(self, encoding.h, encoding.skips, temb)
