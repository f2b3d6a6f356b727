"""Readers for the named datasets. Each returns (images uint8 (N,C,H,W) or a list of them, labels, classes).

`fashion-mnist`, `digits`, `imagefolder:PATH` and `cifar10:PATH`; everything is read from local disk.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from diffrep.errors import UserError

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NAMES = "fashion-mnist, digits, imagefolder:PATH, cifar10:PATH, fmnist-scenes"


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped), as in the MNIST family."""
    if not path.is_file() and path.with_suffix(path.suffix + ".gz").is_file():
        path = path.with_suffix(path.suffix + ".gz")
    if not path.is_file():
        raise UserError(f"missing data file: {path} (install the Debian package dataset-fashion-mnist "
                        f"or pass --data.root)")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, IndexError, EOFError) as err:
        raise UserError(f"corrupt IDX file: {path} ({err})") from None


def fashion_mnist(split: str, root: str | None):
    root = Path(root) if root else FASHION_MNIST_ROOT
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST folder not found: {root} (install the Debian package "
                        f"dataset-fashion-mnist or pass --data.root)")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte")
    if len(images) != len(labels):
        raise UserError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64)), \
        FASHION_MNIST_CLASSES


def digits(split: str, root: str | None):
    """scikit-learn's bundled 8x8 digits, split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    train_idx, test_idx = train_test_split(np.arange(len(images)), test_size=0.2, random_state=0,
                                           stratify=bunch.target)
    idx = train_idx if split == "train" else test_idx
    return torch.from_numpy(images[idx])[:, None], torch.from_numpy(bunch.target[idx].astype(np.int64)), \
        [str(d) for d in range(10)]


def _read_image(path: Path) -> torch.Tensor:
    """uint8 (C, H, W); raises _BadImage with the reason when the file cannot be decoded whole."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB")
            array = np.array(img)  # a copy: torch warns about (and must not share) PIL's read-only buffer
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise _BadImage(str(err)) from None
    return torch.from_numpy(array[:, :, None] if array.ndim == 2 else array).permute(2, 0, 1)


class _BadImage(Exception):
    pass


def bad_files_message(bad: list[tuple[Path, str]]) -> str:
    """Every unreadable image named (up to 10, then a count), in one line."""
    shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:10])
    more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
    return f"{len(bad)} image(s) cannot be read: {shown}{more}"


def image_folder(split: str, root: str):
    """PATH/<class>/*.png|jpg, or PATH/train/<class>/... and PATH/test/<class>/...

    Without train/ and test/ sub-folders, a seeded, stratified 20% of each class is the test split. Every image
    of the split is decoded here, so a corrupt file stops the command before any work, with every bad file named.
    """
    base = Path(root)
    if not base.is_dir():
        raise UserError(f"image folder not found: {base}")
    has_splits = (base / "train").is_dir() and (base / "test").is_dir()
    folder = base / split if has_splits else base
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"no class sub-folders in {folder} (expected {folder}/<class>/<image>.png)")
    files_of = {name: sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                for name in classes}
    empty = [name for name, files in files_of.items() if not files]
    if empty:
        raise UserError(f"class folder(s) without PNG or JPEG images in {folder}: {', '.join(empty)}; "
                        f"remove them or add images")
    images, labels, bad = [], [], []
    for label, name in enumerate(classes):
        files = files_of[name]
        if has_splits:
            keep = files
        else:  # deterministic 80/20 split per class
            order = torch.randperm(len(files), generator=torch.Generator().manual_seed(label))
            n_test = round(0.2 * len(files))
            chosen = order[:n_test] if split == "test" else order[n_test:]
            keep = [files[i] for i in sorted(chosen.tolist())]
        for path in keep:
            try:
                images.append(_read_image(path))
                labels.append(label)
            except _BadImage as err:
                bad.append((path, str(err)))
    if bad:
        raise UserError(bad_files_message(bad))
    if not images:
        raise UserError(f"no PNG or JPEG images under {folder} for the {split} split")
    return images, torch.tensor(labels, dtype=torch.int64), classes


def cifar10(split: str, root: str):
    """The python-pickle batches (data_batch_1..5, test_batch) in PATH or PATH/cifar-10-batches-py."""
    base = Path(root)
    if (base / "cifar-10-batches-py").is_dir():
        base = base / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data, labels = [], []
    for name in names:
        path = base / name
        if not path.is_file():
            raise UserError(f"missing CIFAR-10 batch file: {path}")
        try:
            with path.open("rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch[b"labels"])
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
            raise UserError(f"corrupt CIFAR-10 batch file: {path} ({err!r})") from None
    labels = torch.tensor(labels, dtype=torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{base}: CIFAR-10 labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return torch.from_numpy(np.concatenate(data)), labels, CIFAR10_CLASSES


def read(name: str, split: str, root: str | None = None):
    """Dispatch a dataset name to its reader."""
    if split not in ("train", "test"):
        raise UserError(f"unknown split '{split}' (train or test)")
    kind, _, path = name.partition(":")
    if kind == "fashion-mnist":
        return fashion_mnist(split, path or root)
    if kind == "digits":
        return digits(split, root)
    if kind in ("imagefolder", "cifar10"):
        if not (path or root):
            raise UserError(f"dataset '{kind}' needs a folder: --data {kind}:PATH")
        return (image_folder if kind == "imagefolder" else cifar10)(split, path or root)
    raise UserError(f"unknown dataset '{name}'; valid names: {NAMES}")
