"""DenseSet: images with per-pixel class masks and/or landmarks for the dense tasks, loaded by name.

Names: `fmnist-scenes` (generated offline from Fashion-MNIST: 11-class masks and 5 landmarks, see scenes.py),
`celebamask-hq:PATH` (face parsing, 19 classes, see celebamask.py) and `wflw:PATH` (98 face landmarks, see
wflw.py). The parallel of ImageSet / load for segmentation and landmark heads; options in DENSE_DEFAULTS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffrep.data import celebamask, scenes, sources, wflw
from diffrep.data.imageset import ImageSet, fit_image, label_fraction, to_float, unlabelled_rest
from diffrep.errors import UserError
from diffrep.options import blocks

DENSE_NAMES = "fmnist-scenes, celebamask-hq:PATH, wflw:PATH"
DENSE_DEFAULTS = blocks.DENSE


@dataclass
class DenseSet:
    images: torch.Tensor             # uint8 (N, C, H, W)
    masks: torch.Tensor | None       # uint8 (N, H, W) class ids into `classes` (0 = background), or None
    keypoints: torch.Tensor | None   # float32 (N, K, 2) pixel (x, y); the image spans [0, W] x [0, H]; or None
    classes: list[str]               # mask class names ([] without masks)
    keypoint_names: list[str]        # ([] without keypoints)
    class_flip: list[int] | None = None     # class id of each class's mirror image (l_eye <-> r_eye); None: itself
    keypoint_flip: list[int] | None = None  # index of each keypoint's mirror partner; None: itself
    labels: torch.Tensor | None = None      # int64 (N,) an image-level class (fmnist-scenes: the main item's)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "DenseSet":
        pick = (lambda t: None if t is None else t[index])
        return DenseSet(self.images[index], pick(self.masks), pick(self.keypoints), self.classes, self.keypoint_names,
                        self.class_flip, self.keypoint_flip, pick(self.labels))

    def floats(self, index=slice(None)) -> torch.Tensor:
        """Images in [-1, 1] as float32."""
        return to_float(self.images[index])

    def flipped(self) -> "DenseSet":
        """The set mirrored left-right: masks with mirrored classes, keypoints mirrored and swapped with partners."""
        images, masks, keypoints = hflip_dense(self.images, self.masks, self.keypoints, self.class_flip,
                                               self.keypoint_flip)
        return DenseSet(images, masks, keypoints, self.classes, self.keypoint_names, self.class_flip,
                        self.keypoint_flip, self.labels)


def hflip_dense(images, masks=None, keypoints=None, class_flip=None, keypoint_flip=None):
    """Mirror a batch left-right; the returned masks and keypoints describe the mirrored images."""
    images = images.flip(-1)
    if masks is not None:
        masks = masks.flip(-1)
        if class_flip is not None:
            masks = torch.tensor(class_flip, dtype=masks.dtype)[masks.long()]
    if keypoints is not None:
        keypoints = keypoints.clone()
        keypoints[..., 0] = images.shape[-1] - keypoints[..., 0]
        if keypoint_flip is not None:
            keypoints = keypoints[..., keypoint_flip, :]
    return images, masks, keypoints


def random_subset(n: int, amount: float | int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset: a fraction in (0, 1] (at least one) or a count up to n."""
    if amount is None or (isinstance(amount, float) and amount == 1.0) or amount == n:
        return torch.arange(n)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0 \
            or (isinstance(amount, float) and amount > 1.0) or amount > n:
        raise UserError(f"subset size {amount!r} is out of range for {n} samples "
                        f"(a fraction in (0, 1] or a count up to {n})")
    count = max(1, round(amount * n)) if isinstance(amount, float) else amount
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def _scene_count(amount, split: str) -> int:
    default = scenes.SIZES[split] if split in scenes.SIZES else 1
    if amount is None:
        return default
    if isinstance(amount, float) and 0 < amount <= 1:
        return max(1, round(amount * default))
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise UserError(f"data.{split}_size for fmnist-scenes must be a count or a fraction in (0, 1], got {amount!r}")
    return amount


def load_dense(cfg: dict, split: str, size_key: str | None = None) -> DenseSet:
    """The split named by `cfg` (see DENSE_DEFAULTS) at its resolution and channels, subset if asked."""
    cfg = {**DENSE_DEFAULTS, **cfg}
    res, ch, seed = cfg["resolution"], cfg["channels"], cfg["seed"]
    if isinstance(res, bool) or not isinstance(res, int) or res < 1:
        raise UserError(f"data.resolution must be a positive integer, got {res!r}")
    if ch not in (1, 3):
        raise UserError(f"data.channels must be 1 or 3, got {ch}")
    size = cfg.get(size_key or f"{split}_size")
    kind, _, path = cfg["name"].partition(":")
    folder = path or cfg["root"]
    if kind in ("celebamask-hq", "wflw") and not folder:
        raise UserError(f"dataset '{kind}' needs a folder: --data {kind}:PATH")
    if kind == "fmnist-scenes":
        images, masks, keypoints, labels = scenes.make_scenes(split, _scene_count(size, split), res, cfg["max_items"],
                                                              cfg["scene_seed"], folder)
        data = DenseSet(images, masks, keypoints, scenes.CLASSES, scenes.KEYPOINT_NAMES,
                        keypoint_flip=scenes.KEYPOINT_FLIP, labels=labels)
    elif kind == "celebamask-hq":
        indices = celebamask.split_indices(Path(folder), split)
        indices = [indices[k] for k in random_subset(len(indices), size, seed).tolist()]
        images, masks = celebamask.read(Path(folder), indices, res)
        data = DenseSet(images, masks, None, celebamask.CLASSES, [], class_flip=celebamask.CLASS_FLIP)
    elif kind == "wflw":
        faces = wflw.split_faces(Path(folder), split)
        faces = [faces[k] for k in random_subset(len(faces), size, seed).tolist()]
        images, keypoints = wflw.read(Path(folder), faces, res)
        data = DenseSet(images, None, keypoints, [], wflw.KEYPOINT_NAMES, keypoint_flip=wflw.KEYPOINT_FLIP)
    else:
        raise UserError(f"unknown dense dataset '{cfg['name']}'; valid names: {DENSE_NAMES}")
    data.images = fit_image(data.images, res, ch, "resize")
    return data


def scene_images(cfg: dict, split: str) -> ImageSet:
    """fmnist-scenes as an ImageSet, each scene labelled with its main item's class: what distillation and the
    classification probes read, so that a student distils on the very scenes the dense tasks use. The scene
    options (max_items, scene_seed) are DENSE_DEFAULTS' unless `cfg` has them."""
    scene_cfg = {**DENSE_DEFAULTS, **{k: v for k, v in cfg.items() if k in DENSE_DEFAULTS}}
    data = load_dense(scene_cfg, split)
    return ImageSet(data.images, data.labels, list(sources.FASHION_MNIST_CLASSES))


def labelled_dense(data: DenseSet, fraction: float, seed: int) -> DenseSet:
    """The part of `data` whose masks / landmarks are kept under a label fraction in (0, 1] (seeded, at least one)."""
    return data.subset(random_subset(len(data), label_fraction(fraction), seed))


def held_out_dense(data: DenseSet, fraction: float, seed: int, amount: float | int) -> DenseSet:
    """Validation images: `amount` (a count, or a fraction of `data`) of those `labelled_dense` leaves out, seeded."""
    rest, count = unlabelled_rest(len(data), random_subset(len(data), label_fraction(fraction), seed), amount)
    return data.subset(rest[random_subset(len(rest), count, seed + 1)])
