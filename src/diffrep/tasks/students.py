"""Students: torchvision ResNet-18/50 and MobileNetV2 with a CIFAR-style or ImageNet stem, feature taps,
and backbone files (safetensors) that load into the plain torchvision model of the same name.

    model = build_student("resnet18", in_channels=1, stem="small")
    feats = student_features(model, ["layer3", "layer4"])(images)      # {tap: (B, C, H, W)}
    save_backbone(model, "backbone.safetensors", "resnet18", 1, "small")
    model, meta = load_backbone("backbone.safetensors")

Taps are module names of the torchvision model (`layer4`, `layer4.1`, `features.18`, ...); a container
such as `layer4` gives the output of its last operation, so `layer4.1` is the block output that RepFusion
calls `layer4.1.relu` (here `layer4.1.relu` is the ReLU's *first* call, inside the block).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from diffrep.errors import UserError
from diffrep.run_dir import honour_umask

STUDENTS = ("resnet18", "resnet50", "mobilenet_v2")
STEMS = ("small", "imagenet")  # small: CIFAR variant (3x3 stride-1 first conv, no max-pool); imagenet: torchvision's
HEADS = {"resnet18": "fc", "resnet50": "fc", "mobilenet_v2": "classifier"}
DEFAULT_TAPS = {"resnet18": "layer4", "resnet50": "layer4", "mobilenet_v2": "features.18"}  # the last stage
FORMAT = "diffrep-student-v1"


def _check_arch(arch: str) -> None:
    if arch not in STUDENTS:
        raise UserError(f"unknown student '{arch}'; valid students: {', '.join(STUDENTS)}")


def _new_conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's own conv init
    return conv


def build_student(arch: str, in_channels: int = 1, stem: str = "small") -> nn.Module:
    """A randomly initialised torchvision model (weights=None) taking `in_channels`-channel images.

    stem="small": the CIFAR variant, for 32x32 images: first conv 3x3 stride 1 and, for ResNets, no max-pool;
    for mobilenet_v2 also stride 1 in the first block of the 32-channel stage (features.4), as in mmcls's
    MobileNetV2_CIFAR. stem="imagenet": torchvision's stem, with only the input channels changed.
    """
    _check_arch(arch)
    if stem not in STEMS:
        raise UserError(f"unknown stem '{stem}'; valid stems: {', '.join(STEMS)}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise UserError(f"in_channels must be a positive integer, got {in_channels!r}")
    model = getattr(torchvision.models, arch)(weights=None)
    if arch.startswith("resnet"):
        if stem == "small":
            model.conv1, model.maxpool = _new_conv(in_channels, 64, 3, 1), nn.Identity()
        elif in_channels != 3:
            model.conv1 = _new_conv(in_channels, 64, 7, 2)
    else:
        first = model.features[0][0]
        if stem == "small" or in_channels != 3:
            model.features[0][0] = _new_conv(in_channels, first.out_channels, 3, 1 if stem == "small" else 2)
        if stem == "small":
            # mmcls's MobileNetV2_CIFAR (RepFusion's student) also keeps the 32-channel stage at stride 1,
            # so a 32x32 image gives a 4x4 map like the ResNets; strides hold no weights, keys are unchanged.
            model.features[4].conv[1][0].stride = (1, 1)
    return model


def replace_head(model: nn.Module, arch: str, num_classes: int) -> nn.Module:
    """Replace the classification head by a fresh nn.Linear(features, num_classes); returns the model."""
    _check_arch(arch)
    if HEADS[arch] == "fc":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def head_of(model: nn.Module, arch: str) -> nn.Linear:
    """The classification head's last nn.Linear."""
    _check_arch(arch)
    return model.fc if HEADS[arch] == "fc" else model.classifier[-1]


def default_tap(arch: str) -> str:
    _check_arch(arch)
    return DEFAULT_TAPS[arch]


def valid_taps(model: nn.Module) -> list[str]:
    """Module names whose output is a feature map, in forward order: traced leaves and their containers."""
    modules = dict(model.named_modules())
    heads = set(HEADS.values())
    names: dict[str, None] = {}
    for node in get_graph_node_names(model)[1]:
        if node in modules:
            parts = node.split(".")
            if parts[0] not in heads:
                names.update({".".join(parts[:i]): None for i in range(1, len(parts) + 1)})
    return list(names)


