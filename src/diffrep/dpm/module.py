"""DDPMModule: epsilon-prediction training of a diffusers UNet2DModel, with EMA weights.

The recipe's levers are options: the learning-rate schedule after the warm-up (constant, cosine or linear decay
to optim.final_lr_ratio at trainer.max_steps), the loss weighting (none or Min-SNR-gamma) and a warm start from
the weights of another DPM of the same architecture (`init`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DModel

from diffrep.data import ImageSet
from diffrep.dpm.weighting import eps_loss_weights
from diffrep.run_dir import honour_umask
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.train import TimedModule, ema_model, step_generator, step_loader
from diffrep.train.schedules import lr_factor


class DDPMModule(TimedModule):
    def __init__(self, unet_config: dict, schedule: dict, optim: dict, loss: dict, train_data: ImageSet, seed: int,
                 hflip: bool, init: UNet2DModel | None = None):
        super().__init__()
        self.unet = UNet2DModel(**unet_config)
        if init is not None:
            self.unet.load_state_dict(init.state_dict())
        self.ema = ema_model(self.unet, optim["ema_decay"])
        self.scheduler = ddpm_scheduler(schedule)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.register_buffer("loss_weights", eps_loss_weights(self.scheduler.alphas_cumprod, loss["weighting"],
                                                              loss["snr_gamma"]), persistent=False)
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
        per_image = (self.unet(x_t, t).sample - noise).square().flatten(1).mean(1)
        mse = per_image.mean()
        loss = (self.loss_weights[t] * per_image).mean()
        self.recent_losses.append(mse.item())  # the plain epsilon MSE, comparable across weightings
        self.log("train/loss", mse, prog_bar=True)
        if not torch.equal(loss, mse):
            self.log("train/weighted_loss", loss)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Update the EMA here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.unet)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.unet.parameters(), lr=self.optim["lr"])
        warmup, total = max(1, self.optim["warmup_steps"]), self.trainer.max_steps
        kind, floor = self.optim["schedule"], self.optim["final_lr_ratio"]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, warmup, total, kind, floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def export(self, directory: str | Path) -> Path:
        """Save the EMA weights as a diffusers directory that UNet2DModel.from_pretrained reads."""
        directory = Path(directory)
        self.ema.module.save_pretrained(directory, safe_serialization=True)
        self.scheduler.save_config(directory)
        return honour_umask(directory)
