"""`diffrep pdae fit`: learn a semantic encoder and a gradient estimator on a frozen pre-trained DPM.

    diffrep pdae fit --data fashion-mnist --out runs/pdae
    diffrep pdae fit --weighting none --out runs/pdae-simple     # the weighting ablation
    diffrep pdae fit --eval.every_n_steps 250 --out runs/pdae    # + OUT/eval.csv for `diffrep pdae compare`
    diffrep pdae fit --init runs/pdae/model --out runs/pdae-more  # a warm start from a saved model

Writes OUT/model/ (model.safetensors: the EMA encoder and estimator; config.json: their config, the teacher and
the data set; read it with `diffrep.pdae.load_autoencoder`), metrics.json (final_loss, final_mse, steps,
train_seconds, parameters; eval_random_xT_mse with eval on), config.yaml, TensorBoard + CSV logs and checkpoints
(--resume). With eval.every_n_steps > 0, OUT/eval.csv records the EMA model's random-x_T MSE against training
time (evaluation.py); with eval.probe_every_n_steps > 0, OUT/z_probe.csv the linear probe of z against an
untrained encoder's (z_probe_eval.py). The evaluations' own time is not in train_seconds.
"""
from __future__ import annotations

import json

import lightning as L
import torch

from diffrep import data as data_lib
from diffrep import shipped
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import backbone
from diffrep.pdae.app import model_directory
from diffrep.pdae.autoencoder import CONFIG, PDAE, chain_steps, load_autoencoder, save_autoencoder
from diffrep.pdae.encoder import SemanticEncoder
from diffrep.pdae.evaluation import RandomXTEvaluation
from diffrep.pdae.evaluation import check as check_eval
from diffrep.pdae.z_probe_eval import ZProbeEvaluation
from diffrep.pdae.module import PDAEModule
from diffrep.pdae.precision import use_precision
from diffrep.pdae.weighting import loss_weights
from diffrep.teacher import Teacher, teacher_from_config
from diffrep.train import fit, prepare_run, write_metrics

DEFAULTS = options.FIT


def _positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")


def resolve(cfg: dict, teacher: Teacher) -> dict:
    """The config with the teacher's resolution, channels and z width filled in, every choice checked."""
    cfg = {**cfg, "data": {**cfg["data"]}}
    backbone.check(teacher)
    cfg["data"] = teacher.data_config(cfg["data"])
    if cfg["z_dim"] is None:
        cfg["z_dim"] = backbone.default_z_dim(teacher)
    _positive_int(cfg["z_dim"], "z_dim")
    _positive_int(cfg["optim"]["batch_size"], "optim.batch_size")
    check_eval(cfg["eval"])
    if "weighting" in cfg:  # the Diff-AE baseline has none; an unknown name or a non-number is a UserError
        loss_weights(teacher.alphas_cumprod, cfg["weighting"], cfg["gamma"], cfg["p2"]["k"], cfg["p2"]["gamma"])
    return cfg


def build_encoder(cfg: dict) -> SemanticEncoder:
    return SemanticEncoder(cfg["data"]["channels"], cfg["data"]["resolution"], cfg["z_dim"],
                           cfg["encoder"]["channels"])


