"""Sampling a DDPM with diffusers' DDPM or DDIM pipelines, and saving image grids."""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMPipeline, DDPMPipeline, UNet2DModel
from torchvision.utils import save_image

from diffrep import console
from diffrep.teacher.schedule import sampler_scheduler


@torch.no_grad()
def sample(unet: UNet2DModel, scheduler, n: int, sampler: str = "ddim", steps: int = 100, seed: int = 0,
           progress: bool = True) -> torch.Tensor:
    """n images in [-1, 1], (n, C, H, W)."""
    sched = sampler_scheduler(scheduler, sampler)
    pipe = (DDIMPipeline if sampler == "ddim" else DDPMPipeline)(unet=unet.eval(), scheduler=sched)
    pipe.set_progress_bar_config(disable=console.tqdm_disable(progress), desc=f"{sampler} sampling")
    kwargs = {"num_inference_steps": steps if sampler == "ddim" else len(sched.alphas_cumprod)}
    images = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images
    return torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Images in [-1, 1] to one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((images + 1) / 2, path, nrow=nrow, padding=2, pad_value=1.0)
    return path
