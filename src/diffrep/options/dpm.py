"""`diffrep dpm fit` and `diffrep dpm sample`."""
from __future__ import annotations

from diffrep.options.blocks import (DATA, DATA_RULES, DPM_EVAL, DPM_EVAL_RULES, SCHEDULE, SCHEDULE_RULES, TEACHER,
                                    TRAINER, TRAINER_RULES)

FIT = {
    "data": {**DATA},
    "model": {  # diffusers UNet2DModel options; sample_size and channels come from data
        "block_out_channels": [32, 64, 128, 128],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "attention_head_dim": 32,
        "norm_num_groups": 16,
        "dropout": 0.0,
    },
    "init": None,  # a diffusers UNet2DModel directory of the same architecture to start from (a warm start)
    "schedule": {**SCHEDULE},
    "optim": {"lr": 2.0e-4, "warmup_steps": 200, "batch_size": 32, "ema_decay": 0.999,
              "schedule": "constant",    # after the warm-up: constant | cosine | linear decay
              "final_lr_ratio": 0.0},    # cosine / linear: the rate at trainer.max_steps, as a fraction of lr
    "loss": {"weighting": "none",        # none | min_snr (Min-SNR-gamma, Hang et al. 2023)
             "snr_gamma": 5.0},
    "eval": {**DPM_EVAL},                # linear probes of the EMA features every eval.every_n_steps steps
    "trainer": {**TRAINER, "max_steps": 5000, "gradient_clip_val": 1.0},
    "sample": {"n": 64, "sampler": "ddim", "steps": 100},
    "export_every_n_steps": 0,           # N: the EMA model every N steps as OUT/model-stepS too; 0: at the end only
    "seed": 0,
    "out": "runs/dpm",
}
FIT_RULES = {**DATA_RULES, **SCHEDULE_RULES, **DPM_EVAL_RULES, **TRAINER_RULES,
             "model.block_out_channels": "ints>=1", "model.layers_per_block": "int>=1",
             "model.attention_head_dim": "int>=1", "model.norm_num_groups": "int>=1", "model.dropout": "float>=0",
             "optim.lr": "float>0", "optim.warmup_steps": "int>=0", "optim.batch_size": "int>=1",
             "optim.ema_decay": "unit", "optim.schedule": "in:constant,cosine,linear", "optim.final_lr_ratio": "unit",
             "loss.weighting": "in:none,min_snr", "loss.snr_gamma": "float>0",
             "sample.n": "int>=1", "sample.sampler": "in:ddim,ddpm", "sample.steps": "int>=1",
             "export_every_n_steps": "int>=0", "seed": "int>=0"}

SAMPLE = {
    "teacher": {**TEACHER},  # path null: the shipped teacher (see diffrep teacher info)
    "n": 64,            # number of images
    "nrow": 8,          # images per grid row
    "sampler": "ddim",  # ddim | ddpm
    "steps": 100,       # DDIM steps (DDPM always runs all T steps)
    "seed": 0,
    "out": "runs/samples",
}
SAMPLE_RULES = {"n": "int>=1", "nrow": "int>=1", "sampler": "in:ddim,ddpm", "steps": "int>=1", "seed": "int>=0"}
