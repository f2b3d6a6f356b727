"""TimedModule: a LightningModule that counts its own training seconds and keeps its last 100 losses,
both across resumes. Work done inside `with module.untimed():` (an evaluation callback) is not counted.
A loss that is not finite stops the run with a UserError before its backward pass, so a diverged run never
reaches a checkpoint or an exported model.

Subclasses that override on_train_start / on_save_checkpoint / on_load_checkpoint call super() first.
"""
from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager

import lightning as L
import torch

from diffrep.errors import UserError


class TimedModule(L.LightningModule):
    train_seconds: float = 0.0
    _clock: float | None = None

    def __init__(self):
        super().__init__()
        self.recent_losses: deque[float] = deque(maxlen=100)  # for metrics.json's final_loss

    def on_train_start(self):
        self._clock = time.perf_counter()

    def on_before_backward(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise UserError(f"training diverged: the loss is {loss.item()} at step {self.global_step}; lower the "
                            "learning rate (optim.lr) or the loss weights and start the run again")

    def on_train_end(self):
        self._tick()

    def _tick(self):
        if self._clock is not None:
            now = time.perf_counter()
            self.train_seconds += now - self._clock
            self._clock = now

    @contextmanager
    def untimed(self):
        """Bring train_seconds up to date, then leave the time spent in the block out of it."""
        self._tick()
        try:
            yield
        finally:
            if self._clock is not None:
                self._clock = time.perf_counter()

    def on_save_checkpoint(self, checkpoint):
        self._tick()
        checkpoint["train_seconds"] = self.train_seconds
        checkpoint["recent_losses"] = list(self.recent_losses)

    def on_load_checkpoint(self, checkpoint):
        self.train_seconds = checkpoint.get("train_seconds", 0.0)
        self.recent_losses.extend(checkpoint.get("recent_losses", []))
