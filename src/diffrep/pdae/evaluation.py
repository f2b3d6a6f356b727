"""In-training evaluation for the efficiency comparison of PDAE and Diff-AE: random-x_T MSE against training time.

Before the first step, every `every_n_steps` optimizer steps and when training ends, the EMA model encodes a
fixed test subset to z and DDIM-decodes (`steps`) a fixed x_T ~ N(0, I) with it; the MSE against the images on
[0, 1] is the measure compared at equal quality ("random x_T with z"). Each evaluation appends (step,
train_seconds, random_xT_mse) to OUT/eval.csv and logs eval/random_xT_mse. Its own time is left out of train_seconds
(TimedModule.untimed). On resume, rows past the checkpoint's step are dropped and steps already in the file are
not evaluated again, so the file has one row per step. `diffrep pdae compare` reads these files.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from diffrep.errors import UserError
from diffrep.options import blocks
from diffrep.pdae import ddim
from diffrep.pdae.quality import to_unit

EVAL_DEFAULTS = blocks.PDAE_EVAL         # DDIM decoding steps from the fixed random x_T
COLUMNS = ("step", "train_seconds", "random_xT_mse")
FILE = "eval.csv"


def check(options: dict) -> None:
    every = options["every_n_steps"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UserError(f"eval.every_n_steps must be 0 (off) or a positive integer, got {every!r}")
    for key in ("images", "steps"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"eval.{key} must be a positive integer, got {value!r}")


def read_rows(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as fh:
        return [{"step": int(r["step"]), "train_seconds": float(r["train_seconds"]),
                 "random_xT_mse": float(r["random_xT_mse"])} for r in csv.DictReader(fh)]


def _write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


class PeriodicEvaluation(Callback):
    """Calls `evaluate(trainer, pl_module)` every `self.every` optimizer steps and when training ends (the subclass
    evaluates step 0 in on_train_start and skips steps it has already done)."""

    every: int

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.step % self.every == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module) -> None:
        raise NotImplementedError


class RandomXTEvaluation(PeriodicEvaluation):
    def __init__(self, out: str | Path, images: torch.Tensor, every_n_steps: int, steps: int, seed: int):
        """images: the fixed test subset in [-1, 1]; x_T is drawn once from `seed`."""
        self.path, self.images, self.every, self.steps = Path(out) / FILE, images, every_n_steps, steps
        self.x_T = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
        self.done: set[int] = set()
        self.last: float | None = None

    def on_train_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        rows = read_rows(self.path) if self.path.exists() else []
        rows = [r for r in rows if r["step"] <= pl_module.step]  # later rows belong to a lost future
        _write_rows(self.path, rows)
        self.done = {r["step"] for r in rows}
        self.last = rows[-1]["random_xT_mse"] if rows else None
        if trainer.global_step == 0:
            self.evaluate(trainer, pl_module)  # the starting point: for PDAE, the teacher alone (G = 0)

    @torch.no_grad()
    def random_xt_mse(self, pl_module) -> float:
        model, device = pl_module.ema.module, pl_module.device
        pl_module.teacher.to(device)  # at step 0 the module's own on_train_start has not moved it yet
        training = model.training
        model.eval()
        try:
            x0 = self.images.to(device)
            eps_fn = ddim.eps_function(model, pl_module.teacher, model.encoder(x0))
            decoded = ddim.decode(eps_fn, pl_module.alphas_cumprod, self.x_T.to(device), self.steps)
        finally:
            model.train(training)
        return float((to_unit(decoded) - to_unit(x0)).square().mean())

    def evaluate(self, trainer, pl_module) -> None:
        step = pl_module.step
        if not trainer.is_global_zero or step in self.done:
            return
        with pl_module.untimed():
            mse = self.random_xt_mse(pl_module)
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=COLUMNS).writerow(
                    {"step": step, "train_seconds": f"{pl_module.train_seconds:.3f}", "random_xT_mse": f"{mse:.6g}"})
            for logger in trainer.loggers:
                logger.log_metrics({"eval/random_xT_mse": mse}, step=step)
        self.done.add(step)
        self.last = mse
