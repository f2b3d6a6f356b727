"""`celebamask-hq:PATH`: CelebAMask-HQ face parsing, 30,000 faces with 18 part masks merged into 19 classes.

Layout, as distributed: PATH/CelebA-HQ-img/{i}.jpg (1024 px),
PATH/CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png (512 px, the part where non-zero) and
PATH/CelebA-HQ-to-CelebA-mapping.txt. The parts are merged in the order of PARTS, later parts overwriting earlier
ones, as the dataset's own g_mask.py does: class k is PARTS[k - 1], 0 is background. A missing part file means the
part is absent; a face without any part file is an error.

Splits: with the mapping file, the standard one: every face follows its CelebA original's partition (CelebA files
1-162770 train, 162771-182637 val, the rest test; about 24k / 3k / 3k faces). Without it, a fixed (seed 0) random
80 / 10 / 10 train / val / test split of the faces found in CelebA-HQ-img.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from diffrep.data.photos import read_gray, read_rgb
from diffrep.errors import UserError

PARTS = ["skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip",
         "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]
CLASSES = ["background"] + PARTS
_MIRROR = {"l_eye": "r_eye", "l_brow": "r_brow", "l_ear": "r_ear"}
_MIRROR.update({v: k for k, v in _MIRROR.items()})
CLASS_FLIP = [CLASSES.index(_MIRROR.get(name, name)) for name in CLASSES]  # each class's mirror image
IMAGES, MASKS, MAPPING = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno", "CelebA-HQ-to-CelebA-mapping.txt"
CELEBA_TRAIN_END, CELEBA_VAL_END = 162770, 182637  # last 1-based CelebA file number of train and of val
SPLITS = ("train", "val", "test")


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"missing CelebAMask-HQ {what} folder: {path}")
    return path


def _celeba_partition(number: int) -> str:
    return "train" if number <= CELEBA_TRAIN_END else "val" if number <= CELEBA_VAL_END else "test"


def split_indices(root: Path, split: str) -> list[int]:
    """The face numbers i of `split`, sorted."""
    if split not in SPLITS:
        raise UserError(f"CelebAMask-HQ splits are {', '.join(SPLITS)}, not '{split}'")
    _folder(root, "dataset")
    images = _folder(root / IMAGES, "image")
    _folder(root / MASKS, "mask")
    mapping = root / MAPPING
    if mapping.is_file():
        chosen = []
        for line_no, line in enumerate(mapping.read_text().splitlines()[1:], start=2):
            if not line.strip():
                continue
            try:
                idx, _, orig_file = line.split()
                if _celeba_partition(int(Path(orig_file).stem)) == split:
                    chosen.append(int(idx))
            except ValueError:
                raise UserError(f"{mapping}:{line_no}: expected 'idx orig_idx orig_file', got {line.strip()!r}") \
                    from None
        return sorted(chosen)
    found = sorted(int(p.stem) for p in images.glob("*.jpg") if p.stem.isdigit())
    if not found:
        raise UserError(f"no CelebA-HQ images ({{i}}.jpg) in {images}")
    order = torch.randperm(len(found), generator=torch.Generator().manual_seed(0)).tolist()
    n_test = n_val = round(0.1 * len(found))
    part = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}[split]
    return sorted(found[k] for k in part)


def label_map(root: Path, i: int) -> torch.Tensor:
    """The merged uint8 (H, W) label map of face i at the masks' own resolution."""
    folder = _folder(root / MASKS / str(i // 2000), "mask")
    label = None
    for k, part in enumerate(PARTS, start=1):
        path = folder / f"{i:05d}_{part}.png"
        if path.is_file():
            on = read_gray(path) != 0
            if label is None:
                label = torch.zeros(on.shape, dtype=torch.uint8)
            elif on.shape != label.shape:
                raise UserError(f"{path}: mask is {tuple(on.shape)}, other parts of face {i} are {tuple(label.shape)}")
            label[on] = k
    if label is None:
        raise UserError(f"no part masks for CelebAMask-HQ face {i}: expected {folder}/{i:05d}_<part>.png")
    return label


def _read_one(root: Path, i: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    image, _ = read_rgb(root / IMAGES / f"{i}.jpg", lambda w, h: resolution / min(w, h))
    image = TF.resize(image, [resolution, resolution], antialias=True)
    label = TF.resize(label_map(root, i)[None], [resolution, resolution], interpolation=InterpolationMode.NEAREST_EXACT)
    return image, label[0]


def read(root: Path, indices: list[int], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces `indices` as images uint8 (N, 3, R, R) and label maps uint8 (N, R, R), masks resized nearest."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(lambda i: _read_one(root, i, resolution), indices))
    if not pairs:
        raise UserError(f"CelebAMask-HQ at {root}: the split has no faces")
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
