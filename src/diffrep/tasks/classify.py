"""ClassifierModule: supervised fine-tuning of a student (random init or a distilled backbone).

Cross-entropy on a fresh linear head, SGD (Nesterov) or AdamW, linear warm-up then cosine decay to 0 at
trainer.max_steps, optional EMA of the weights (evaluation then uses the EMA weights).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from diffrep.data import ImageSet, to_float
from diffrep.errors import UserError
from diffrep.tasks.students import replace_head
from diffrep.train import TimedModule, ema_model, step_generator, step_loader

OPTIM_DEFAULTS = {
    "name": "sgd",          # sgd | adamw
    "lr": None,             # peak learning rate, after the warm-up; null: 0.1 for sgd, 2e-3 for adamw
    "momentum": 0.9,        # sgd only
    "nesterov": True,       # sgd only
    "weight_decay": None,   # null: 1e-4 for sgd, 0.05 for adamw
    "batch_size": 128,
    "warmup_steps": 100,    # linear warm-up, then cosine decay to 0 at trainer.max_steps
    "ema_decay": None,      # e.g. 0.999 (RepFusion's CIFAR fine-tuning); null: no EMA
}
OPTIMIZERS = ("sgd", "adamw")
LR_DEFAULTS = {"sgd": 0.1, "adamw": 2e-3}  # adamw: mmpose's Adam rate for WFLW heatmaps


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor: linear warm-up over `warmup` steps, then cosine from 1 to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_optimizer(params, optim: dict, total_steps: int) -> dict:
    """SGD or AdamW (OPTIM_DEFAULTS) with warm-up and cosine decay per step, as Lightning's configure_optimizers
    returns them; shared by every fine-tuning module."""
    lr = LR_DEFAULTS[optim["name"]] if optim["lr"] is None else optim["lr"]
    if optim["name"] == "sgd":
        wd = 1e-4 if optim["weight_decay"] is None else optim["weight_decay"]
        opt = torch.optim.SGD(params, lr=lr, momentum=optim["momentum"], nesterov=bool(optim["nesterov"]),
                              weight_decay=wd)
    else:
        wd = 0.05 if optim["weight_decay"] is None else optim["weight_decay"]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    warmup = max(0, optim["warmup_steps"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, warmup, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def check_optim(optim: dict) -> None:
    if optim["name"] not in OPTIMIZERS:
        raise UserError(f"unknown optim.name '{optim['name']}'; valid: {', '.join(OPTIMIZERS)}")


class ClassifierModule(TimedModule):
    def __init__(self, student: nn.Module, arch: str, num_classes: int, optim: dict, train_data: ImageSet,
                 seed: int, hflip: bool):
        super().__init__()
        check_optim(optim)
        self.student = replace_head(student, arch, num_classes)
        self.ema = ema_model(self.student, optim["ema_decay"]) if optim.get("ema_decay") else None
        self.num_classes, self.optim, self.train_data, self.seed, self.hflip = (num_classes, optim, train_data,
                                                                                  seed, hflip)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.student

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.eval_model(images)

    def _rank_seed(self) -> int:
        return self.seed + 7919 * self.global_rank  # each device draws its own batches

    def train_dataloader(self):
        return step_loader(self.train_data, self.optim["batch_size"], lambda: self.global_step, self._rank_seed(),
                           self.hflip)

    def on_train_batch_start(self, batch, batch_idx):
        # Dropout (mobilenet_v2) draws from the global generator; seeding it by step keeps resumed runs exact.
        torch.manual_seed(step_generator(self._rank_seed(), self.global_step, stream=3).initial_seed())

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.student(images), labels)
        self.recent_losses.append(loss.item())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Update the EMA here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.student)

    def configure_optimizers(self):
        return configure_optimizer(self.student.parameters(), self.optim, self.trainer.max_steps)

    @torch.no_grad()
    def test_accuracy(self, data: ImageSet, batch_size: int = 256) -> float:
        """Top-1 accuracy over the whole split, in eval mode (EMA weights when enabled)."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        metric = MulticlassAccuracy(num_classes=self.num_classes, average="micro").to(device)
        for start in range(0, len(data), batch_size):
            images = to_float(data.images[start:start + batch_size]).to(device)
            metric.update(model(images), data.labels[start:start + batch_size].to(device))
        model.train(was_training)
        return float(metric.compute())
