"""DenseModule: fine-tuning a student with an FPN decoder (fpn.DenseNet) on a DenseSet, the shared part of
SegmentModule and LandmarkModule on top of FinetuneModule (optimiser, schedule, EMA, seeding, training step):
the network and seeded, augmented batches.

Subclasses set `target` ('masks' or 'keypoints', what the batches carry) and define `loss(outputs, target)`.
"""
from __future__ import annotations

import torch
from torch import nn

from diffrep.data import DenseSet, to_float
from diffrep.options import blocks
from diffrep.tasks.augment import dense_loader
from diffrep.tasks.finetune_module import FinetuneModule
from diffrep.tasks.fpn import DenseNet, dense_taps

HEAD_DEFAULTS = blocks.HEAD


class DenseModule(FinetuneModule):
    target = ""

    def __init__(self, student: nn.Module, arch: str, in_channels: int, out_channels: int, head: dict, optim: dict,
                 augment: dict, train_data: DenseSet, seed: int, hflip: bool):
        net = DenseNet(student, dense_taps(arch, head["taps"]), in_channels, head["width"], out_channels)
        super().__init__(net, optim, train_data, seed, hflip)
        self.augment = augment

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.decoder.parameters())

    def train_dataloader(self):
        return dense_loader(self.train_data, self.target, self.optim["batch_size"], lambda: self.global_step,
                            self._rank_seed(), self.hflip, self.augment)

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
