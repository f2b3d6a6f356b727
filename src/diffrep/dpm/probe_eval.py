"""ProbeEval: how good a DPM's features are while it trains, the cheap proxy for choosing a recipe.

Every `eval.every_n_steps` optimizer steps (and at the first and the last step) the EMA weights' features at
`eval.taps`, timestep `eval.t` and `eval.input` are pooled (`eval.pool`) for a stratified subset of the training
split (`eval.train_size` images) and the test split (`eval.test_size`), and two linear probes are fitted on them:
one on `eval.labels` labelled images (the few-label probe, a stratified subset of the first) and one on all of
them. The accuracies go to the loggers (TensorBoard, logs/metrics.csv, as eval/<tap>/<pool>/<labels>), to
OUT/eval.csv and to OUT/eval.png (accuracy against steps). The time they take is not counted as training time.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from diffrep.data import ImageSet, stratified_subset
from diffrep.errors import UserError
from diffrep.options import blocks
from diffrep.probe.features import extract_pools, parse_pools
from diffrep.probe.linear import probe
from diffrep.report.plots import curves
from diffrep.teacher import INPUT_MODES, Teacher

EVAL_DEFAULTS = blocks.DPM_EVAL
COLUMNS = ("step", "images_seen", "train_seconds", "tap", "pool", "labels", "accuracy")


def check_eval(cfg: dict, num_timesteps: int) -> dict:
    """The eval options, checked; taps are checked against the model when training starts."""
    cfg = {**cfg, "taps": [tap.strip() for tap in cfg["taps"].split(",")] if isinstance(cfg["taps"], str)
           else list(cfg["taps"]), "pool": parse_pools(cfg["pool"])}
    for key in ("every_n_steps", "t", "train_size", "labels", "test_size", "batch_size"):
        low, value = 0 if key in ("every_n_steps", "t") else 1, cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"eval.{key} must be an integer >= {low}, got {value!r}")
    if cfg["t"] >= num_timesteps:
        raise UserError(f"eval.t must lie in 0..{num_timesteps - 1}, got {cfg['t']}")
    if cfg["labels"] > cfg["train_size"]:
        raise UserError(f"eval.labels ({cfg['labels']}) cannot exceed eval.train_size ({cfg['train_size']})")
    if cfg["input"] not in INPUT_MODES:
        raise UserError(f"unknown eval.input '{cfg['input']}' (valid: {', '.join(INPUT_MODES)})")
    return cfg


class ProbeEval(Callback):
    def __init__(self, cfg: dict, train: ImageSet, test: ImageSet, out: Path, seed: int = 0):
        self.cfg, self.train, self.test, self.out, self.seed = cfg, train, test, Path(out), seed
        self.few = stratified_subset(train.labels, cfg["labels"], seed)
        self.done: set[int] = set()
        self.latest: dict[tuple[str, str, int], float] = {}  # the last evaluation's accuracies

    def on_train_start(self, trainer, pl_module):
        Teacher(pl_module.ema.module, pl_module.scheduler).check_taps(self.cfg["taps"])
        if pl_module.global_step == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.cfg["every_n_steps"] == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if step in self.done or not trainer.is_global_zero:
            return
        self.done.add(step)
        with pl_module.untimed():
            scores = self.latest = self.scores(pl_module)
        batch = pl_module.optim["batch_size"] * trainer.world_size
        rows = [{"step": step, "images_seen": step * batch, "train_seconds": round(pl_module.train_seconds, 1),
                 "tap": tap, "pool": pool, "labels": labels, "accuracy": round(acc, 5)}
                for (tap, pool, labels), acc in scores.items()]
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/{tap}/{pool}/{labels}": acc for (tap, pool, labels), acc in scores.items()},
                               step=step)
        self.write(rows)

    @torch.no_grad()
    def scores(self, pl_module) -> dict[tuple[str, str, int], float]:
        c = self.cfg
        ema = pl_module.ema.module
        was_training = ema.training
        teacher = Teacher(ema, pl_module.scheduler)
        feats = {split: extract_pools(teacher, data, c["t"], c["taps"], c["input"], c["pool"], c["batch_size"],
                                      self.seed, split)
                 for split, data in (("train", self.train), ("test", self.test))}
        ema.train(was_training)
        scores = {}
        for pool in c["pool"]:
            for tap in c["taps"]:
                train_x, test_x = feats["train"][pool][tap], feats["test"][pool][tap]
                for index in (self.few, slice(None)):
                    labels = self.train.labels[index]
                    scores[tap, pool, len(labels)] = probe(train_x[index], labels, test_x, self.test.labels,
                                                           num_classes=len(self.train.classes))
        return scores

    def write(self, rows: list[dict]) -> None:
        """Append to eval.csv (a step evaluated again after a resume replaces its rows) and redraw eval.png."""
        path = self.out / "eval.csv"
        old = list(csv.DictReader(path.open())) if path.exists() else []
        steps = {row["step"] for row in rows}
        kept = [row for row in old if int(row["step"]) not in steps] + rows
        kept.sort(key=lambda row: int(row["step"]))
        tmp = path.with_name(".eval.csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)
        series: dict[str, tuple[list, list]] = {}
        for row in kept:
            xs, ys = series.setdefault(f"{row['tap']}, {row['pool']}, {row['labels']} labels", ([], []))
            xs.append(int(row["step"]))
            ys.append(100 * float(row["accuracy"]))
        curves(series, self.out / "eval.png", "training step", "linear-probe test accuracy (%)",
               f"EMA features at t = {self.cfg['t']}, {self.cfg['input']} input")
