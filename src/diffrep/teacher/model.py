"""Teacher: a frozen pre-trained DPM, its noise schedule and its taps, whatever family the denoiser comes from.

The base class is the diffusers UNet2DModel teacher; the other families (ADM, latent UNets, DiT) subclass it and
override only what differs: how the denoiser is called, what images become before it sees them (latents), and how a
module's output becomes a (B, C, H, W) map. Everything above `teacher/` uses this API and never asks the family.
"""
from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path

import torch
from diffusers import UNet2DModel
from torch import nn

from diffrep import shipped
from diffrep.errors import UserError
from diffrep.teacher.pipeline import load_component
from diffrep.teacher.schedule import load_scheduler
from diffrep.teacher.taps import discover, run_with_taps

SHIPPED_TEACHER = shipped.TEACHERS / shipped.DEFAULT
INPUT_MODES = ("clean", "noised")


def sample_of(output) -> torch.Tensor:
    """The prediction tensor of a denoiser's output: a diffusers output's .sample, a tuple's first item, a tensor."""
    if hasattr(output, "sample"):
        return output.sample
    return output[0] if isinstance(output, (tuple, list)) else output


class Teacher:
    """A frozen denoiser with `features(x0, t, taps)`: named module outputs from one forward pass that stops as soon
    as the last requested tap has been computed. This class is the diffusers UNet2DModel family."""

    family = "unet2d"

    def __init__(self, unet: nn.Module, scheduler, path: str | Path | None = None):
        self.unet = unet.eval().requires_grad_(False)
        self.scheduler = scheduler
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        self.path = Path(path) if path else None
        self._taps: dict | None = None

    # --- what a family overrides -------------------------------------------------------------------------------

    @property
    def default_tap(self) -> str:
        """The tap to use when none is named: the bottleneck (mid_block for diffusers UNets)."""
        return "mid_block"

    @property
    def resolution(self) -> int:
        """Side of the images the teacher takes, in pixels."""
        return int(self.unet.config.sample_size)

    @property
    def channels(self) -> int:
        """Channels of the images the teacher takes."""
        return int(self.unet.config.in_channels)

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the denoiser itself takes: the images, or their latents for latent teachers."""
        return self.channels, self.resolution, self.resolution

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the denoiser's input space (pixel teachers: unchanged)."""
        return x0

    def denoiser_inputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[tuple, dict]:
        """(args, kwargs) of one denoiser call on x at integer timesteps t (conditioning goes here)."""
        return (x, t), {}

    def as_map(self, output: torch.Tensor) -> torch.Tensor:
        """A module output as a (B, C, H, W) map (token sequences are reshaped by the families that have them)."""
        return output

    def fresh_denoiser(self) -> nn.Module:
        """A randomly initialised denoiser of the same architecture."""
        return UNet2DModel.from_config(self.unet.config)

    def describe_model(self) -> list[str]:
        """Summary lines about the architecture (after the teacher and model lines)."""
        cfg = self.unet.config
        return [f"input        {self.channels} x {self.resolution} x {self.resolution}, in [-1, 1]",
                f"channels     {list(cfg.block_out_channels)}, {cfg.layers_per_block} res-block(s) per level",
                f"down blocks  {', '.join(cfg.down_block_types)}",
                f"up blocks    {', '.join(cfg.up_block_types)}"]

    # --- the common API ----------------------------------------------------------------------------------------

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def taps(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """{tap: (C, H, W) at the teacher's resolution, module type}, in execution order.

        Found by one forward pass on shapes only (instant even for a Stable Diffusion UNet on a CPU), or by a real
        pass at batch 1 where some operation has no shape-only version."""
        if self._taps is None:
            for device in ("meta", self.device):
                x = torch.zeros(1, *self.model_shape, device=device)
                args, kwargs = self.denoiser_inputs(x, torch.zeros(1, dtype=torch.long, device=device))
                try:
                    self._taps = discover(self.unet, args, kwargs, self.as_map, on_meta=device == "meta")
                    break
                except (RuntimeError, NotImplementedError, TypeError, ValueError):
                    if device != "meta":
                        raise
        return self._taps

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device) -> Teacher:
        self.unet.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    def check_taps(self, taps: list[str]) -> list[str]:
        if isinstance(taps, str):
            taps = [taps]
        if not taps:
            raise UserError("no taps requested")
        for tap in taps:
            if tap not in self.taps:
                close = difflib.get_close_matches(tap, list(self.taps), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise UserError(f"unknown tap '{tap}'{hint}; valid taps: {', '.join(self.taps)}")
        return list(taps)

    def timesteps(self, t, batch: int) -> torch.Tensor:
        """One integer timestep per sample, from a scalar or a (B,) tensor; checked against T."""
        t = torch.as_tensor(t, device=self.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise UserError(f"t must be a scalar or one timestep per sample ({batch}), got shape {tuple(t.shape)}")
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise UserError("timesteps must be integers")
        t = t.long()
        if len(t) and (t.min() < 0 or t.max() >= self.num_timesteps):
            raise UserError(f"timesteps must lie in 0..{self.num_timesteps - 1}, got {t.min()}..{t.max()}")
        return t

    def check_images(self, x0: torch.Tensor) -> None:
        expected = (self.channels, self.resolution, self.resolution)
        if x0.dim() != 4 or tuple(x0.shape[1:]) != expected:
            raise UserError(f"the teacher expects images of shape (B, {', '.join(map(str, expected))}), got "
                            f"{tuple(x0.shape)}; set data.channels {self.channels} and "
                            f"data.resolution {self.resolution}")

    def noised(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, in whatever space x0 is (pixels or latents)."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device if generator is None else "cpu")
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise.to(x0)

    def _noise_like(self, noise: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """Noise for the denoiser's input x. Noise drawn with the images' shape serves latent teachers too: the
        first C*h*w of each sample's i.i.d. N(0, 1) values are themselves i.i.d. N(0, 1)."""
        if noise is None or noise.shape == x.shape:
            return noise
        per_sample = x[0].numel()
        if noise.dim() >= 2 and len(noise) == len(x) and noise[0].numel() >= per_sample:
            return noise.reshape(len(noise), -1)[:, :per_sample].reshape(x.shape)
        raise UserError(f"noise must have the shape of the images or of the denoiser's input "
                        f"{(len(x), *self.model_shape)}, got {tuple(noise.shape)}")

    @torch.no_grad()
    def features(self, x0: torch.Tensor, t, taps: list[str] | str, input: str = "clean",
                 noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 early_exit: bool = True) -> dict[str, torch.Tensor]:
        """{tap: (B, C, H, W) feature} for images x0 in [-1, 1] at the teacher's resolution and channels.

        input="clean" feeds x0 (latent teachers: its latent) with the time embedding of t (the official RepFusion
        code); input="noised" feeds x_t drawn from q(x_t | x0), with `noise` or fresh noise from `generator`.
        early_exit=False runs the whole denoiser with hooks (the naive approach, for comparison).
        """
        taps = self.check_taps(taps)
        self.check_images(x0)
        t = self.timesteps(t, len(x0))
        if input not in INPUT_MODES:
            raise UserError(f"unknown teacher input '{input}' (valid: {', '.join(INPUT_MODES)})")
        x = self.encode(x0)
        if input == "noised":
            x = self.noised(x, t, self._noise_like(noise, x), generator)
        args, kwargs = self.denoiser_inputs(x.to(self.device), t)
        return {name: self.as_map(out) for name, out in run_with_taps(self.unet, taps, early_exit, *args,
                                                                       **kwargs).items()}

    @torch.no_grad()
    def eps(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """The denoiser's epsilon prediction for x_t in its input space (`model_shape`): the first half of the
        channels when it also predicts a variance (learned sigma), converted from v or x0 predictions."""
        if x_t.dim() != 4 or tuple(x_t.shape[1:]) != self.model_shape:
            raise UserError(f"eps expects x_t of shape (B, {', '.join(map(str, self.model_shape))}), "
                            f"got {tuple(x_t.shape)}")
        t = self.timesteps(t, len(x_t))
        x_t = x_t.to(self.device)
        args, kwargs = self.denoiser_inputs(x_t, t)
        out = sample_of(self.unet(*args, **kwargs))
        if out.shape[1] == 2 * x_t.shape[1]:
            out = out[:, :x_t.shape[1]]
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(out)
        kind = self.scheduler.config.prediction_type
        if kind == "v_prediction":
            return abar.sqrt() * out + (1 - abar).sqrt() * x_t
        if kind == "sample":
            return (x_t - abar.sqrt() * out) / (1 - abar).sqrt()
        return out

    def reinitialized(self, seed: int = 0) -> Teacher:
        """The same teacher with a randomly initialised denoiser (seeded; the global RNG is left untouched): the
        random-teacher baseline. A latent teacher keeps its trained VAE."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = self.fresh_denoiser()
        clone = copy.copy(self)
        clone.unet = fresh.to(self.device).eval().requires_grad_(False)
        clone.path = None
        return clone

    def data_config(self, data: dict) -> dict:
        """Data options with resolution and channels set to the teacher's where they are null; a value that
        contradicts the teacher is a UserError."""
        data = dict(data)
        for key, value in (("resolution", self.resolution), ("channels", self.channels)):
            if data[key] is None:
                data[key] = value
            elif data[key] != value:
                raise UserError(f"data.{key} is {data[key]} but the teacher expects {value}; "
                                f"drop --data.{key} to use the teacher's")
        return data

    def summary(self) -> str:
        params = sum(p.numel() for p in self.unet.parameters())
        betas = self.scheduler.betas
        return "\n".join([
            f"teacher      {self.path or '(in memory)'}",
            f"model        {type(self.unet).__name__}, {params / 1e6:.2f}M parameters ({self.family} family, "
            f"default tap {self.default_tap})",
            *self.describe_model(),
            f"schedule     T = {self.num_timesteps}, {self.scheduler.config.beta_schedule} betas "
            f"{float(betas[0]):.4g} .. {float(betas[-1]):.4g}, prediction {self.scheduler.config.prediction_type}",
        ])


def _unet_dir(path: Path) -> Path:
    """The folder with the UNet's config.json: the path itself or a pipeline's unet/ sub-folder."""
    if (path / "config.json").is_file():
        return path
    if (path / "unet" / "config.json").is_file():
        return path / "unet"
    raise UserError(f"{path} is not a diffusers UNet2DModel directory (no config.json, nor unet/config.json)")


def load_unet2d(path: Path) -> Teacher:
    """Read a diffusers UNet2DModel directory (or a pipeline folder with unet/) and freeze it."""
    unet_dir = _unet_dir(path)
    try:
        class_name = json.loads((unet_dir / "config.json").read_text()).get("_class_name", "UNet2DModel")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{unet_dir / 'config.json'}: not valid JSON ({err})") from None
    if class_name != "UNet2DModel":
        raise UserError(f"{unet_dir}: a {class_name}, but diffrep teachers are UNet2DModel directories")
    unet = load_component(UNet2DModel, unet_dir)
    return Teacher(unet, load_scheduler(path if (path / "scheduler_config.json").is_file() else unet_dir), path)

