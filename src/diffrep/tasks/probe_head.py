"""LP-FT (Kumar et al., ICLR 2022): start fine-tuning from a linear probe of the frozen backbone, not a random head.

A random head sends large, arbitrary gradients into a pre-trained backbone during the first steps and can distort
the features it was given; a head that already reads them well does not. `fit_probe_head` fits the project's
linear probe (standardised features, L-BFGS logistic regression; diffrep.probe.linear) on the pooled features that
reach the classification head, computed once in eval mode on the labelled images, and writes it into the head with
the standardisation folded in, so that before any training step the classifier is the probe itself.

The BatchNorm running statistics are first re-estimated on the same images (`update_bn`, as for SWA weights). A
distilled student is an EMA of weights whose running statistics are an EMA too, and they need not match its
activations: on a dense-layer2 resnet18 student the cross-entropy of a probe head on a batch of its own training
images was 0.006 in eval mode and 27,000 in train mode, where fine-tuning reads them (0.02 after re-estimation, and
the probe's test accuracy unchanged). A random head hides this; a fitted one is wrecked by it in the first step.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from diffrep.data import ImageSet, to_float
from diffrep.probe.linear import PROBE_DEFAULTS, fit_logistic, moments
from diffrep.tasks.students import head_of


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Linear, data: ImageSet, batch_size: int = 256) -> torch.Tensor:
    """The (N, D) features the head receives for every image of `data`, in eval mode."""
    captured = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(data), batch_size):
            model(to_float(data.images[start:start + batch_size]).to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


@torch.no_grad()
def fit_linear_head(head: nn.Linear, x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Write into `head` the probe of features `x` (N, D), standardisation folded in; returns its train accuracy."""
    mean, std = moments(x)
    xs = (x - mean) / std
    weight, bias = fit_logistic(xs, labels, num_classes, PROBE_DEFAULTS["weight_decay"], PROBE_DEFAULTS["max_iter"])
    folded = weight / std  # W (x - m) / s + b  =  (W / s) x + (b - (W / s) m)
    head.weight.copy_(folded.to(head.weight))
    head.bias.copy_((bias - folded @ mean).to(head.bias))
    return float((xs @ weight.T + bias).argmax(1).eq(labels).float().mean())


@torch.no_grad()
def fit_probe_head(model: nn.Module, arch: str, data: ImageSet, num_classes: int) -> float:
    """Re-estimate the BatchNorm statistics on `data`, then make the head a probe of its frozen features; returns
    the probe's train accuracy."""
    images = to_float(data.images)  # update_bn restores the model's train/eval mode itself
    update_bn([images[i:i + 256] for i in range(0, len(images), 256)], model, next(model.parameters()).device)
    head = head_of(model, arch)
    return fit_linear_head(head, head_inputs(model, head, data), data.labels, num_classes)
