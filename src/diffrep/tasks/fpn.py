"""DenseNet: a student backbone read at several depths and a light FPN decoder, for per-pixel outputs.

The decoder is the top-down path of a feature pyramid network (Lin et al. 2017), reduced to its finest level:
a 1x1 lateral conv maps every tap to `width` channels; from the deepest tap down, the running map is bilinearly
upsampled to the next tap's size and added to its lateral; one 3x3 conv-BN-ReLU and a 1x1 conv then give
`out_channels` maps at the finest tap's resolution (the caller upsamples logits or reads heatmaps there).

Default taps (DENSE_TAPS) end every stage, stem included, so small images keep a fine map whatever the stem:
at 32 px the small stem gives 32, 32, 16, 8, 4 px for resnets (relu, layer1..layer4), the imagenet stem 16, 8,
4, 2, 1 px, whose finest map (stride 2) is then upsampled. The deepest tap is the one distillation trains
(layer4 / features.18), so a distilled backbone's features reach the head.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffrep.errors import UserError
from diffrep.tasks.students import STUDENTS, build_student, read_safetensors, student_features

DENSE_FORMAT = "diffrep-dense-v1"  # metadata format of the saved model (load_dense_net)

DENSE_TAPS = {
    "resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "resnet50": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "mobilenet_v2": ["features.1", "features.3", "features.6", "features.13", "features.18"],
}
assert set(DENSE_TAPS) == set(STUDENTS)


class FPN(nn.Module):
    """Top-down feature pyramid to one map at the finest input's resolution; features shallow to deep."""

    def __init__(self, in_channels: list[int], width: int, out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(width, out_channels, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.smooth(x))


class DenseNet(nn.Module):
    """images (B, C, H, W) -> (B, out_channels, h, w) at the finest tap's resolution.

    `backbone` is the student's feature extractor: its state-dict keys are the torchvision model's (without the
    unused classification head), the decoder's start with `decoder.`.
    """

    def __init__(self, student: nn.Module, taps: list[str], in_channels: int, width: int, out_channels: int):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise UserError(f"head.width must be a positive integer, got {width!r}")
        self.taps = list(taps)
        self.backbone = student_features(student, self.taps)
        was_training = student.training
        self.backbone.eval()  # a dry run for the taps' channels; batch statistics of 1x1 maps fail in train mode
        with torch.no_grad():
            shapes = [f.shape for f in self._features(torch.zeros(1, in_channels, 64, 64))]
        self.backbone.train(was_training)
        sizes = [s[-1] * s[-2] for s in shapes]
        if sizes != sorted(sizes, reverse=True):
            raise UserError(f"head.taps must go from shallow to deep (finest map first), got {', '.join(self.taps)}")
        self.decoder = FPN([s[1] for s in shapes], width, out_channels)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone(images)
        return [features[tap] for tap in self.taps]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._features(images))


def dense_taps(arch: str, taps: list[str] | str | None) -> list[str]:
    """The taps a DenseNet reads: the option's (a list or comma-separated), else DENSE_TAPS[arch]."""
    if taps is None:
        return list(DENSE_TAPS[arch])
    taps = [t.strip() for t in taps.split(",")] if isinstance(taps, str) else list(taps)
    if not taps or not all(isinstance(t, str) and t for t in taps):
        raise UserError(f"head.taps must be student tap names, shallow to deep, got {taps!r}")
    return taps


def load_dense_net(path: str | Path) -> tuple[DenseNet, dict]:
    """The DenseNet `diffrep finetune --task segment|landmarks` saved to OUT/model.safetensors, in eval mode, and
    its metadata (arch, stem, in_channels, task, taps, width, outputs: the class or keypoint names)."""
    path = Path(path)
    state, meta = read_safetensors(path, "dense model")
    if meta.get("format") != DENSE_FORMAT:
        raise UserError(f"{path}: not a diffrep dense model (written by diffrep finetune --task segment|landmarks)")
    meta = {**meta, "in_channels": int(meta["in_channels"]), "width": int(meta["width"]),
            "taps": meta["taps"].split(","), "outputs": json.loads(meta["outputs"])}
    net = DenseNet(build_student(meta["arch"], meta["in_channels"], meta["stem"]), meta["taps"], meta["in_channels"],
                   meta["width"], len(meta["outputs"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the model in its metadata ({str(err).splitlines()[0]})") from None
    return net.eval(), meta
