"""`dpm fit --export_every_n_steps N`: the EMA model every N steps as OUT/model-stepS (a diffusers directory like
OUT/model), so that a long run's intermediate teachers can be probed, compared or shipped while it goes on."""
from __future__ import annotations

import shutil
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class PeriodicExport(Callback):
    def __init__(self, every_n_steps: int, out: Path):
        self.every, self.out = every_n_steps, Path(out)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # the EMA has had this step's update (DDPMModule.optimizer_step)
        final = self.out / f"model-step{step}"
        if step % self.every or not trainer.is_global_zero or final.exists():
            return
        partial = final.with_name(final.name + ".partial")  # renamed when complete: a killed run leaves no half model
        shutil.rmtree(partial, ignore_errors=True)
        with pl_module.untimed():
            pl_module.export(partial)
        partial.rename(final)
