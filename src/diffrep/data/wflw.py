"""`wflw:PATH`: WFLW face alignment, 98 landmarks per face (7,500 train and 2,500 test faces).

Layout, as distributed: PATH/WFLW_images/<event>/<name>.jpg and
PATH/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt, one face per line:
196 numbers (x0 y0 x1 y1 ... x97 y97), the face rectangle x_min y_min x_max y_max, 6 attribute flags (pose,
expression, illumination, make-up, occlusion, blur) and the image path relative to WFLW_images.

Each face is cropped to a square centred on its rectangle, of side BOX_SCALE (1.25, mmpose's bbox padding) times
the rectangle's longer side, zero-padded where it leaves the photo, and resized to the resolution; the landmarks
get the same transform (annotation coordinates are taken as continuous pixel coordinates) and may fall outside
[0, resolution] where the rectangle misses them. The crop uses the rectangle only, never the landmarks, so test
crops do not peek at the answer.

NME is normalised by `interocular`: the distance between the outer eye corners, points 60 and 72 (0-based).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from diffrep.data.photos import read_rgb
from diffrep.errors import UserError

N_POINTS = 98
KEYPOINT_NAMES = [f"p{k}" for k in range(N_POINTS)]
OUTER_EYE_CORNERS = (60, 72)
BOX_SCALE = 1.25
IMAGES = "WFLW_images"
ANNOTATIONS = "WFLW_annotations/list_98pt_rect_attr_train_test"
_PAIRS = ([(k, 32 - k) for k in range(16)]                                                       # face contour
          + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]  # brows
          + [(55, 59), (56, 58)]                                                                    # nose
          + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]        # eyes
          + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95)]        # mouth
          + [(96, 97)])                                                                             # pupils
KEYPOINT_FLIP = list(range(N_POINTS))  # each point's mirror partner (as in mmpose's WFLW dataset info)
for _a, _b in _PAIRS:
    KEYPOINT_FLIP[_a], KEYPOINT_FLIP[_b] = _b, _a


@dataclass
class Face:
    keypoints: torch.Tensor  # float32 (98, 2) in the photo
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max
    image: str  # path relative to WFLW_images


def interocular(keypoints: torch.Tensor) -> torch.Tensor:
    """Distance between the outer eye corners (points 60 and 72) of WFLW keypoints (..., 98, 2): the NME normaliser."""
    a, b = OUTER_EYE_CORNERS
    return (keypoints[..., a, :] - keypoints[..., b, :]).norm(dim=-1)


def split_faces(root: Path, split: str) -> list[Face]:
    """The faces of `split` in annotation-file order."""
    if split not in ("train", "test"):
        raise UserError(f"WFLW splits are train and test, not '{split}'")
    if not root.is_dir():
        raise UserError(f"WFLW folder not found: {root}")
    if not (root / IMAGES).is_dir():
        raise UserError(f"missing WFLW image folder: {root / IMAGES}")
    path = root / ANNOTATIONS / f"list_98pt_rect_attr_{split}.txt"
    if not path.is_file():
        raise UserError(f"missing WFLW annotation file: {path}")
    faces = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 * N_POINTS + 11:
            raise UserError(f"{path}:{line_no}: expected {2 * N_POINTS + 11} fields (196 coordinates, 4 box, "
                            f"6 attributes, image path), got {len(fields)}")
        try:
            points = torch.tensor([float(v) for v in fields[:2 * N_POINTS]], dtype=torch.float32).view(N_POINTS, 2)
            box = tuple(int(float(v)) for v in fields[2 * N_POINTS:2 * N_POINTS + 4])
        except ValueError as err:
            raise UserError(f"{path}:{line_no}: {err}") from None
        faces.append(Face(points, box, fields[-1]))
    if not faces:
        raise UserError(f"no faces in {path}")
    return faces


def crop_box(box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """Left, top and side of the square crop around a face rectangle, in photo coordinates."""
    x0, y0, x1, y1 = box
    side = BOX_SCALE * max(x1 - x0, y1 - y0, 1)
    return (x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side


def _read_one(root: Path, face: Face, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    left, top, side = crop_box(face.box)
    image, (width, height) = read_rgb(root / IMAGES / face.image, lambda w, h: resolution / side)
    rx, ry = image.shape[2] / width, image.shape[1] / height  # decoded / full size (JPEG draft scale)
    l, t = round(left * rx), round(top * ry)
    w, h = max(1, round(side * rx)), max(1, round(side * ry))
    image = TF.resized_crop(image, t, l, h, w, [resolution, resolution], antialias=True)
    scale = torch.tensor([resolution / w, resolution / h])
    keypoints = (face.keypoints * torch.tensor([rx, ry]) - torch.tensor([l, t])) * scale
    return image, keypoints


def read(root: Path, faces: list[Face], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Face crops uint8 (N, 3, R, R) and their keypoints float32 (N, 98, 2) in crop pixels."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(lambda f: _read_one(root, f, resolution), faces))
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]).float()
