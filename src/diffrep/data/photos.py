"""Reading photos and part-mask PNGs with PIL as uint8 tensors; a missing or broken file is a one-line UserError."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from diffrep.errors import UserError


MinScale = Callable[[int, int], float]


def _array(path: Path, mode: str, min_scale: MinScale | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    if not path.is_file():
        raise UserError(f"missing image file: {path}")
    try:
        with Image.open(path) as img:
            size = img.size
            if min_scale is not None and img.format == "JPEG":
                scale = min_scale(*size)
                img.draft(mode, (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))  # 1/2, 1/4 or 1/8 scale
            return np.asarray(img.convert(mode)), size
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None


def read_rgb(path: Path, min_scale: MinScale | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (3, h, w) and the file's full (width, height). With `min_scale(width, height)` a JPEG is decoded at the
    smallest DCT scale (1, 1/2, 1/4 or 1/8) not below it: large photos that end up small read several times faster."""
    array, size = _array(path, "RGB", min_scale)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), size


def read_gray(path: Path) -> torch.Tensor:
    """uint8 (H, W), colour images converted to luminance."""
    return torch.from_numpy(_array(path, "L")[0].copy())
