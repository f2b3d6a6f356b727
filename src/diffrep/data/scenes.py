"""`fmnist-scenes`: Fashion-MNIST items placed on a canvas, with a semantic mask and 5 landmarks per scene.

An offline stand-in for the paper's dense tasks (face parsing, face landmarks), small enough for the shipped
1-channel 32 px teacher. A scene is a black `canvas` x `canvas` image (default 32, the teacher's resolution; any
side >= 16 works, e.g. 64, because item sizes are fractions of the canvas):

- Items: 1 to `max_items` of them (uniform), drawn with replacement from the Fashion-MNIST *train* split for train
  scenes and from the *test* split for test scenes. Item 0 is the main item: its 28 px frame (whose longer side
  every Fashion-MNIST item fills) is resized to 0.5-0.85 of the canvas, the other items' to 0.3-0.45, so the main
  item is always the biggest. Resizing is bilinear with antialiasing; positions are uniform inside the canvas.
- No overlap: every further item tries 16 random positions and takes the first where its mask shares no pixel with
  the masks already placed; if none does, the scene keeps fewer items. Images compose by pixel-wise maximum.
- Mask: class index + 1 where an item's resized intensity is > THRESHOLD (32 of 255), 0 = background. As masks do
  not overlap, mask > 0 exactly where the image is > THRESHOLD, and holes in an item (dark prints, gaps between
  sandal straps) are background, as they look.
- Landmarks (K = 5, all on the main item, from its own mask): top, bottom, left, right, centroid. Top is at the
  median x of the mask pixels in the mask's top row (the mean of the two middle ones for an even count), bottom the
  same on the bottom row; left and right at the median y of the leftmost and rightmost columns. Coordinates are
  (x, y) with the image spanning [0, W] x [0, H], so pixel (row i, column j) has its centre at (j + 0.5, i + 0.5);
  the centroid is the mean of the mask's pixel centres. The medians make a horizontal flip map the landmarks of a
  scene exactly onto those of the flipped scene, with left and right swapped (KEYPOINT_FLIP). Top and bottom lie on
  the item when their row is one run of pixels (the usual case); where it is not (two shoulders, sandal straps) they,
  like the centroid, may fall between the runs.
- Determinism: scene i depends only on (seed, split, i). Each random quantity comes from its own numpy generator
  seeded by (seed, split, quantity) and is drawn scene by scene, so the first n scenes of a longer set are exactly
  the scenes of a set of n. Nothing is cached; the default 12,000 scenes take a few seconds.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from diffrep.data import sources
from diffrep.errors import UserError

CLASSES = ["background"] + sources.FASHION_MNIST_CLASSES
KEYPOINT_NAMES = ["top", "bottom", "left", "right", "centroid"]
KEYPOINT_FLIP = [0, 1, 3, 2, 4]
SIZES = {"train": 10000, "test": 2000}  # default scene counts
THRESHOLD = 32
MAIN_SCALE = (0.5, 0.85)   # side of the main item's 28 px frame, as a fraction of the canvas
OTHER_SCALE = (0.3, 0.45)  # the same for the other items
TRIES = 16                 # random positions an extra item tries before it is left out
MIN_CANVAS = 16
_SPLITS = {"train": 0, "test": 1}


def _uniform(seed: int, split: str, quantity: int, shape: tuple) -> np.ndarray:
    """Uniform [0, 1) numbers for one random quantity, filled scene by scene (shape[0] is the scene)."""
    return np.random.default_rng([seed, _SPLITS[split], quantity]).random(shape)


def _sides(u: np.ndarray, scale: tuple[float, float], canvas: int) -> np.ndarray:
    return np.clip(np.rint(canvas * (scale[0] + u * (scale[1] - scale[0]))), 4, canvas).astype(np.int64)


def _landmarks(mask: np.ndarray, x0: int, y0: int) -> list[tuple[float, float]]:
    """Top, bottom, left, right (median of the extreme row / column) and centroid, in pixel-centre coordinates."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))

    def in_row(r):
        return x0 + np.median(np.flatnonzero(mask[r])) + 0.5, y0 + r + 0.5

    def in_col(c):
        return x0 + c + 0.5, y0 + np.median(np.flatnonzero(mask[:, c])) + 0.5

    ys, xs = np.nonzero(mask)
    return [in_row(rows[0]), in_row(rows[-1]), in_col(cols[0]), in_col(cols[-1]),
            (x0 + xs.mean() + 0.5, y0 + ys.mean() + 0.5)]


