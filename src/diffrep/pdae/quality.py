"""Per-image reconstruction metrics on [0, 1], as the reference's metric/utils.py (section 4.8).

SSIM: 11 x 11 Gaussian window, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2 (torchmetrics' defaults for k1, k2).
PSNR: 10 log10(1 / MSE). MSE: mean over channels and pixels. Each is per image; commands average over images.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (decoded images may overshoot slightly)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def image_metrics(decoded: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"ssim", "psnr", "mse"}: one value per image, for images in [-1, 1]."""
    pred, true = to_unit(decoded), to_unit(target)
    ssim = structural_similarity_index_measure(pred, true, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                               data_range=1.0, reduction="none")
    psnr = peak_signal_noise_ratio(pred, true, data_range=1.0, reduction="none", dim=(1, 2, 3))
    mse = (pred - true).square().flatten(1).mean(1)
    return {"ssim": ssim, "psnr": psnr, "mse": mse}