def evaluation_callback(cfg: dict, out) -> RandomXTEvaluation | None:
    """The in-training random-x_T evaluation on a seeded test subset, or None when eval.every_n_steps is 0."""
    options = cfg["eval"]
    if not options["every_n_steps"]:
        return None
    test = data_lib.load(cfg["data"], "test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(cfg["seed"]))[:options["images"]]
    return RandomXTEvaluation(out, test.floats(pick.sort().values), options["every_n_steps"], options["steps"],
                              cfg["seed"])


def z_probe_callback(cfg: dict, out) -> ZProbeEvaluation | None:
    """The in-training linear probe of z on seeded stratified subsets, or None when eval.probe_every_n_steps is 0."""
    options = cfg["eval"]
    if not options["probe_every_n_steps"]:
        return None
    plain = {**cfg["data"], "hflip": False, "labels": 1.0}
    train = data_lib.load({**plain, "train_size": options["probe_train_size"]}, "train")
    test = data_lib.load({**plain, "test_size": options["probe_test_size"]}, "test")
    return ZProbeEvaluation(out, data_lib.check_classes(train, "train"), data_lib.check_classes(test, "test"),
                            options["probe_every_n_steps"], cfg["seed"])


def teacher_name(teacher: Teacher) -> str | None:
    """How a saved model names its teacher: a shipped teacher by name (so it loads anywhere), else its path."""
    return shipped.name_of(teacher.path) or (str(teacher.path) if teacher.path else None)


def warm_start(model: PDAE, path: str, teacher: Teacher) -> int:
    """Load a saved PDAE's EMA weights into `model` (the optimizer starts afresh); the steps it was trained for."""
    directory = model_directory(path)
    saved = load_autoencoder(directory)
    info = json.loads((directory / CONFIG).read_text())
    if saved.config != model.config:
        raise UserError(f"init {directory}: another encoder or estimator than this run's (check z_dim, "
                        f"encoder.channels and the teacher)")
    if info.get("teacher") != teacher_name(teacher):
        raise UserError(f"init {directory} was trained on the teacher {info.get('teacher')}, not {teacher.path}")
    model.load_state_dict(saved.state_dict())
    return chain_steps(info)


def train_and_save(cfg: dict, resume: bool, module: PDAEModule, train: data_lib.ImageSet, what: str,
                   init_steps: int = 0) -> dict:
    """Shared by PDAE and the Diff-AE baseline: train, then save the EMA model and the metrics."""
    out = prepare_run(cfg["out"], cfg, resume)  # after every check, so a bad option leaves no run directory
    params = sum(p.numel() for p in module.model.parameters())
    print(f"training {what} ({params / 1e6:.2f}M trainable parameters, z_dim {cfg['z_dim']}) on {len(train)} "
          f"{cfg['data']['name']} images for {cfg['trainer']['max_steps']} steps -> {out}")
    evaluation, z_probe = evaluation_callback(cfg, out), z_probe_callback(cfg, out)
    trainer = fit(module, cfg["trainer"], out, resume, callbacks=[c for c in (evaluation, z_probe) if c] or None)
    if not trainer.is_global_zero:  # with several devices, one process saves
        return {}
    teacher = module.teacher
    model_dir = save_autoencoder(module.ema.module, out / "model", teacher=teacher_name(teacher),
                                 teacher_flags=backbone.architecture(teacher).get("adm_flags"),
                                 schedule=dict(teacher.scheduler.config), steps=module.global_step,
                                 schedule_precision=cfg["schedule_precision"],
                                 data={"name": cfg["data"]["name"], "root": cfg["data"]["root"]},
                                 **({"init_steps": init_steps} if init_steps else {}))
    metrics = write_metrics(out, {**module.final_metrics(), "steps": module.global_step,
                                  "train_seconds": module.train_seconds, "parameters": params,
                                  "world_size": trainer.world_size,
                                  **({"eval_random_xT_mse": evaluation.last} if evaluation else {}),
                                  **({f"eval_{key}": value for key, value in z_probe.last.items()} if z_probe else {})})
    print(f"saved the EMA model to {model_dir}")
    return metrics


def run(cfg: dict, resume: bool = False) -> dict:
    teacher = use_precision(teacher_from_config(cfg["teacher"]), cfg["schedule_precision"])
    cfg = resolve(cfg, teacher)
    train = data_lib.load(cfg["data"], "train")
    L.seed_everything(cfg["seed"], verbose=False)
    model = PDAE(build_encoder(cfg), backbone.build_estimator(teacher, cfg["z_dim"]))
    init_steps = warm_start(model, cfg["init"], teacher) if cfg["init"] else 0
    weights = loss_weights(teacher.alphas_cumprod, cfg["weighting"], cfg["gamma"], cfg["p2"]["k"], cfg["p2"]["gamma"])
    module = PDAEModule(teacher, model, weights, cfg["optim"], train, cfg["seed"], cfg["data"]["hflip"])
    module.first_step = init_steps
    what = f"PDAE on {teacher.path} ({cfg['weighting']} weighting)"
    if init_steps:
        what += f", from {cfg['init']} ({init_steps} steps)"
    return train_and_save(cfg, resume, module, train, what, init_steps)
