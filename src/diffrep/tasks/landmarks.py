"""LandmarkModule: landmark detection by heatmap regression with a student and an FPN decoder, scored by NME.

- Heatmaps: one per keypoint, at the decoder's resolution (the finest tap's: full input resolution with the small
  stem, half with the imagenet stem). Stride s = input side / heatmap side; heatmap cell u covers input pixels
  [u s, (u + 1) s), so an input point x sits at x / s in heatmap coordinates (cell u has its centre at u + 0.5,
  the convention of the keypoints themselves).
- Targets: an unnormalised Gaussian of peak 1 and standard deviation `sigma` *heatmap cells* (mmpose's convention;
  default 1.5) around each point; points off the canvas give a clipped or empty target.
- Loss: mean squared error over every heatmap pixel (mmpose's JointsMSELoss without its 1/2), times
  HEATMAP_LOSS_SCALE = 1000 so that the logged loss reads in units of 1e-3 and gradients stay far above AdamW's
  eps. `diffrep finetune` trains landmarks with AdamW (lr 2e-3, mmpose's Adam rate for WFLW) by default: with
  SGD at lr 0.1 this regression diverges.
- Decoding (`decode_heatmaps`): the argmax cell, refined per axis by the vertex of the parabola through the log
  heatmap at the cell and its two neighbours (offset = (l - r) / (2 (l - 2c + r)), clamped to +-0.5 cell; none at
  the border or where the log is not concave). The log of a Gaussian is a parabola, so a Gaussian peak is
  recovered exactly; this is the second-order (Taylor) refinement of DARK (Zhang et al. 2020) for one axis at a
  time, without its blur of the heatmap. Values are clamped to >= 1e-6 before the log.
- NME (`nme`): per image, the mean over keypoints of ||prediction - ground truth|| / normaliser, averaged over
  images. The normaliser depends on the dataset, chosen in NORMALISERS: WFLW's interocular distance (outer eye
  corners, the standard for WFLW) and, for fmnist-scenes, the diagonal of the main item's box spanned by its top,
  bottom, left and right landmarks: sqrt((right.x - left.x)^2 + (bottom.y - top.y)^2), a size-invariant error
  as the face-box normalisers of face alignment benchmarks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from diffrep.data import DenseSet, interocular
from diffrep.errors import UserError
from diffrep.tasks.dense_module import DenseModule

SIGMA = 1.5                # default target standard deviation, in heatmap cells
HEATMAP_LOSS_SCALE = 1000.0


def box_diagonal(keypoints: torch.Tensor) -> torch.Tensor:
    """fmnist-scenes normaliser: the diagonal of the box of the top, bottom, left, right landmarks (..., 5, 2)."""
    top, bottom, left, right = (keypoints[..., k, :] for k in range(4))
    return torch.hypot(right[..., 0] - left[..., 0], bottom[..., 1] - top[..., 1])


NORMALISERS = {  # dataset kind (the data.name before ':') -> (what it is, keypoints (..., K, 2) -> (...))
    "fmnist-scenes": ("the main item's box diagonal (top, bottom, left, right landmarks)", box_diagonal),
    "wflw": ("the interocular distance (outer eye corners, points 60 and 72)", interocular),
}


def normaliser(dataset: str):
    """The NME normaliser of a dataset name (fmnist-scenes, wflw:PATH)."""
    kind = dataset.partition(":")[0]
    if kind not in NORMALISERS:
        raise UserError(f"no NME normaliser for dataset '{dataset}'; landmark datasets: "
                        f"{', '.join(NORMALISERS)}")
    return NORMALISERS[kind][1]


def nme(pred: torch.Tensor, target: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Per-image normalised mean error (N,): mean over keypoints of ||pred - target|| / norm; inputs (N, K, 2), (N,)."""
    return (pred - target).norm(dim=-1).mean(-1) / norm


def gaussian_heatmaps(points: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Targets (B, K, h, w) for points (B, K, 2) given in heatmap coordinates (cell centres at u + 0.5)."""
    h, w = size
    xs = torch.arange(w, device=points.device, dtype=points.dtype) + 0.5
    ys = torch.arange(h, device=points.device, dtype=points.dtype) + 0.5
    gx = torch.exp(-(xs - points[..., 0, None]) ** 2 / (2 * sigma ** 2))  # (B, K, w)
    gy = torch.exp(-(ys - points[..., 1, None]) ** 2 / (2 * sigma ** 2))  # (B, K, h)
    return gy[..., :, None] * gx[..., None, :]


def _parabola_offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    curvature = left - 2 * centre + right
    offset = 0.5 * (left - right) / torch.where(curvature < 0, curvature, -1.0)
    return torch.where(curvature < 0, offset.clamp(-0.5, 0.5), 0.0)


def decode_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Sub-pixel peaks (B, K, 2) in heatmap coordinates (cell centres at u + 0.5) of heatmaps (B, K, h, w)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    index = flat.argmax(-1)
    y, x = index // w, index % w
    logs = heatmaps.clamp_min(1e-6).log()
    padded = F.pad(logs, (1, 1, 1, 1), value=float("nan"))  # no neighbour at the border: nan, then no offset

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded.reshape(b, k, -1).gather(-1, ((y + 1 + dy) * (w + 2) + x + 1 + dx)[..., None])[..., 0]

    centre = at(0, 0)
    dx = torch.nan_to_num(_parabola_offset(at(0, -1), centre, at(0, 1)), nan=0.0)
    dy = torch.nan_to_num(_parabola_offset(at(-1, 0), centre, at(1, 0)), nan=0.0)
    return torch.stack([x + 0.5 + dx, y + 0.5 + dy], -1)


def _stride(image_size, heatmap_size) -> torch.Tensor:
    """(sx, sy): input pixels per heatmap cell."""
    return torch.tensor([image_size[1] / heatmap_size[1], image_size[0] / heatmap_size[0]])


class LandmarkModule(DenseModule):
    target = "keypoints"

    def __init__(self, *args, sigma: float = SIGMA, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
            raise UserError(f"head.sigma must be a positive number (heatmap cells), got {sigma!r}")
        self.sigma = float(sigma)
        self.image_size = tuple(self.train_data.images.shape[-2:])

    def loss(self, heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        stride = _stride(self.image_size, heatmaps.shape[-2:]).to(keypoints)
        target = gaussian_heatmaps(keypoints / stride, heatmaps.shape[-2:], self.sigma)
        return F.mse_loss(heatmaps, target) * HEATMAP_LOSS_SCALE

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Keypoints float32 (N, K, 2) in input pixels for uint8 images (N, C, H, W)."""
        out = []
        for _, heatmaps in self.outputs(images, batch_size):
            out.append(decode_heatmaps(heatmaps.float()).cpu() * _stride(images.shape[-2:], heatmaps.shape[-2:]))
        return torch.cat(out)

    def evaluate(self, data: DenseSet, dataset: str, batch_size: int = 256) -> dict[str, float]:
        """test_nme over the whole split (normalised as NORMALISERS says for `dataset`) and the mean pixel error."""
        pred = self.predict(data.images, batch_size)
        errors = nme(pred, data.keypoints, normaliser(dataset)(data.keypoints))
        return {"test_nme": float(errors.mean()),
                "test_pixel_error": float((pred - data.keypoints).norm(dim=-1).mean())}
