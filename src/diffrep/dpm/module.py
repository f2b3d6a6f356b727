"""DDPMModule: epsilon-prediction training of a diffusers UNet2DModel, with EMA weights."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from diffrep.data import ImageSet
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.train import TimedModule, ema_model, step_generator, step_loader


class DDPMModule(TimedModule):
    def __init__(self, unet_config: dict, schedule: dict, optim: dict, train_data: ImageSet, seed: int,
                 hflip: bool):
        super().__init__()
        self.unet = UNet2DModel(**unet_config)
        self.ema = ema_model(self.unet, optim["ema_decay"])
        self.scheduler = ddpm_scheduler(schedule)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.optim, self.train_data, self.seed, self.hflip = optim, train_data, seed, hflip

    def train_dataloader(self):
        rank_seed = self.seed + 7919 * self.global_rank  # each device draws its own batches
        return step_loader(self.train_data, self.optim["batch_size"], lambda: self.global_step, rank_seed,
                           self.hflip)

    def training_step(self, batch, batch_idx):
        x0, _ = batch
        gen = step_generator(self.seed + 7919 * self.global_rank, self.global_step, stream=2)
        t = torch.randint(0, len(self.alphas_cumprod), (len(x0),), generator=gen).to(self.device)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        loss = F.mse_loss(self.unet(x_t, t).sample, noise)
        self.recent_losses.append(loss.item())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Update the EMA here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.unet)


    def configure_optimizers(self):
        opt = torch.optim.Adam(self.unet.parameters(), lr=self.optim["lr"])
        warmup = max(1, self.optim["warmup_steps"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def export(self, directory: str | Path) -> Path:
        """Save the EMA weights as a diffusers directory that UNet2DModel.from_pretrained reads."""
        directory = Path(directory)
        self.ema.module.save_pretrained(directory, safe_serialization=True)
        self.scheduler.save_config(directory)
        return directory
