"""ClassifierModule: supervised fine-tuning of a student (random init or a distilled backbone).

Cross-entropy on a fresh linear head (with LP-FT, one that starts as a linear probe), SGD (Nesterov) or AdamW,
linear warm-up then cosine decay to 0 at trainer.max_steps, optional EMA of the weights (evaluation then uses the
EMA weights).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from diffrep.data import ImageSet, to_float
from diffrep.tasks.finetune_module import OPTIM_DEFAULTS, FinetuneModule
from diffrep.tasks.probe_head import fit_probe_head
from diffrep.tasks.students import head_of, replace_head
from diffrep.train import step_loader

__all__ = ["OPTIM_DEFAULTS", "ClassifierModule"]


class ClassifierModule(FinetuneModule):
    def __init__(self, student: nn.Module, arch: str, num_classes: int, optim: dict, train_data: ImageSet,
                 seed: int, hflip: bool):
        super().__init__(replace_head(student, arch, num_classes), optim, train_data, seed, hflip)
        self.arch, self.num_classes = arch, num_classes

    def init_head_from_probe(self) -> float:
        """LP-FT: the head becomes a linear probe of the frozen student on the training images (the EMA copy
        too); returns the probe's train accuracy."""
        accuracy = fit_probe_head(self.net, self.arch, self.train_data, self.num_classes)
        if self.ema is not None:
            self.ema.module.load_state_dict(self.net.state_dict())
        return accuracy

    @property
    def student(self) -> nn.Module:
        return self.net

    def head_parameters(self) -> list[nn.Parameter]:
        return list(head_of(self.net, self.arch).parameters())

    def train_dataloader(self):
        return step_loader(self.train_data, self.optim["batch_size"], lambda: self.global_step, self._rank_seed(),
                           self.hflip)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, labels)

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
