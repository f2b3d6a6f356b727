"""`diffrep dpm fit`: train a DDPM on a named dataset and save it as a diffusers directory."""
from __future__ import annotations

import time

import lightning as L

from diffrep import data as data_lib
from diffrep.dpm.card import command_line, loss_curve, write_card
from diffrep.dpm.module import DDPMModule
from diffrep.dpm.periodic_export import PeriodicExport
from diffrep.dpm.probe_eval import ProbeEval, check_eval
from diffrep.dpm.sample import sample, save_grid
from diffrep.dpm.weighting import eps_loss_weights
from diffrep.errors import UserError
from diffrep.options import dpm as options
from diffrep.teacher import load_teacher
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.train import fit, prepare_run, write_metrics
from diffrep.train.schedules import check_schedule

DEFAULTS = options.FIT


def unet_config(cfg: dict) -> dict:
    return {**cfg["model"], "sample_size": cfg["data"]["resolution"],
            "in_channels": cfg["data"]["channels"], "out_channels": cfg["data"]["channels"]}


def warm_start(path: str, config: dict):
    """The UNet in `path`, checked to have the architecture `config` describes."""
    unet = load_teacher(path).unet
    differ = [f"{key} {unet.config[key]!r} (here {value!r})" for key, value in config.items()
              if key in unet.config and _plain(unet.config[key]) != _plain(value)]
    if differ:
        raise UserError(f"init {path} has another architecture: {'; '.join(differ)}")
    return unet


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def check(cfg: dict) -> dict:
    """The options that can be checked before any data or model is loaded."""
    optim = cfg["optim"]
    check_schedule(optim["schedule"], optim["final_lr_ratio"])
    eps_loss_weights(ddpm_scheduler(cfg["schedule"]).alphas_cumprod, cfg["loss"]["weighting"],
                     cfg["loss"]["snr_gamma"])
    return {**cfg, "eval": check_eval(cfg["eval"], cfg["schedule"]["num_train_timesteps"])}


def run(cfg: dict, resume: bool = False) -> dict:
    cfg = check(cfg)
    train = data_lib.load(cfg["data"], "train")
    init = warm_start(cfg["init"], unet_config(cfg)) if cfg["init"] else None
    callbacks = []
    out = prepare_run(cfg["out"], cfg, resume)
    if cfg["eval"]["every_n_steps"]:
        e, plain = cfg["eval"], {**cfg["data"], "hflip": False}
        callbacks.append(ProbeEval(e, data_lib.load({**plain, "train_size": e["train_size"]}, "train"),
                                   data_lib.load({**plain, "test_size": e["test_size"]}, "test"), out, cfg["seed"]))
    if cfg["export_every_n_steps"]:
        callbacks.append(PeriodicExport(cfg["export_every_n_steps"], out))
    L.seed_everything(cfg["seed"], verbose=False)
    module = DDPMModule(unet_config(cfg), cfg["schedule"], cfg["optim"], cfg["loss"], train, cfg["seed"],
                        cfg["data"]["hflip"], init)
    params = sum(p.numel() for p in module.unet.parameters())
    print(f"training a {params / 1e6:.2f}M-parameter DDPM on {len(train)} {cfg['data']['name']} images "
          f"for {cfg['trainer']['max_steps']} steps -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume, callbacks)
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
        **{f"eval_{tap}_{pool.replace(':', '')}_{labels}": acc
           for cb in callbacks if isinstance(cb, ProbeEval) for (tap, pool, labels), acc in cb.latest.items()},
    })
    loss_png = loss_curve(out / "logs" / "metrics.csv", out / "loss.png")
    write_card(model_dir, cfg, metrics, grid, command_line(cfg), loss_png, out / "eval.png")
    print(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s (final loss "
          f"{metrics.get('final_loss', float('nan')):.4f}); the EMA model and its card are in {model_dir}, samples "
          f"in {grid}")
    return metrics

