"""PDAEModule: trains E and G against the frozen teacher with the weighted, shifted eps loss (reference 1.4).

Per step: t ~ U{0..T-1} and eps ~ N(0, I) from a per-step generator (a resumed run draws the same ones),
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, z = E(x0), and
    loss = mean over batch, channels, pixels of lambda_t * (eps - (eps_theta(x_t, t) + shift_coef_t * G(x_t, z, t)))^2.
Only E and G are in the optimizer (Adam, constant lr, as the reference); their EMA is what gets saved.
The Diff-AE baseline (baseline.py) reuses this module and overrides `predict_eps`.
"""
from __future__ import annotations

from collections import deque

import torch
from torch import nn

from diffrep.data import ImageSet
from diffrep.pdae.shift import shifted_eps
from diffrep.teacher import Teacher
from diffrep.train import TimedModule, ema_model, step_generator, step_loader

RANK_SEED = 7919  # each device draws its own batches and noise


class PDAEModule(TimedModule):
    def __init__(self, teacher: Teacher, model: nn.Module, weights: torch.Tensor, optim: dict, train_data: ImageSet,
                 seed: int, hflip: bool):
        """model: the trained parts (a PDAE: encoder + estimator); weights: lambda_t for t = 0..T-1."""
        super().__init__()
        self.teacher = teacher  # a plain object, not a submodule: frozen, and kept out of every checkpoint
        self.model = model
        self.ema = ema_model(model, optim["ema_decay"])
        self.register_buffer("weights", weights.float().clone(), persistent=False)
        self.register_buffer("alphas_cumprod", teacher.alphas_cumprod.float().clone(), persistent=False)
        self.optim, self.train_data, self.seed, self.hflip = optim, train_data, seed, hflip
        self.recent: dict[str, deque] = {"loss": deque(maxlen=100), "mse": deque(maxlen=100)}
        self.first_step = 0  # a warm start's earlier steps: its batches and noise go on where that run's stopped

    @property
    def step(self) -> int:
        """The step counted from the first run of a warm-started chain (global_step in a plain run)."""
        return self.first_step + self.global_step

    def _seed(self) -> int:
        return self.seed + RANK_SEED * self.global_rank

    def train_dataloader(self):
        return step_loader(self.train_data, self.optim["batch_size"], lambda: self.step, self._seed(),
                           self.hflip)

    def predict_eps(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta + shift_coef_t * G(x_t, E(x0), t)."""
        return shifted_eps(self.teacher, self.model.estimator, x_t, t, self.model.encoder(x0))

    def training_step(self, batch, batch_idx):
        x0, _ = batch
        gen = step_generator(self._seed(), self.step, stream=2)
        t = torch.randint(0, len(self.alphas_cumprod), (len(x0),), generator=gen).to(self.device)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        squared = (noise - self.predict_eps(x0, x_t, t)) ** 2
        loss = (self.weights[t].view(-1, 1, 1, 1) * squared).mean()
        mse = squared.detach().mean()  # unweighted: comparable across weightings and with the baseline
        self.log_dict({"train/loss": loss.detach(), "train/mse": mse})
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        self.recent["loss"].append(loss.item())
        self.recent["mse"].append(mse.item())
        return loss

    def optimizer_step(self, *args, **kwargs):
        # The EMA is updated here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.model)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.optim["lr"])  # constant lr, as the reference

    def on_train_start(self):
        super().on_train_start()
        self.teacher.to(self.device)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["recent"] = {k: list(v) for k, v in self.recent.items()}

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        for key, values in checkpoint.get("recent", {}).items():
            self.recent[key].extend(values)

    def final_metrics(self) -> dict:
        """final_loss and final_mse: means over the last 100 steps."""
        return {f"final_{k}": sum(v) / len(v) for k, v in self.recent.items() if v}
