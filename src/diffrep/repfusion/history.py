"""The timesteps a distillation run used, per epoch: what the policy learned, as a table and a heatmap.

Two records per epoch: counts of the sampled timesteps (every selection mode), and, for the policy, the
mean of its probabilities over the epoch's images (a smoother picture of the same distribution).
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from diffrep.report.plots import heatmap


class TimestepHistory:
    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps
        self.counts: dict[int, torch.Tensor] = {}  # epoch -> (T,) sampled-t counts
        self.probs: dict[int, torch.Tensor] = {}   # epoch -> (T,) summed policy probabilities, spread to timesteps
        self.images: dict[int, int] = {}           # epoch -> images seen

    def add(self, epoch: int, t: torch.Tensor, probs_by_t: torch.Tensor | None = None) -> None:
        """Record one batch: its sampled timesteps and, for the policy, its (B, T) probabilities per timestep."""
        zeros = torch.zeros(self.num_timesteps, dtype=torch.float64)
        self.counts[epoch] = self.counts.get(epoch, zeros) + torch.bincount(
            t.detach().cpu().long(), minlength=self.num_timesteps).double()
        if probs_by_t is not None:
            self.probs[epoch] = self.probs.get(epoch, zeros) + probs_by_t.detach().cpu().double().sum(0)
        self.images[epoch] = self.images.get(epoch, 0) + len(t)

    def distribution(self, epoch: int) -> torch.Tensor:
        """(T,) the epoch's timestep distribution: mean policy probabilities, else sampled frequencies."""
        record = self.probs.get(epoch, self.counts[epoch])
        return record / record.sum()

    def state_dict(self) -> dict:
        return {"counts": self.counts, "probs": self.probs, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.counts, self.probs, self.images = state["counts"], state["probs"], state["images"]

    def summary(self) -> dict:
        """Mean, mode and entropy (nats) of the last epoch's distribution."""
        if not self.counts:
            return {}
        p = self.distribution(max(self.counts))
        t = torch.arange(self.num_timesteps, dtype=torch.float64)
        nonzero = p[p > 0]
        return {"t_mean": float((p * t).sum()), "t_mode": int(p.argmax()),
                "t_entropy": float(-(nonzero * nonzero.log()).sum())}

    def write(self, out: Path, bins: int = 20) -> list[Path]:
        """timesteps.csv (epoch x t) and timesteps.png (epochs x t-bins heatmap of the distribution)."""
        epochs = sorted(self.counts)
        if not epochs:
            return []
        table = out / "timesteps.csv"
        with table.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", "images", *range(self.num_timesteps)])
            for epoch in epochs:
                writer.writerow([epoch, self.images[epoch], *(f"{v:.6g}" for v in self.distribution(epoch).tolist())])
        bins = min(bins, self.num_timesteps)
        edges = torch.linspace(0, self.num_timesteps, bins + 1).round().long().tolist()
        rows = [[float(self.distribution(e)[lo:hi].sum()) for lo, hi in zip(edges[:-1], edges[1:])] for e in epochs]
        labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
        kind = "mean policy probability" if self.probs else "share of sampled timesteps"
        plot = heatmap(rows, epochs, labels, out / "timesteps.png", title=f"timestep distribution per epoch ({kind})",
                       xlabel="timestep t", ylabel="epoch", colorbar="probability mass", fmt="{:.2f}")
        return [table, plot]
