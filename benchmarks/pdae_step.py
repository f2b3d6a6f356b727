"""Seconds per training step: PDAE (frozen teacher encoder half + trainable G) vs the Diff-AE baseline.

Both are the real training steps of `diffrep pdae fit` and `diffrep pdae fit-diffae` (PDAEModule.training_step,
then backward, Adam step and EMA update) on the same batch, with the shipped teacher and the default z width
and encoder; they are timed in alternation and the medians compared:
  - pdae:   z = E(x0), one no-grad pass of the teacher's encoder half feeding its decoder (eps_theta) and the
            trainable G decoder half; gradients through G and E only;
  - diffae: z = E(x0), a whole z-conditioned UNet of the teacher's architecture; gradients through all of it.
diffae_over_pdae > 1 means a PDAE step is cheaper. Trainable parameter counts are reported too.

    python benchmarks/pdae_step.py [--batch 64] [--repeats 5]
"""
from __future__ import annotations

import warnings

import torch

from diffrep import config as config_lib
from diffrep.data import ImageSet
from diffrep.pdae import baseline, fit
from diffrep.pdae.autoencoder import PDAE
from diffrep.pdae.estimator import GradientEstimator
from diffrep.pdae.module import PDAEModule
from diffrep.pdae.weighting import loss_weights
from diffrep.teacher import load_teacher
from timing import alternating_medians, machine, save_result, step_parser  # benchmarks/timing.py


def make_steps(batch: int) -> tuple[dict, dict]:
    """({name: one training step}, {name: trainable parameters})."""
    teacher = load_teacher()
    cfg = fit.resolve(config_lib.resolve(fit.DEFAULTS, None, {}), teacher)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, teacher.channels, teacher.resolution, teacher.resolution, generator=gen) * 2 - 1
    data = ImageSet(((x0 + 1) * 127.5).round().to(torch.uint8), torch.zeros(batch, dtype=torch.long), ["x"])
    optim = {**cfg["optim"], "batch_size": batch}
    torch.manual_seed(0)
    modules = {
        "pdae": PDAEModule(teacher, PDAE(fit.build_encoder(cfg), GradientEstimator(teacher.unet.config, cfg["z_dim"])),
                           loss_weights(teacher.alphas_cumprod), optim, data, 0, False),
        "diffae": baseline.DiffAEModule(teacher, baseline.DiffAE(fit.build_encoder(cfg), baseline.DiffAEUNet(
            teacher.unet.config, cfg["z_dim"])), torch.ones(teacher.num_timesteps), optim, data, 0, False),
    }

    def step(module, optimizer):
        loss = module.training_step((x0, None), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.ema.update_parameters(module.model)

    steps = {name: (lambda m=m, o=m.configure_optimizers(): step(m, o)) for name, m in modules.items()}
    params = {name: sum(p.numel() for p in m.model.parameters() if p.requires_grad) for name, m in modules.items()}
    return steps, params


def main() -> None:
    args = step_parser(__doc__, batch=64, repeats=5).parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")  # the step logs; there is no Trainer here
    steps, params = make_steps(args.batch)
    med = alternating_medians(steps, args.repeats)
    result = {
        "teacher": "shipped (Fashion-MNIST, 32 x 32 x 1)", "batch": args.batch, "repeats": args.repeats,
        **machine(),
        **{f"{key}_seconds_per_step": round(value, 4) for key, value in med.items()},
        **{f"{key}_trainable_parameters": value for key, value in params.items()},
        "diffae_over_pdae": round(med["diffae"] / med["pdae"], 2),
    }
    save_result(result, args.out, "pdae_step")


if __name__ == "__main__":
    main()
