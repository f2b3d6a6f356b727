"""`diffrep dpm fit`: train a DDPM on a named dataset and save it as a diffusers directory."""
from __future__ import annotations

import time

import lightning as L

from diffrep import data as data_lib
from diffrep.dpm.card import command_line, write_card
from diffrep.dpm.module import DDPMModule
from diffrep.dpm.sample import sample, save_grid
from diffrep.teacher.schedule import SCHEDULE_DEFAULTS
from diffrep.train import TRAINER_DEFAULTS, fit, prepare_run, write_metrics

DEFAULTS = {
    "data": {**data_lib.DATA_DEFAULTS},
    "model": {  # diffusers UNet2DModel options; sample_size and channels come from data
        "block_out_channels": [32, 64, 128, 128],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "attention_head_dim": 32,
        "norm_num_groups": 16,
        "dropout": 0.0,
    },
    "schedule": {**SCHEDULE_DEFAULTS},
    "optim": {"lr": 2.0e-4, "warmup_steps": 200, "batch_size": 32, "ema_decay": 0.999},
    "trainer": {**TRAINER_DEFAULTS, "max_steps": 5000, "gradient_clip_val": 1.0},
    "sample": {"n": 64, "sampler": "ddim", "steps": 100},
    "seed": 0,
    "out": "runs/dpm",
}


def unet_config(cfg: dict) -> dict:
    return {**cfg["model"], "sample_size": cfg["data"]["resolution"],
            "in_channels": cfg["data"]["channels"], "out_channels": cfg["data"]["channels"]}


def run(cfg: dict, resume: bool = False) -> dict:
    train = data_lib.load(cfg["data"], "train")
    out = prepare_run(cfg["out"], cfg, resume)
    L.seed_everything(cfg["seed"], verbose=False)
    module = DDPMModule(unet_config(cfg), cfg["schedule"], cfg["optim"], train, cfg["seed"],
                        cfg["data"]["hflip"])
    params = sum(p.numel() for p in module.unet.parameters())
    print(f"training a {params / 1e6:.2f}M-parameter DDPM on {len(train)} {cfg['data']['name']} images "
          f"for {cfg['trainer']['max_steps']} steps -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume)
    if not trainer.is_global_zero:  # with several devices, one process exports and samples
        return {}
    model_dir = module.export(out / "model")
    start = time.perf_counter()
    grid = save_grid(sample(module.ema.module, module.scheduler, cfg["sample"]["n"], cfg["sample"]["sampler"],
                            cfg["sample"]["steps"], cfg["seed"]), out / "samples.png")
    losses = module.recent_losses
    metrics = write_metrics(out, {
        "steps": module.global_step, "world_size": trainer.world_size, "parameters": params,
        "train_seconds": module.train_seconds, "sample_seconds": time.perf_counter() - start,
        **({"final_loss": sum(losses) / len(losses)} if losses else {}),
    })
    write_card(model_dir, cfg, metrics, grid, command_line(cfg))
    print(f"saved the EMA model and its model card to {model_dir}, samples to {grid}")
    return metrics
