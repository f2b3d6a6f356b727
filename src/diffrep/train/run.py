"""The one place every method trains through: run directory, loggers, checkpoints, resume, metrics.

    out = prepare_run(out, cfg, resume)        # writes out/config.yaml
    trainer = fit(module, cfg["trainer"], out, resume)
    write_metrics(out, {...})                  # out/metrics.json
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from diffrep import config as config_lib
from diffrep import console
from diffrep import run_dir
from diffrep.errors import UserError
from diffrep.run_dir import write_metrics  # noqa: F401  (diffrep.train.write_metrics)
from diffrep.run_dir import write_text_atomic
from diffrep.options import blocks
from diffrep.train.checkpoint_io import AtomicCheckpointIO, remove_orphans

TRAINER_DEFAULTS = blocks.TRAINER

LAST = "last.ckpt"


class StepProgressBar(TQDMProgressBar):
    """Progress in optimizer steps out of max_steps (the training stream itself is endless)."""

    def on_train_start(self, trainer, *args):
        super().on_train_start(trainer, *args)
        self._count_steps(trainer)

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        self._count_steps(trainer)

    def _count_steps(self, trainer):
        # A run resumed mid-epoch gets no epoch-start hook, so the bar is also set up when training starts.
        self.train_progress_bar.reset(total=trainer.max_steps)
        self.train_progress_bar.initial = trainer.global_step
        self.train_progress_bar.set_description("training")


class StepCheckpoint(Callback):
    """Writes checkpoints/last.ckpt every N optimizer steps and when training ends."""

    def __init__(self, directory: Path, every_n_steps: int):
        self.path, self.every = Path(directory) / LAST, max(1, int(every_n_steps))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str):
        super().__init__(log_dir)
        # The header of the metrics.csv being continued: keys that this session has not logged yet (say an eval that
        # runs every 1000 steps) stay columns when a new key makes Lightning rewrite the file.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))

    def _check_log_dir_exists(self) -> None:
        """Lightning's writer deletes an existing metrics.csv; a resumed run appends to it instead (a new run's
        folder is new: prepare_run refuses to start over an existing run)."""


class RunCSVLogger(CSVLogger):
    """logs/metrics.csv, continued across resumes."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def checkpoint_path(out: Path) -> Path:
    return Path(out) / "checkpoints" / LAST


def prepare_run(out: str | Path, cfg: dict, resume: bool = False) -> Path:
    """Create the run directory and write the resolved config; refuse to overwrite a run by accident."""
    out = Path(out)
    if checkpoint_path(out).exists() and not resume:
        raise UserError(f"{out} already holds a run (checkpoints/{LAST}); pass --resume to continue it, "
                        f"--overwrite to start again, or choose another --out")
    if out.is_dir():
        with run_dir.locked(out):  # a run still training there: stop before its config is touched
            pass
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", config_lib.dump(cfg))
    return out


def build_trainer(tcfg: dict, out: Path, callbacks: list | None = None) -> L.Trainer:
    out = Path(out)
    callbacks = list(callbacks or []) + [StepCheckpoint(out / "checkpoints", tcfg["checkpoint_every_n_steps"])]
    console.quiet_libraries()
    show_bar = console.bar_on_terminal(tcfg["progress_bar"])  # in a log file every redraw would be a line
    if show_bar:
        callbacks.append(StepProgressBar(refresh_rate=max(1, tcfg["log_every_n_steps"] // 5)))
    return L.Trainer(
        max_steps=tcfg["max_steps"], max_epochs=-1,
        accelerator=tcfg["accelerator"], devices=tcfg["devices"], strategy=tcfg["strategy"],
        num_nodes=tcfg["num_nodes"], precision=tcfg["precision"],
        gradient_clip_val=tcfg["gradient_clip_val"],
        logger=[TensorBoardLogger(out, name="logs", version=""), RunCSVLogger(out, name="logs", version="")],
        callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False, enable_progress_bar=show_bar,
        enable_model_summary=False, log_every_n_steps=tcfg["log_every_n_steps"],
        num_sanity_val_steps=0, limit_val_batches=0,
    )


def fit(module: L.LightningModule, tcfg: dict, out: str | Path, resume: bool = False,
        callbacks: list | None = None) -> L.Trainer:
    """Train `module`; with resume, continue from out/checkpoints/last.ckpt when there is one."""
    out = Path(out)
    ckpt = checkpoint_path(out)
    trainer = build_trainer(tcfg, out, callbacks)
    with warnings.catch_warnings():
        # The step-indexed stream resumes itself (see train/steps.py); Lightning cannot know that.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        with run_dir.locked(out):
            remove_orphans(ckpt.parent)
            trainer.fit(module, ckpt_path=str(ckpt) if resume and ckpt.exists() else None,
                        weights_only=False)  # our own checkpoints: they hold the EMA and the run's counters
    return trainer
