"""FinetuneModule: what every fine-tuning module shares (classification, segmentation, landmarks).

The trained network `net` with an optional EMA copy (evaluated and exported when present), SGD (Nesterov) or
AdamW with a linear warm-up then cosine decay to 0 at trainer.max_steps, per-step seeding of the global
generator so resumed runs are exact, and the training step around the subclass's `loss(outputs, target)`.
Subclasses provide `train_dataloader` (batches of (images, target)), `loss` and
`head_parameters` (the fresh part of `net`, which optim.backbone_lr_ratio leaves at the full rate).
"""
from __future__ import annotations

import torch
from torch import nn

from diffrep.errors import UserError
from diffrep.options import blocks
from diffrep.train import TimedModule, ema_model, step_generator
from diffrep.train.schedules import warmup_cosine

OPTIM_DEFAULTS = blocks.FINETUNE_OPTIM
OPTIMIZERS = ("sgd", "adamw")
LR_DEFAULTS = {"sgd": 0.1, "adamw": 2e-3}  # adamw: mmpose's Adam rate for WFLW heatmaps


def configure_optimizer(params, optim: dict, total_steps: int) -> dict:
    """SGD or AdamW (OPTIM_DEFAULTS) with warm-up and cosine decay per step, as Lightning's configure_optimizers
    returns them; shared by every fine-tuning module. `params` may be parameter groups with an `lr_scale`."""
    lr = LR_DEFAULTS[optim["name"]] if optim["lr"] is None else optim["lr"]
    params = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": lr * g.get("lr_scale", 1.0)}
              if isinstance(g, dict) else g for g in params]
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


class FinetuneModule(TimedModule):
    def __init__(self, net: nn.Module, optim: dict, train_data, seed: int, hflip: bool):
        super().__init__()
        check_optim(optim)
        self.net = net
        self.ema = ema_model(net, optim["ema_decay"]) if optim.get("ema_decay") else None
        self.optim, self.train_data, self.seed, self.hflip = optim, train_data, seed, hflip

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.eval_model(images)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task's training loss; every task module defines it (classify, segment, landmarks)."""
        raise NotImplementedError

    def _rank_seed(self) -> int:
        return self.seed + 7919 * self.global_rank  # each device draws its own batches

    def on_train_batch_start(self, batch, batch_idx):
        # Dropout (mobilenet_v2) and anything else drawing from the global generator stay exact on resume.
        torch.manual_seed(step_generator(self._rank_seed(), self.global_step, stream=3).initial_seed())

    def training_step(self, batch, batch_idx):
        images, target = batch
        loss = self.loss(self.net(images), target)
        self.recent_losses.append(loss.item())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[-1]["lr"])  # the head's: the full rate
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Update the EMA here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def head_parameters(self) -> list[nn.Parameter]:
        """The freshly initialised part of `net` (a classifier head, an FPN decoder), which keeps the full rate."""
        raise NotImplementedError

    def parameter_groups(self) -> list:
        """All of `net`'s parameters; with optim.backbone_lr_ratio below 1, as a backbone group at that fraction
        of the rate and a head group at the full rate."""
        ratio = self.optim.get("backbone_lr_ratio", 1.0)
        if ratio == 1:
            return list(self.net.parameters())
        head = {id(p) for p in self.head_parameters()}
        return [{"params": [p for p in self.net.parameters() if id(p) not in head], "lr_scale": ratio},
                {"params": [p for p in self.net.parameters() if id(p) in head]}]

    def configure_optimizers(self):
        return configure_optimizer(self.parameter_groups(), self.optim, self.trainer.max_steps)
