"""RepFusion distillation losses (reference section 3): hint (pooled or dense), attention transfer, RKD.

Every loss takes the student's feature first and the teacher's second. The teacher's feature is detached
here (it comes from a frozen DPM) and both are computed in float32, so half-precision features do not
lose the small differences these losses measure.

`distill_loss(name, student_map, teacher_map, adapter)` is the one entry point a training module needs:
it applies the adapter, calls the loss with the reference's options and multiplies by the reference's
kd_weight (`LOSS_WEIGHTS`). `DistillLoss` is the same as an nn.Module that owns its adapter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffrep.errors import UserError

HINT_MODES = ("pooled", "dense")
HINT_DISTANCES = ("mse", "l1", "l2_norm")
# kd_weight of the reference configs: hint 1 (CIFAR/Tiny-IN), AT 1000, RKD 1 (its 25/50 weights are inside).
LOSS_WEIGHTS = {"hint": 1.0, "at": 1000.0, "rkd": 1.0}
# The options each loss accepts through distill_loss / DistillLoss.
LOSS_OPTIONS = {"hint": ("mode", "distance"), "at": ("p",), "rkd": ("distance_weight", "angle_weight")}


def make_adapter(c_student: int, c_teacher: int) -> nn.Conv2d:
    """The reference's hint adapter: a 1x1 convolution with bias from the student's to the teacher's channels."""
    return nn.Conv2d(c_student, c_teacher, kernel_size=1, bias=True)


def global_pool(feature: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) by global average pooling; (B, C) vectors pass through."""
    return feature.mean(dim=(2, 3)) if feature.dim() == 4 else feature


def resize_to(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize the student map to the teacher's H x W (a no-op when they already agree)."""
    size = teacher_map.shape[-2:]
    if student_map.shape[-2:] == size:
        return student_map
    return F.interpolate(student_map, size=size, mode="bilinear", align_corners=False)


def _check_maps(student: torch.Tensor, teacher: torch.Tensor, loss: str, same_channels: bool) -> None:
    if student.dim() != 4 or teacher.dim() != 4:
        raise UserError(f"{loss}: expected (B, C, H, W) feature maps, got student {tuple(student.shape)} "
                        f"and teacher {tuple(teacher.shape)}")
    if student.shape[0] != teacher.shape[0]:
        raise UserError(f"{loss}: batch sizes differ (student {student.shape[0]}, teacher {teacher.shape[0]})")
    if same_channels and student.shape[1] != teacher.shape[1]:
        raise UserError(f"{loss}: the student map has {student.shape[1]} channels but the teacher's has "
                        f"{teacher.shape[1]}; adapt the student first (make_adapter({student.shape[1]}, "
                        f"{teacher.shape[1]}))")


def _distance(student: torch.Tensor, teacher: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "mse":
        return F.mse_loss(student, teacher)
    if distance == "l1":
        return F.l1_loss(student, teacher)
    if distance == "l2_norm":  # the reference's MSE_Norm_Loss: compare directions, not magnitudes
        return F.mse_loss(F.normalize(student, dim=1), F.normalize(teacher, dim=1))
    raise UserError(f"unknown hint distance '{distance}' (valid: {', '.join(HINT_DISTANCES)})")


def hint_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, mode: str = "pooled",
              distance: str = "mse") -> torch.Tensor:
    """FitNets-style hint between an adapted student map and the teacher map (same channels).

    mode="pooled" (the RL classes): distance(GAP(student), GAP(teacher)), mean over B * C;
    mode="dense" (CelebA `CleanDense`): the student map is resized to the teacher's H x W, then
    distance over B * C * H * W. distance: "mse" (reference l2), "l1", or "l2_norm" (MSE of the
    channel-wise L2-normalised maps).
    """
    if mode not in HINT_MODES:
        raise UserError(f"unknown hint mode '{mode}' (valid: {', '.join(HINT_MODES)})")
    _check_maps(student_map, teacher_map, "hint", same_channels=True)
    student, teacher = student_map.float(), teacher_map.detach().float()
    if mode == "pooled":
        return _distance(global_pool(student), global_pool(teacher), distance)
    return _distance(resize_to(student, teacher), teacher, distance)


def attention_map(feature: torch.Tensor, p: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """Q(F) = A / (||A||_2 + eps) with A = sum_c |F_c|^p, the norm over H, W: shape (B, 1, H, W)."""
    a = feature.abs().pow(p).sum(dim=1, keepdim=True)
    return a / (torch.linalg.vector_norm(a, dim=(2, 3), keepdim=True) + eps)


def attention_transfer_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis): MSE over B * H * W between the attention maps, the student's
    map resized to the teacher's H x W first. Channels may differ (no adapter)."""
    _check_maps(student_map, teacher_map, "at", same_channels=False)
    student, teacher = student_map.float(), teacher_map.detach().float()
    return F.mse_loss(attention_map(resize_to(student, teacher), p), attention_map(teacher, p))