def student_features(model: nn.Module, taps: str | list[str]) -> nn.Module:
    """A module mapping images to {tap: feature map}; it shares the model's weights and prunes everything
    after the deepest tap (the head), and its state_dict keys are those of the torchvision model."""
    taps = [taps] if isinstance(taps, str) else list(taps)
    if not taps:
        raise UserError("no student taps requested")
    valid = valid_taps(model)
    for tap in taps:
        if tap not in valid:
            raise UserError(f"unknown student tap '{tap}'; valid taps: {', '.join(valid)}")
    return create_feature_extractor(model, {tap: tap for tap in taps})


def feature_shape(model: nn.Module, tap: str, in_channels: int, resolution: int) -> tuple[int, int, int]:
    """(C, H, W) of a tap's feature map for square images of `resolution`, from a dry run in eval mode."""
    was_training = model.training
    model.eval()  # batch statistics of a 1x1 map fail in train mode
    try:
        extractor = student_features(model, [tap])
        with torch.no_grad():
            out = extractor(torch.zeros(1, in_channels, resolution, resolution))[tap]
    except RuntimeError as err:
        raise UserError(f"cannot run the student on {in_channels} x {resolution} x {resolution} images: "
                        f"{str(err).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    return tuple(out.shape[1:])


def feature_channels(model: nn.Module, tap: str, in_channels: int, resolution: int) -> int:
    return feature_shape(model, tap, in_channels, resolution)[0]


def _is_head(key: str, arch: str) -> bool:
    return key.split(".")[0] == HEADS[arch]


def save_file_atomic(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> Path:
    """save_file to a temporary file beside `path`, then rename: a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(honour_umask(tmp), path)
    return path


def save_backbone(model: nn.Module, path: str | Path, arch: str, in_channels: int, stem: str) -> Path:
    """Write the model's state dict without its classification head (`fc.*` / `classifier.*`) to safetensors.

    The file holds plain torchvision keys, so it loads without diffrep; with a small stem, change the stem first:

        import torch, torchvision
        from safetensors.torch import load_file
        model = torchvision.models.resnet18()
        model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)     # stem "small", 1 input channel
        model.maxpool = torch.nn.Identity()
        missing, unexpected = model.load_state_dict(load_file("backbone.safetensors"), strict=False)
        # missing == ["fc.weight", "fc.bias"]: train a head of your own

    (mobilenet_v2, stem "small": `model.features[0][0] = torch.nn.Conv2d(C, 32, 3, 1, 1, bias=False)` and
    `model.features[4].conv[1][0].stride = (1, 1)`; the missing keys are `classifier.1.*`. Stem "imagenet" with
    C != 3: the first conv with C input channels and torchvision's kernel, stride and padding.)
    The metadata records arch, in_channels, stem and format "diffrep-student-v1".
    """
    _check_arch(arch)
    state = {k: v for k, v in model.state_dict().items() if not _is_head(k, arch)}
    meta = {"arch": arch, "in_channels": str(int(in_channels)), "stem": stem, "format": FORMAT}
    return save_file_atomic(state, path, meta)


def read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(weights, metadata) of a safetensors file; a missing or unreadable file is a UserError."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {key: fh.get_tensor(key) for key in fh.keys()}, fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a safetensors file ({str(err).splitlines()[0]})") from None


def load_backbone(path: str | Path) -> tuple[nn.Module, dict]:
    """The torchvision model saved by save_backbone (with a random head) and its metadata
    {"arch", "in_channels" (int), "stem", "format"}."""
    path = Path(path)
    state, meta = read_safetensors(path, "backbone")
    if meta.get("format") != FORMAT or not {"arch", "in_channels", "stem"} <= meta.keys():
        raise UserError(f"{path}: no diffrep student metadata (arch, in_channels, stem); "
                        f"write backbones with diffrep.tasks.save_backbone")
    try:
        meta = {**meta, "in_channels": int(meta["in_channels"])}
    except ValueError:
        raise UserError(f"{path}: in_channels in the metadata is not a number: {meta['in_channels']!r}") from None
    arch, stem = meta["arch"], meta["stem"]
    model = build_student(arch, meta["in_channels"], stem)
    expected = model.state_dict()
    what = f"a {arch} with a {stem} stem and {meta['in_channels']} input channels"
    for key, tensor in state.items():
        if key not in expected:
            raise UserError(f"{path}: weight '{key}' does not belong to {what}")
        if tensor.shape != expected[key].shape:
            raise UserError(f"{path}: shape mismatch for '{key}': {tuple(tensor.shape)} in the file, "
                            f"{tuple(expected[key].shape)} in {what}")
    missing = model.load_state_dict(state, strict=False).missing_keys
    if any(not _is_head(key, arch) for key in missing):
        lost = [key for key in missing if not _is_head(key, arch)]
        raise UserError(f"{path}: {len(lost)} weights of {what} are missing, e.g. '{lost[0]}'")
    return model, meta
