"""Shared training machinery: Lightning trainer, loggers, atomic checkpoints, resume, EMA, run dirs."""
from diffrep.train.ema import ema_model
from diffrep.train.run import TRAINER_DEFAULTS, checkpoint_path, fit, prepare_run, write_metrics
from diffrep.train.steps import step_generator, step_loader
from diffrep.train.timed import TimedModule

__all__ = ["TRAINER_DEFAULTS", "TimedModule", "checkpoint_path", "ema_model", "fit", "prepare_run", "step_generator",
           "step_loader", "write_metrics"]
