"""ImageSet: a labelled image split held as uint8 at the model's resolution, with seeded subsets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from diffrep.data import sources
from diffrep.errors import UserError
from diffrep.options import blocks, rules

DATA_DEFAULTS = blocks.DATA


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def floats(self, index=slice(None)) -> torch.Tensor:
        """Images in [-1, 1] as float32."""
        return to_float(self.images[index])


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(127.5).sub_(1.0)


def fit_image(image: torch.Tensor, resolution: int, channels: int, fit: str) -> torch.Tensor:
    """Convert channels, then pad or resize one uint8 (C,H,W) image (or a batch) to resolution."""
    c = image.shape[-3]
    if c != channels:
        if c == 1 and channels == 3:
            image = image.expand(*image.shape[:-3], 3, *image.shape[-2:])
        elif c == 3 and channels == 1:
            image = TF.rgb_to_grayscale(image)
        else:
            raise UserError(f"cannot convert {c}-channel images to {channels} channels")
    h, w = image.shape[-2:]
    if (h, w) == (resolution, resolution):
        return image.contiguous()
    if fit not in ("pad", "resize", "auto"):
        raise UserError(f"unknown data.fit '{fit}' (pad, resize or auto)")
    pad = fit == "pad" or (fit == "auto" and max(h, w) <= resolution and 4 * min(h, w) >= 3 * resolution)
    if pad:
        if max(h, w) > resolution:
            raise UserError(f"cannot pad {h}x{w} images to {resolution}x{resolution}; use --data.fit resize")
        left, top = (resolution - w) // 2, (resolution - h) // 2
        return TF.pad(image, [left, top, resolution - w - left, resolution - h - top], fill=0).contiguous()
    return TF.resize(image, [resolution, resolution], antialias=True).contiguous()


def stratified_subset(labels: torch.Tensor, amount: float | int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded, per-class subset of the size asked: a fraction in (0, 1] (of the whole,
    rounded) or a total count.

    Each class gets its share of the size, the remainder going to the classes with the largest fractional parts
    (ties to the larger class), and keeps at least one sample, so `labels: 0.001` still sees all classes: a
    fraction smaller than that is raised to one sample per class. A count is always exact; one below the number of
    classes takes one sample from each of that many seeded-random classes.
    """
    n = len(labels)
    if amount is None or (isinstance(amount, float) and amount == 1.0) or amount == n:
        return torch.arange(n)
    if amount <= 0 or (isinstance(amount, float) and amount > 1.0) or amount > n:
        raise UserError(f"subset size {amount} is out of range for {n} samples "
                        f"(a fraction in (0, 1] or a count up to {n})")
    classes, counts = labels.unique(return_counts=True)
    total = max(len(classes), round(amount * n)) if isinstance(amount, float) else int(amount)
    gen = torch.Generator().manual_seed(seed)
    if total < len(classes):
        classes = classes[torch.randperm(len(classes), generator=gen)[:total].sort().values]
        counts = torch.ones_like(classes)
    shares = counts.double() * total / n
    quota = shares.floor().long().clamp(min=1)
    order = sorted(range(len(classes)), key=lambda c: (-(shares[c] - shares[c].floor()).item(), -counts[c].item(), c))
    for c in order:  # hand out what flooring (and the one-per-class minimum) left over
        if quota.sum() >= total:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
    for c in reversed(order):  # the one-per-class minimum may have overshot: take back from the largest quotas
        if quota.sum() <= total:
            break
        if quota[c] > 1:
            quota[c] -= 1
    keep = []
    for cls, k in zip(classes, quota.tolist()):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        keep.append(members[:k])
    return torch.cat(keep).sort().values


def check_classes(data: ImageSet, split: str) -> ImageSet:
    """Labels are needed: the split must hold at least two classes (one class is nothing to tell apart)."""
    present = [data.classes[i] for i in data.labels.unique().tolist()]
    if len(present) < 2:
        found = ", ".join(present) or "none"
        raise UserError(f"the {split} split holds {len(present)} class ({found}); labelled stages need at least 2")
    return data


def load(cfg: dict, split: str, size_key: str | None = None) -> ImageSet:
    """The split named by `cfg` (see DATA_DEFAULTS), fitted to resolution and channels, subset if asked."""
    if cfg["name"] == "fmnist-scenes":
        from diffrep.data.dense import scene_images  # dense.py builds on this module
        return scene_images(cfg, split)
    images, labels, classes = sources.read(cfg["name"], split, cfg.get("root"))
    res, ch, fit = cfg["resolution"], cfg["channels"], cfg.get("fit", "auto")
    if ch not in (1, 3):
        raise UserError(f"data.channels must be 1 or 3, got {ch}")
    if isinstance(images, list):
        images = torch.stack([fit_image(img, res, ch, fit) for img in images])
    else:
        images = fit_image(images, res, ch, fit)
    if len(labels) == 0:
        raise UserError(f"dataset '{cfg['name']}' has no images in its {split} split")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise UserError(f"dataset '{cfg['name']}': labels must lie in 0..{len(classes) - 1}")
    data = ImageSet(images, labels, classes)
    size = cfg.get(size_key or f"{split}_size")
    if size is not None:
        data = data.subset(stratified_subset(data.labels, size, cfg.get("seed", 0)))
    return data


def label_fraction(fraction) -> float:
    """data.labels, checked: a fraction in (0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise UserError(f"data.labels must be a fraction in (0, 1], got {fraction!r}")
    return float(fraction)


def labelled(data: ImageSet, fraction: float, seed: int) -> ImageSet:
    """The part of `data` whose labels are kept under a label fraction in (0, 1] (stratified, seeded)."""
    return data.subset(stratified_subset(data.labels, label_fraction(fraction), seed))


def outside(total: int, index: torch.Tensor) -> torch.Tensor:
    """The sorted indices in range(total) that `index` does not hold."""
    taken = torch.zeros(total, dtype=torch.bool)
    taken[index] = True
    return (~taken).nonzero().flatten()


def unlabelled_rest(total: int, labelled_index: torch.Tensor, amount) -> tuple[torch.Tensor, int]:
    """(the indices of the `total` train images outside `labelled_index`, how many validation images `data.val`
    asks for among them: a count, or a fraction of all `total`), checked."""
    if not rules.valid("size", amount):
        raise UserError(f"data.val must be a count or a fraction in (0, 1] of the train split, got {amount!r}")
    rest = outside(total, labelled_index)
    count = max(1, round(amount * total)) if isinstance(amount, float) else amount
    if count > len(rest):
        raise UserError(f"data.val asks for {count} held-out images, but only {len(rest)} train images are not "
                        f"labelled (lower data.val or data.labels)")
    return rest, count


def held_out(data: ImageSet, fraction: float, seed: int, amount: float | int) -> ImageSet:
    """Validation images: `amount` (a count, or a fraction of `data`) of the images that `labelled(data, fraction,
    seed)` leaves out, stratified and seeded, so that picking a setting on them never looks at the test split."""
    rest, count = unlabelled_rest(len(data), stratified_subset(data.labels, label_fraction(fraction), seed), amount)
    return data.subset(rest[stratified_subset(data.labels[rest], count, seed + 1)])


def hflip_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip a random half of a batch horizontally, reproducibly from `generator`."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    if flip.any():
        images = images.clone()
        images[flip] = TF.horizontal_flip(images[flip])
    return images
