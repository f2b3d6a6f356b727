"""In-training linear probe of z: does the semantic code learn what an untrained encoder's code does not?

Every `eval.probe_every_n_steps` optimizer steps, before the first and after the last, the EMA encoder encodes a
seeded stratified subset of the train images (`eval.probe_train_size`) and of the test images
(`eval.probe_test_size`), and diffrep's linear probe (`diffrep.probe.linear.probe`, as `diffrep pdae encode` runs
it) is fitted on the train codes and scored on the test codes. The same probe of an untrained encoder of the same
config (seeded, as in `pdae encode`) is the baseline; it is computed once. Each evaluation appends (step,
train_seconds, z_probe, untrained_z_probe) to OUT/z_probe.csv, logs eval/z_probe and eval/untrained_z_probe and
redraws OUT/z_probe.png; its time is left out of train_seconds. On resume, rows past the checkpoint's step are
dropped and steps already in the file are not evaluated again.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from diffrep.data import ImageSet
from diffrep.options import blocks
from diffrep.pdae.app import encode_z
from diffrep.pdae.encode import untrained_encoder
from diffrep.pdae.evaluation import PeriodicEvaluation
from diffrep.probe.linear import probe
from diffrep.report.plots import curves

COLUMNS = ("step", "train_seconds", "z_probe", "untrained_z_probe")
FILE = "z_probe.csv"
BATCH = 500


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [{"step": int(r["step"]), "train_seconds": float(r["train_seconds"]), "z_probe": float(r["z_probe"]),
                 "untrained_z_probe": float(r["untrained_z_probe"])} for r in csv.DictReader(fh)]


class ZProbeEvaluation(PeriodicEvaluation):
    def __init__(self, out: str | Path, train: ImageSet, test: ImageSet, every_n_steps: int, seed: int = 0):
        self.out, self.train, self.test, self.every, self.seed = Path(out), train, test, every_n_steps, seed
        self.options = {**blocks.PROBE, "num_classes": len(train.classes)}
        self.rows: list[dict] = []
        self.untrained: float | None = None

    def on_train_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        self.rows = [r for r in _rows(self.out / FILE) if r["step"] <= pl_module.step]  # later: a lost future
        self._write()
        if self.rows:
            self.untrained = self.rows[-1]["untrained_z_probe"]
        if trainer.global_step == 0:
            self.evaluate(trainer, pl_module)

    @torch.no_grad()
    def accuracy(self, encoder: torch.nn.Module, device: torch.device) -> float:
        training = encoder.training
        encoder.eval()
        try:
            z = {split: encode_z(encoder, data, BATCH, device) for split, data in (("train", self.train),
                                                                                  ("test", self.test))}
        finally:
            encoder.train(training)
        return probe(z["train"], self.train.labels, z["test"], self.test.labels, **self.options)

    def evaluate(self, trainer, pl_module) -> None:
        step = pl_module.step
        if not trainer.is_global_zero or any(r["step"] == step for r in self.rows):
            return
        with pl_module.untimed():
            encoder = pl_module.ema.module.encoder
            if self.untrained is None:
                baseline = untrained_encoder(encoder.config, self.seed).to(pl_module.device)
                self.untrained = self.accuracy(baseline, pl_module.device)
            row = {"step": step, "train_seconds": pl_module.train_seconds,
                   "z_probe": self.accuracy(encoder, pl_module.device), "untrained_z_probe": self.untrained}
            self.rows.append(row)
            self._write()
            for logger in trainer.loggers:
                logger.log_metrics({"eval/z_probe": row["z_probe"], "eval/untrained_z_probe": self.untrained},
                                   step=step)

    @property
    def last(self) -> dict:
        """{"z_probe": ..., "untrained_z_probe": ...} of the latest evaluation ({} before the first)."""
        return {key: self.rows[-1][key] for key in COLUMNS[2:]} if self.rows else {}

    def _write(self) -> None:
        with (self.out / FILE).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({**r, "train_seconds": f"{r['train_seconds']:.3f}"} for r in self.rows)
        if len(self.rows) >= 2:
            steps = [r["step"] for r in self.rows]
            curves({"trained encoder (EMA)": (steps, [100 * r["z_probe"] for r in self.rows]),
                    "untrained encoder": (steps, [100 * r["untrained_z_probe"] for r in self.rows])},
                   self.out / "z_probe.png", "training step", "linear probe of z, test accuracy (%)",
                   f"z probe on {len(self.train)} / {len(self.test)} images")
