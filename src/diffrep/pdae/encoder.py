"""SemanticEncoder E(x0) -> z: strided 3x3 convs with group norm and SiLU, one attention block, a linear to z_dim.

The reference's encoders (reference section 2.1) are this network for two input sizes:
    128 px: channels [64, 128, 256, 256, 256], attention after the conv that reaches 16 x 16;
     64 px: channels [64, 128, 128, 128],      attention after the conv that reaches 16 x 16.
`default_channels` extends the rule (one stride-2 conv per halving down to 4 x 4) to any resolution.
"""
from __future__ import annotations

import math

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from diffrep.errors import UserError

ATTENTION_RESOLUTION = 16  # the reference puts its one attention block on the 16 x 16 feature map


def default_channels(resolution: int) -> list[int]:
    """The reference's widths for 64 and 128 px, and the same rule for any size: halve down to 4 x 4."""
    convs = max(1, int(math.log2(resolution)) - 2)
    cap = 256 if resolution > 64 else 128
    return [min(64 * 2 ** i, cap) for i in range(convs)]


def _groups(channels: int) -> int:
    return math.gcd(32, channels)  # GroupNorm(32) as the reference, fewer groups for narrow test widths


class SemanticEncoder(nn.Module):
    def __init__(self, in_channels: int, resolution: int, z_dim: int, channels: list[int] | None = None):
        super().__init__()
        channels = default_channels(resolution) if channels is None else channels
        if not isinstance(channels, (list, tuple)) or not channels or \
                not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise UserError(f"encoder.channels must be a list of positive integers, got {channels!r}")
        channels = list(channels)
        if resolution % 2 ** len(channels):
            raise UserError(f"encoder.channels {channels}: {len(channels)} stride-2 convs do not divide "
                            f"{resolution} x {resolution} images evenly")
        self.config = {"in_channels": in_channels, "resolution": resolution, "z_dim": z_dim, "channels": channels}
        sides = [resolution // 2 ** (i + 1) for i in range(len(channels))]
        # the one attention block follows the first conv whose output is 16 x 16 or smaller
        attend = next(i for i, side in enumerate(sides) if side <= ATTENTION_RESOLUTION or i == len(sides) - 1)
        layers, prev = [], in_channels
        for i, width in enumerate(channels):
            layers.append(nn.Conv2d(prev, width, 3, stride=2, padding=1))
            if i == attend:
                layers.append(AttentionBlock(width))
            layers += [nn.GroupNorm(_groups(width), width), nn.SiLU()]
            prev = width
        self.features = nn.Sequential(*layers)
        self.to_z = nn.Linear(prev * sides[-1] ** 2, z_dim)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.to_z(self.features(x0).flatten(1))


class AttentionBlock(Attention):
    """The reference's AttentionBlock: GN, 4-head self-attention, zero-initialised output projection, residual."""

    def __init__(self, channels: int, heads: int = 4):
        heads = heads if channels % heads == 0 else 1  # any width works; the reference's are multiples of 4
        super().__init__(channels, heads=heads, dim_head=channels // heads, norm_num_groups=_groups(channels),
                         residual_connection=True, bias=True, upcast_softmax=True, _from_deprecated_attn_block=True)
        nn.init.zeros_(self.to_out[0].weight)  # starts as the identity
        nn.init.zeros_(self.to_out[0].bias)