def pairwise_distances(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances as the reference computes them: from the Gram matrix, clamped to
    eps before the square root (a finite gradient for coincident points), with an exact zero diagonal."""
    squared = vectors.pow(2).sum(dim=1)
    d2 = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * vectors @ vectors.t()).clamp(min=eps)
    off_diagonal = ~torch.eye(len(vectors), dtype=torch.bool, device=vectors.device)
    return d2.sqrt() * off_diagonal


def _normalised_distances(vectors: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(vectors)
    return d / d[d > 0].mean()  # scale-free: only the relative geometry is distilled


def _angles(vectors: torch.Tensor) -> torch.Tensor:
    """a_ijk = <e_ij, e_ik> with e_ij = normalize(f_j - f_i), flattened (B * B * B)."""
    directions = F.normalize(vectors.unsqueeze(0) - vectors.unsqueeze(1), p=2, dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_terms(student_vec: torch.Tensor, teacher_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unweighted RKD terms (distance, angle) between (B, D_s) and (B, D_t) embeddings (D_s, D_t may differ)."""
    if student_vec.dim() != 2 or teacher_vec.dim() != 2 or len(student_vec) != len(teacher_vec):
        raise UserError(f"rkd: expected (B, D) embeddings with the same B, got student {tuple(student_vec.shape)} "
                        f"and teacher {tuple(teacher_vec.shape)}")
    if len(student_vec) < 2:
        raise UserError("rkd: needs at least 2 samples per batch (it distils distances between samples)")
    student, teacher = student_vec.float(), teacher_vec.detach().float()
    loss_distance = F.smooth_l1_loss(_normalised_distances(student), _normalised_distances(teacher), beta=1.0)
    loss_angle = F.smooth_l1_loss(_angles(student), _angles(teacher), beta=1.0)
    return loss_distance, loss_angle


def rkd_loss(student_vec: torch.Tensor, teacher_vec: torch.Tensor, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    """Relational KD (Park et al. 2019): distance_weight * L_distance + angle_weight * L_angle."""
    loss_distance, loss_angle = rkd_terms(student_vec, teacher_vec)
    return distance_weight * loss_distance + angle_weight * loss_angle


def _check_name(name: str) -> None:
    if name not in LOSS_WEIGHTS:
        raise UserError(f"unknown distillation loss '{name}' (valid: {', '.join(LOSS_WEIGHTS)})")


def _check_options(name: str, opts: dict) -> None:
    unknown = sorted(set(opts) - set(LOSS_OPTIONS[name]))
    if unknown:
        valid = ", ".join(LOSS_OPTIONS[name]) or "none"
        raise UserError(f"unknown option(s) {', '.join(unknown)} for the '{name}' loss (valid: {valid})")


def distill_loss(name: str, student_map: torch.Tensor, teacher_map: torch.Tensor, adapter: nn.Module | None = None,
                 weight: float | None = None, **opts) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(weight * loss, {term: unweighted value, detached}) for name in "hint", "at", "rkd".

    adapter, when given, is applied to the student map first (the reference uses one for hint only).
    weight defaults to LOSS_WEIGHTS[name]. opts go to the loss: hint mode/distance, at p,
    rkd distance_weight/angle_weight. rkd runs on the GAP of both maps, as in the reference; its terms
    are rkd (= 25 L_D + 50 L_A), rkd_distance and rkd_angle.
    """
    _check_name(name)
    _check_options(name, opts)
    if adapter is not None:
        student_map = adapter(student_map)
    weight = LOSS_WEIGHTS[name] if weight is None else weight
    if name == "hint":
        loss = hint_loss(student_map, teacher_map, **opts)
        terms = {"hint": loss}
    elif name == "at":
        loss = attention_transfer_loss(student_map, teacher_map, **opts)
        terms = {"at": loss}
    else:
        loss_distance, loss_angle = rkd_terms(global_pool(student_map), global_pool(teacher_map))
        loss = opts.get("distance_weight", 25.0) * loss_distance + opts.get("angle_weight", 50.0) * loss_angle
        terms = {"rkd": loss, "rkd_distance": loss_distance, "rkd_angle": loss_angle}
    return weight * loss, {key: value.detach() for key, value in terms.items()}


class DistillLoss(nn.Module):
    """`distill_loss` as a module that owns its adapter, so the adapter is trained and checkpointed with it.

    The adapter is built for "hint" only (as in the reference); at and rkd compare maps of any width.
    forward(student_map, teacher_map) -> (weighted loss, {term: unweighted value}).
    """

    def __init__(self, name: str, student_channels: int, teacher_channels: int, weight: float | None = None,
                 **opts):
        super().__init__()
        _check_name(name)
        _check_options(name, opts)
        self.name, self.opts = name, opts
        self.weight = LOSS_WEIGHTS[name] if weight is None else float(weight)
        self.adapter = make_adapter(student_channels, teacher_channels) if name == "hint" else None

    def forward(self, student_map: torch.Tensor, teacher_map: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return distill_loss(self.name, student_map, teacher_map, self.adapter, self.weight, **self.opts)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}, opts={self.opts}"
