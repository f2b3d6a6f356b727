"""Teacher: a frozen pre-trained DPM (diffusers UNet2DModel), its noise schedule and its taps."""
from __future__ import annotations

import difflib
import json
from pathlib import Path

import torch
from diffusers import UNet2DModel

from diffrep.errors import UserError
from diffrep.teacher.schedule import load_scheduler
from diffrep.teacher.taps import discover, run_with_taps

SHIPPED_TEACHER = Path(__file__).resolve().parent.parent / "teachers" / "fashion-mnist"
INPUT_MODES = ("clean", "noised")


class Teacher:
    """A frozen UNet2DModel with `features(x0, t, taps)`: named module outputs from one forward pass
    that stops as soon as the last requested tap has been computed."""

    def __init__(self, unet: UNet2DModel, scheduler, path: str | Path | None = None):
        self.unet = unet.eval().requires_grad_(False)
        self.scheduler = scheduler
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        self.path = Path(path) if path else None
        self._taps: dict | None = None

    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def taps(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """{tap: (C, H, W) at the teacher's resolution, module type}, in execution order."""
        if self._taps is None:
            x = torch.zeros(1, self.channels, self.resolution, self.resolution, device=self.device)
            self._taps = discover(self.unet, (x, torch.zeros(1, dtype=torch.long, device=self.device)))
        return self._taps

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device) -> "Teacher":
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
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device if generator is None else "cpu")
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise.to(x0)

    @torch.no_grad()
    def features(self, x0: torch.Tensor, t, taps: list[str] | str, input: str = "clean",
                 noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 early_exit: bool = True) -> dict[str, torch.Tensor]:
        """{tap: feature} for images x0 in [-1, 1].

        input="clean" feeds x0 with the time embedding of t (the official RepFusion code);
        input="noised" feeds x_t drawn from q(x_t | x0), with `noise` or fresh noise from `generator`.
        early_exit=False runs the whole UNet with hooks (the naive approach, for comparison).
        """
        taps = self.check_taps(taps)
        self.check_images(x0)
        t = self.timesteps(t, len(x0))
        if input == "noised":
            x0 = self.noised(x0, t, noise, generator)
        elif input != "clean":
            raise UserError(f"unknown teacher input '{input}' (valid: {', '.join(INPUT_MODES)})")
        return run_with_taps(self.unet, taps, early_exit, x0.to(self.device), t)

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
        cfg = self.unet.config
        params = sum(p.numel() for p in self.unet.parameters())
        betas = self.scheduler.betas
        return "\n".join([
            f"teacher      {self.path or '(in memory)'}",
            f"model        {type(self.unet).__name__}, {params / 1e6:.2f}M parameters",
            f"input        {self.channels} x {self.resolution} x {self.resolution}, in [-1, 1]",
            f"channels     {list(cfg.block_out_channels)}, {cfg.layers_per_block} res-block(s) per level",
            f"down blocks  {', '.join(cfg.down_block_types)}",
            f"up blocks    {', '.join(cfg.up_block_types)}",
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


def load_teacher(path: str | Path | None = None, device: str | torch.device = "cpu") -> Teacher:
    """Read a diffusers UNet2DModel directory (default: the shipped Fashion-MNIST teacher) and freeze it."""
    path = Path(path) if path else SHIPPED_TEACHER
    if not path.is_dir():
        raise UserError(f"teacher not found: {path} (expected a diffusers UNet2DModel directory)")
    unet_dir = _unet_dir(path)
    try:
        class_name = json.loads((unet_dir / "config.json").read_text()).get("_class_name", "UNet2DModel")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{unet_dir / 'config.json'}: not valid JSON ({err})") from None
    if class_name != "UNet2DModel":
        raise UserError(f"{unet_dir}: a {class_name}, but diffrep teachers are UNet2DModel directories")
    if not any(unet_dir.glob("diffusion_pytorch_model*.safetensors")) and not any(unet_dir.glob("*.bin")):
        raise UserError(f"{unet_dir}: no weights (diffusion_pytorch_model.safetensors)")
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the teacher in {unet_dir}: {first}") from None
    return Teacher(unet, load_scheduler(path if (path / "scheduler_config.json").is_file() else unet_dir),
                   path).to(device)
