"""SegmentModule: semantic segmentation with a student and an FPN decoder, scored by mIoU.

Per-pixel cross-entropy on the decoder's logits, bilinearly upsampled to the input size (with the imagenet stem
the finest map is at half resolution). mIoU is torchmetrics' MulticlassJaccardIndex, macro-averaged over the
classes *including background*, accumulated over the whole test split (intersection and union summed over
pixels of all images, then averaged over classes); a class absent from both the ground truth and the predictions
of the split is left out of the mean rather than counted as 0 or 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from diffrep.data import DenseSet
from diffrep.tasks.dense_module import DenseModule


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    size = tuple(size)
    return logits if tuple(logits.shape[-2:]) == size else F.interpolate(logits, size=size, mode="bilinear",
                                                                          align_corners=False)


class SegmentModule(DenseModule):
    target = "masks"

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(upsample(logits, masks.shape[-2:]), masks)

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class ids int64 (N, H, W) for uint8 images (N, C, H, W)."""
        return torch.cat([upsample(logits, images.shape[-2:]).argmax(1).cpu()
                          for _, logits in self.outputs(images, batch_size)])

    def evaluate(self, data: DenseSet, batch_size: int = 256) -> dict[str, float]:
        """test_miou (mean IoU over classes incl. background) and test_pixel_accuracy over the whole split."""
        num_classes = len(data.classes)
        miou = MulticlassJaccardIndex(num_classes=num_classes, average="macro")
        accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        for start, logits in self.outputs(data.images, batch_size):
            pred = upsample(logits, data.images.shape[-2:]).argmax(1).cpu()
            target = data.masks[start:start + len(pred)].long()
            miou.update(pred, target)
            accuracy.update(pred, target)
        return {"test_miou": float(miou.compute()), "test_pixel_accuracy": float(accuracy.compute())}
