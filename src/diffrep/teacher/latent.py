"""Latent teachers: a denoiser of VAE latents (Stable Diffusion's UNet, DiT), fed images through the VAE encoder.

Images are encoded to the latent mean times the VAE's scaling factor (what the pipelines train on); taps and
timesteps then work as for pixel teachers. The latent of the last batch is kept, keyed by the tensor itself and its
version counter, so calling `features` for several timesteps with the same images runs the encoder once.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diffrep.teacher.model import Teacher


def _version(x: torch.Tensor) -> int | None:
    try:
        return x._version
    except RuntimeError:  # inference tensors have no version counter: never cached
        return None


class LatentTeacher(Teacher):
    """A denoiser of latents plus the VAE that makes them; `resolution` and `channels` are the images'."""

    def __init__(self, denoiser: nn.Module, vae: nn.Module, scheduler, path: str | Path | None = None):
        super().__init__(denoiser, scheduler, path)
        self.vae = vae.eval().requires_grad_(False)
        self._cached: tuple[torch.Tensor, int, torch.Tensor] | None = None

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell along one side: 2 per VAE down block after the first."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        return self.latent_size * self.vae_factor

    @property
    def channels(self) -> int:
        return int(self.vae.config.in_channels)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        return int(self.unet.config.in_channels), self.latent_size, self.latent_size

    @torch.no_grad()
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """(mean latent - shift) * scaling_factor, on the teacher's device; the last batch's latent is reused."""
        version = _version(x0)
        if self._cached is not None and self._cached[0] is x0 and version is not None and self._cached[1] == version:
            return self._cached[2]
        latent = self.vae.encode(x0.to(self.device, self.vae.dtype)).latent_dist.mode()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latent = (latent - shift) * self.vae.config.scaling_factor
        self._cached = (x0, version, latent) if version is not None else None
        return latent

    def to(self, device) -> LatentTeacher:
        super().to(device)
        self.vae.to(device)
        self._cached = None
        return self

    def describe_latent(self) -> str:
        params = sum(p.numel() for p in self.vae.parameters())
        c, h, _ = self.model_shape
        return (f"input        {self.channels} x {self.resolution} x {self.resolution} images in [-1, 1] -> "
                f"{type(self.vae).__name__} ({params / 1e6:.2f}M, x{self.vae_factor}, scaling "
                f"{self.vae.config.scaling_factor:g}) -> latents {c} x {h} x {h}")
