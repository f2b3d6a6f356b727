"""The ADM UNet of openai/improved-diffusion and openai/guided-diffusion ("Diffusion Models Beat GANs").

Written from the papers' description, with the module tree of the official code so that the released
`.pt` state dicts load under their own key names: `time_embed.*`, `label_emb.*`, `input_blocks.N.*`,
`middle_block.*`, `output_blocks.N.*`, `out.*`. Every block is a `TimestepEmbedSequential` of res-blocks
(scale-shift norm optional, resampling optional), attention blocks (legacy or new QKV order) and
up/down-samplers. The model outputs eps, or (eps, variance) stacked along channels when sigma is learned.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos | sin] of t times geometrically spaced frequencies (t may be fractional: rescaled timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, 1)) if dim % 2 else embedding


class GroupNorm32(nn.GroupNorm):
    """Group norm over 32 groups, computed in float32 whatever the input's dtype (as the fp16 releases did)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def zeroed(module: nn.Module) -> nn.Module:
    """The official initialisation of residual output layers: zero, so that a fresh block is the identity."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep (and class) embedding as a second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """Sequential that hands the embedding to the children that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv when `use_conv` (key `conv`)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels, self.use_conv = channels, use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """A strided 3x3 conv when `use_conv`, else 2x2 average pooling (key `op` either way)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        else:
            if out_channels != channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """norm-SiLU-conv, add the embedding (or scale-shift the second norm by it), norm-SiLU-dropout-conv, plus a skip.

    With up/down set, both branches are resampled in the middle of the first layer (BigGAN-style resblock_updown).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        zeroed(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if self.out_channels == channels
                                else nn.Conv2d(channels, self.out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, x = input_branch(self, x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def input_branch(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, x) of a res-block after its first layer: norm-SiLU-conv, with both branches resampled before the conv
    when the block goes up or down. Shared with PDAE's ResBlockShift, which holds the same layers."""
    if block.updown:
        h = block.in_layers[:-1](x)
        h, x = block.h_upd(h), block.x_upd(x)
        return block.in_layers[-1](h), x
    return block.in_layers(x), x


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over positions of (B*heads, C, T) tensors; both factors scaled by C^-1/4 (fp16-safe)."""
    scale = 1 / math.sqrt(math.sqrt(q.shape[1]))
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v)


class QKVAttention(nn.Module):
    """Multi-head attention over (B, 3 * heads * C, T) qkv. Legacy order (improved-diffusion): the channels split
    into heads first, then into q, k, v; new order (use_new_attention_order): into q, k, v first, then heads."""

    def __init__(self, n_heads: int, new_order: bool = False):
        super().__init__()
        self.n_heads, self.new_order = n_heads, new_order

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        batch, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        if self.new_order:
            q, k, v = (part.reshape(batch * self.n_heads, ch, length) for part in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(batch * self.n_heads, 3 * ch, length).split(ch, dim=1)
        return _attend(q, k, v).reshape(batch, -1, length)


class AttentionBlock(nn.Module):
    """Self-attention over all positions with a residual connection; heads from num_heads or num_head_channels."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"{channels} channels are not divisible by num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.attention = QKVAttention(num_heads, use_new_attention_order)
        self.proj_out = zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


class ADMUNet(nn.Module):
    """The ADM UNet. `attention_ds` holds downsampling rates (image_size // resolution), as the official model does.

    forward(x, timesteps, y=None): `y` are class labels of a class-conditional model; None leaves the class
    embedding out (diffrep's unconditional features of a class-conditional model).
    """

    def __init__(self, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_ds: tuple[int, ...], dropout: float = 0.0, channel_mult: tuple[float, ...] = (1, 2, 4, 8),
                 conv_resample: bool = True, num_classes: int | None = None, num_heads: int = 1,
                 num_head_channels: int = -1, num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False, use_new_attention_order: bool = False):
        super().__init__()
        num_heads_upsample = num_heads if num_heads_upsample == -1 else num_heads_upsample
        self.model_channels, self.num_classes = model_channels, num_classes
        emb_dim = 4 * model_channels

        def res(ch_in: int, ch_out: int | None = None, **updown) -> ResBlock:
            return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm, **updown)

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, num_head_channels, use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        ch = first = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skips.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch), attention(ch, num_heads), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_ds:
                    layers.append(attention(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zeroed(nn.Conv2d(first, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if self.num_classes is not None and y is not None:
            emb = emb + self.label_emb(y)
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
