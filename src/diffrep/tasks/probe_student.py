"""A linear probe of a student's frozen, pooled features: does a distilled student already carry the task?

Fine-tuning can hide what distillation gave (a strong optimiser pulls every initialisation to a similar
solution), so `diffrep distill` also reports this probe for its student and for a randomly initialised one of
the same architecture: the same standardised logistic regression as `diffrep probe`, on global-average-pooled
features of the student tap, eval mode (BatchNorm running statistics).
"""
from __future__ import annotations

import torch
from torch import nn

from diffrep.data import ImageSet, to_float
from diffrep.probe.linear import probe
from diffrep.tasks.students import student_features


@torch.no_grad()
def pooled_features(model: nn.Module, tap: str, data: ImageSet, batch_size: int = 500) -> torch.Tensor:
    was_training = model.training
    features = student_features(model.eval(), tap)
    device = next(model.parameters()).device
    out = [features(to_float(data.images[i:i + batch_size]).to(device))[tap].mean((2, 3)).cpu()
           for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def probe_student(model: nn.Module, tap: str, train: ImageSet, test: ImageSet) -> float:
    """Test accuracy of a linear probe on the student's pooled `tap` features (train split fits it)."""
    return probe(pooled_features(model, tap, train), train.labels, pooled_features(model, tap, test), test.labels,
                 num_classes=len(train.classes))
