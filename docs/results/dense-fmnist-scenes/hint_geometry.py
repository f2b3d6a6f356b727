"""How much of the teacher's 4 x 4 mid-block map (clean input, t = 0) a student map of side S can match through the
dense hint's bilinear resizing, on 1,000 train scenes: the best achievable hint MSE is the residual of projecting
each 4 x 4 channel map onto the span of the bilinear upsamplings of S x S maps.

    python hint_geometry.py      # prints, for S = 1, 2, 4, the best MSE next to the per-element variance
"""
import torch
import torch.nn.functional as F

from diffrep import data as data_lib
from diffrep.teacher import load_teacher

TAP = "mid_block.resnets.1.conv2"
teacher = load_teacher()
scenes = data_lib.load({**data_lib.DATA_DEFAULTS, "name": "fmnist-scenes", "train_size": 1000}, "train")
with torch.no_grad():
    maps = teacher.features(data_lib.to_float(scenes.images), 0, [TAP])[TAP]
side = maps.shape[-1]
flat = maps.flatten(2)  # (N, C, side^2)
print(f"teacher map {tuple(maps.shape[1:])}: mean square {flat.pow(2).mean():.4f}, "
      f"per-element variance over scenes {maps.var(0).mean():.4f}")
for s in (1, 2, side):
    basis = torch.stack([F.interpolate(torch.eye(s * s)[i].view(1, 1, s, s), size=(side, side), mode="bilinear",
                                       align_corners=False).flatten() for i in range(s * s)], 1)
    projection = basis @ torch.linalg.pinv(basis)
    print(f"student map {s} x {s}: best achievable hint MSE {(flat - flat @ projection.T).pow(2).mean():.4f}")
