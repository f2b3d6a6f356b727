"""Prediction overlays for the dense tasks: a PNG grid of (image, ground truth, prediction) triplets.

Images are upscaled (nearest) by `scale` so that small scenes stay readable; masks are blended over the image in a
fixed palette (background, class 0, is left undrawn), keypoints are dots, one colour per keypoint index (the same
colours in the ground-truth and the predicted panel). Drawing is torchvision.utils' draw_segmentation_masks and
draw_keypoints; the grid is make_grid, TRIPLETS_PER_ROW triplets per row, saved by save_image.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import draw_keypoints, draw_segmentation_masks, make_grid, save_image

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128)]  # Sasha Trubetskoy's 20 distinct colours
TRIPLETS_PER_ROW = 4


def _rgb(images: torch.Tensor, scale: int) -> torch.Tensor:
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    return F.interpolate(images.float(), scale_factor=scale, mode="nearest").round().to(torch.uint8)


def _masks(image: torch.Tensor, mask: torch.Tensor, scale: int) -> torch.Tensor:
    mask = mask.repeat_interleave(scale, 0).repeat_interleave(scale, 1).long()
    classes = [c for c in mask.unique().tolist() if c != 0]
    if not classes:
        return image
    return draw_segmentation_masks(image, torch.stack([mask == c for c in classes]), alpha=0.55,
                                   colors=[PALETTE[(c - 1) % len(PALETTE)] for c in classes])


def _points(image: torch.Tensor, points: torch.Tensor, scale: int) -> torch.Tensor:
    radius = max(1, scale // 2)
    for k, (x, y) in enumerate((points * scale - 0.5).tolist()):  # continuous coordinates -> PIL pixel indices
        image = draw_keypoints(image, torch.tensor([[[x, y]]]), colors=PALETTE[k % len(PALETTE)], radius=radius,
                               width=0)
    return image


def overlay_grid(path: str | Path, images: torch.Tensor, truth_masks: torch.Tensor | None = None,
                 pred_masks: torch.Tensor | None = None, truth_points: torch.Tensor | None = None,
                 pred_points: torch.Tensor | None = None, scale: int | None = None) -> Path:
    """Write the grid to `path` for uint8 images (N, C, H, W), masks (N, H, W) and/or keypoints (N, K, 2)."""
    scale = scale or max(1, 128 // images.shape[-1])
    panels = []
    for i, image in enumerate(_rgb(images, scale)):
        truth, pred = image, image
        if truth_masks is not None:
            truth, pred = _masks(truth, truth_masks[i], scale), _masks(pred, pred_masks[i], scale)
        if truth_points is not None:
            truth, pred = _points(truth, truth_points[i], scale), _points(pred, pred_points[i], scale)
        panels += [image, truth, pred]
    grid = make_grid(torch.stack(panels), nrow=3 * TRIPLETS_PER_ROW, padding=2, pad_value=255)
    path = Path(path)
    save_image(grid.float() / 255, path)
    return path