def make_scenes(split: str, n: int, canvas: int = 32, max_items: int = 2, seed: int = 0, root: str | None = None):
    """Scenes 0..n-1 of `split`: images uint8 (n,1,canvas,canvas), masks uint8 (n,canvas,canvas),
    keypoints float32 (n,5,2) and the main item's class int64 (n,)."""
    if split not in _SPLITS:
        raise UserError(f"fmnist-scenes has a train and a test split, not '{split}'")
    if not isinstance(canvas, int) or canvas < MIN_CANVAS:
        raise UserError(f"fmnist-scenes needs a canvas (data.resolution) of at least {MIN_CANVAS} px, got {canvas}")
    if not isinstance(max_items, int) or max_items < 1:
        raise UserError(f"data.max_items must be a positive integer, got {max_items!r}")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"fmnist-scenes: the number of scenes must be a positive integer, got {n!r}")
    items, item_labels, _ = sources.fashion_mnist(split, root)
    items, item_labels = items[:, :1], item_labels.numpy()

    pick = (_uniform(seed, split, 0, (n, max_items)) * len(items)).astype(np.int64)
    count = 1 + (_uniform(seed, split, 1, (n,)) * max_items).astype(np.int64)
    size_u = _uniform(seed, split, 2, (n, max_items))
    sides = np.concatenate([_sides(size_u[:, :1], MAIN_SCALE, canvas), _sides(size_u[:, 1:], OTHER_SCALE, canvas)], 1)
    main_at = _uniform(seed, split, 3, (n, 2))
    other_at = _uniform(seed, split, 4, (n, max_items - 1, TRIES, 2))

    # resize every used item once, batched by side
    used = np.arange(max_items)[None, :] < count[:, None]
    drawn = {}
    for side in np.unique(sides[used]):
        where = np.argwhere(used & (sides == side))
        resized = TF.resize(items[torch.from_numpy(pick[where[:, 0], where[:, 1]])], [int(side)] * 2, antialias=True)
        for (i, j), item in zip(where.tolist(), resized[:, 0].numpy()):
            drawn[i, j] = item

    images = np.zeros((n, canvas, canvas), np.uint8)
    masks = np.zeros((n, canvas, canvas), np.uint8)
    keypoints = np.zeros((n, len(KEYPOINT_NAMES), 2), np.float32)
    labels = torch.from_numpy(item_labels[pick[:, 0]])
    for i in range(n):
        image, mask = images[i], masks[i]
        for j in range(count[i]):
            item, side = drawn[i, j], sides[i, j]
            on = item > THRESHOLD
            tries = main_at[i, None] if j == 0 else other_at[i, j - 1]
            for ux, uy in tries:
                x0, y0 = int(ux * (canvas - side + 1)), int(uy * (canvas - side + 1))
                box = (slice(y0, y0 + side), slice(x0, x0 + side))
                if j == 0 or not (mask[box].astype(bool) & on).any():
                    break
            else:
                continue  # no free position: the scene keeps fewer items
            if j == 0:
                if not on.any():
                    raise UserError(f"fmnist-scenes: item {pick[i, 0]} of the {split} split has no pixel above "
                                    f"{THRESHOLD} at {side} px")
                keypoints[i] = _landmarks(on, x0, y0)
            np.maximum(image[box], item, out=image[box])
            mask[box][on] = item_labels[pick[i, j]] + 1
    return torch.from_numpy(images)[:, None], torch.from_numpy(masks), torch.from_numpy(keypoints), labels
