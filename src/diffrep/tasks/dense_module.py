"""DenseModule: fine-tuning a student with an FPN decoder (fpn.DenseNet) on a DenseSet, the shared part of
SegmentModule and LandmarkModule: optimiser and schedule (as classification), EMA, seeded augmented batches.

Subclasses set `target` ('masks' or 'keypoints', what the batches carry) and define `loss(outputs, target)`.
"""
from __future__ import annotations

import torch
from torch import nn

from diffrep.data import DenseSet, to_float
from diffrep.tasks.augment import dense_loader
from diffrep.tasks.classify import check_optim, configure_optimizer
from diffrep.tasks.fpn import DenseNet, dense_taps
from diffrep.train import TimedModule, ema_model, step_generator

HEAD_DEFAULTS = {
    "taps": None,   # student taps the FPN reads, shallow to deep (list or comma-separated); null: fpn.DENSE_TAPS
    "width": 64,    # FPN channels
}


class DenseModule(TimedModule):
    target = ""

    def __init__(self, student: nn.Module, arch: str, in_channels: int, out_channels: int, head: dict, optim: dict,
                 augment: dict, train_data: DenseSet, seed: int, hflip: bool):
        super().__init__()
        check_optim(optim)
        self.net = DenseNet(student, dense_taps(arch, head["taps"]), in_channels, head["width"], out_channels)
        self.ema = ema_model(self.net, optim["ema_decay"]) if optim.get("ema_decay") else None
        self.optim, self.augment, self.train_data, self.seed, self.hflip = optim, augment, train_data, seed, hflip

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.eval_model(images)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _rank_seed(self) -> int:
        return self.seed + 7919 * self.global_rank  # each device draws its own batches

    def train_dataloader(self):
        return dense_loader(self.train_data, self.target, self.optim["batch_size"], lambda: self.global_step,
                            self._rank_seed(), self.hflip, self.augment)

    def on_train_batch_start(self, batch, batch_idx):
        # Anything drawing from the global generator stays exact on resume when it is seeded by the step.
        torch.manual_seed(step_generator(self._rank_seed(), self.global_step, stream=3).initial_seed())

    def training_step(self, batch, batch_idx):
        images, target = batch
        loss = self.loss(self.net(images), target)
        self.recent_losses.append(loss.item())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Update the EMA here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def configure_optimizers(self):
        return configure_optimizer(self.net.parameters(), self.optim, self.trainer.max_steps)

    @torch.no_grad()
    def outputs(self, images: torch.Tensor, batch_size: int = 256):
        """Eval-mode outputs (EMA weights when enabled) for uint8 images, batch by batch: yields (start, outputs)."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            for start in range(0, len(images), batch_size):
                yield start, model(to_float(images[start:start + batch_size]).to(device))
        finally:
            model.train(was_training)
