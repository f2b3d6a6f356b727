"""Joint augmentation of images, masks and keypoints for the dense tasks, seeded per training step.

    images, masks, keypoints = joint_augment(images, masks, keypoints, generator, AUGMENT_DEFAULTS,
                                             class_flip, keypoint_flip)

Per image: a horizontal flip with probability 1/2 (data.hflip), then a random affine map (rotation, scale,
translation) through torchvision.transforms.v2 on tv_tensors, so the image (bilinear), the mask (nearest) and the
keypoints move together; pixels from outside the canvas are 0 (black image, background mask). Keypoints keep
diffrep's continuous convention (pixel (i, j) has its centre at (j + 0.5, i + 0.5)), which is the one torchvision's
affine uses; its keypoint *flip* maps x to W - 1 - x (integer pixel centres), so the flip is data.hflip_dense,
which maps x to W - x and swaps mirrored classes (class_flip) and keypoints (keypoint_flip: left <-> right).
Keypoints may leave the canvas; they are not clamped. All randomness comes from the generator, so a batch
depends only on (seed, step) and resumed runs see the same batches.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from diffrep.data import DenseSet, hflip_dense, to_float
from diffrep.errors import UserError
from diffrep.options import blocks
from diffrep.train import step_generator
from diffrep.train.steps import StepBatches

AUGMENT_DEFAULTS = blocks.AUGMENT


def check_augment(augment: dict) -> dict:
    for key, top in (("degrees", 180.0), ("scale", 0.9), ("translate", 1.0)):
        value = augment[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
            raise UserError(f"augment.{key} must be a number in [0, {top:g}], got {value!r}")
    return augment


def joint_augment(images: torch.Tensor, masks: torch.Tensor | None, keypoints: torch.Tensor | None,
                  generator: torch.Generator, augment: dict, hflip: bool = True, class_flip: list[int] | None = None,
                  keypoint_flip: list[int] | None = None):
    """Augmented copies of a batch: images uint8 (B, C, H, W), masks (B, H, W) or None, keypoints (B, K, 2) or None."""
    n, (height, width) = len(images), images.shape[-2:]
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # angle, scale, tx, ty in [-1, 1)
    if flip.any():
        flipped = hflip_dense(images[flip], _rows(masks, flip), _rows(keypoints, flip), class_flip, keypoint_flip)
        images, masks, keypoints = (_replace(t, flip, f) for t, f in zip((images, masks, keypoints), flipped))
    if not (augment["degrees"] or augment["scale"] or augment["translate"]):
        return images, masks, keypoints
    out_images, out_masks, out_points = [], [], []
    for k in range(n):
        angle, scale = float(u[k, 0]) * augment["degrees"], 1.0 + float(u[k, 1]) * augment["scale"]
        shift = [float(u[k, 2]) * augment["translate"] * width, float(u[k, 3]) * augment["translate"] * height]
        args = dict(angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0])
        out_images.append(TF.affine(tv_tensors.Image(images[k]), **args, interpolation=InterpolationMode.BILINEAR))
        if masks is not None:
            out_masks.append(TF.affine(tv_tensors.Mask(masks[k]), **args))
        if keypoints is not None:
            points = tv_tensors.KeyPoints(keypoints[k], canvas_size=(height, width))
            out_points.append(TF.affine(points, **args))
    stack = (lambda parts: torch.stack([p.as_subclass(torch.Tensor) for p in parts]) if parts else None)
    return stack(out_images), stack(out_masks), stack(out_points)


def _rows(t: torch.Tensor | None, where: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[where]


def _replace(t: torch.Tensor | None, where: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.clone()
    t[where] = values
    return t


class DenseBatches(StepBatches):
    """StepBatches of a DenseSet: (images in [-1, 1], masks int64) or (images, keypoints float32), augmented."""

    def __init__(self, data: DenseSet, target: str, batch_size: int, start: Callable[[], int], seed: int,
                 hflip: bool, augment: dict):
        super().__init__(data, batch_size, start, seed, hflip)
        self.target, self.augment = target, augment

    def batch(self, step: int):
        idx = self.indices(step)
        d = self.data
        masks = d.masks[idx] if self.target == "masks" else None
        keypoints = d.keypoints[idx] if self.target == "keypoints" else None
        images, masks, keypoints = joint_augment(d.images[idx], masks, keypoints, step_generator(self.seed, step, 1),
                                                 self.augment, self.hflip, d.class_flip, d.keypoint_flip)
        return to_float(images), masks.long() if masks is not None else keypoints.float()


def dense_loader(data: DenseSet, target: str, batch_size: int, start: Callable[[], int], seed: int, hflip: bool,
                 augment: dict) -> DataLoader:
    """An endless loader of augmented batches starting at step start(); target is 'masks' or 'keypoints'."""
    return DataLoader(DenseBatches(data, target, batch_size, start, seed, hflip, augment), batch_size=None,
                      num_workers=0)
