"""`diffrep distill`: RepFusion, a frozen teacher's feature distilled into a student (reference sections 1-5).

    diffrep distill --data fashion-mnist --timesteps policy --out runs/distill
    diffrep finetune --init runs/distill/student.safetensors --data.labels 0.01 --out runs/finetune

Writes OUT/student.safetensors (the EMA student's backbone, loadable into the same torchvision model and by
`diffrep finetune --init`), OUT/timesteps.png and timesteps.csv (the timestep distribution per epoch),
metrics.json (the last values of every loss term, the policy entropy, t_mean/t_mode, time, and
student_probe_accuracy / random_student_probe_accuracy: a linear probe of the frozen student's pooled features
next to a random student's, see diffrep.tasks.probe_student), config.yaml,
TensorBoard + CSV logs (every term, the policy entropy and beta, the reward, lr) and checkpoints (--resume).
"""
from __future__ import annotations

import re

import lightning as L
import torch

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.repfusion.module import DistillModule
from diffrep.repfusion.timesteps import parse_selection
from diffrep.tasks import STUDENTS, build_student, default_tap, save_backbone
from diffrep.tasks.probe_student import probe_student
from diffrep.teacher import INPUT_MODES, Teacher, load_teacher
from diffrep.train import TRAINER_DEFAULTS, fit, prepare_run, write_metrics

DEFAULTS = {
    "teacher": None,              # diffusers UNet2DModel directory; default: the shipped teacher
    "teacher_tap": None,          # null: mid_block.resnets.<last>.conv2 (the reference's tap), else mid_block
    "teacher_input": "clean",     # clean: x0 with the embedding of t (the official code) | noised: x_t ~ q(x_t|x0)
    "student": {"arch": "resnet18", "stem": "small", "tap": None},  # tap null: the last stage
    "loss": {"name": "hint",      # hint | at | rkd
             "mode": "pooled",    # hint: pooled (the RL classes) | dense (bilinear resize, the CelebA classes)
             "distance": "mse",   # hint: mse | l1 | l2_norm
             "weight": None},     # null: the reference's kd_weight (hint 1, at 1000, rkd 1)
    "timesteps": "policy",        # policy | fixed:T | uniform:LO-HI (both ends included)
    "policy": {
        "actions": None,          # null: one action per teacher timestep (the reference); N: an even grid of N
        "entropy": 0.1,           # beta0 of the entropy bonus, decaying linearly to 0 ...
        "entropy_end_epoch": None,  # ... at this epoch; null: half the run (the reference: 100 of 200 epochs)
        "baseline": "none",       # none (the reference) | moving_average (variance reduction, a deviation)
        "baseline_momentum": 0.9,
        "batch_size": None,       # labelled batch for head and policy when data.labels < 1; null: optim.batch_size
    },
    "data": {**data_lib.DATA_DEFAULTS, "resolution": None, "channels": None},  # null: the teacher's
    "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1.0e-4, "batch_size": 128,
              "milestones": [0.5, 0.75],  # lr x0.1 at these fractions of the run (reference: epochs 100, 150 of 200)
              "ema_decay": 0.999},
    "epochs": None,               # when set: trainer.max_steps = epochs * (train images // batch_size)
    "trainer": {**TRAINER_DEFAULTS, "max_steps": 2000},
    # after training, linear probes of the EMA student's and a random student's pooled tap features, on these
    # many train / test images (a diagnostic: labels beyond data.labels are read only here); 0: skip
    "probe": {"train_size": 10000, "test_size": 2000},
    "seed": 0,
    "out": "runs/distill",
}
LOSSES = ("hint", "at", "rkd")
BASELINES = ("none", "moving_average")


def student_probes(cfg: dict, module: DistillModule, train: data_lib.ImageSet, teacher: Teacher) -> dict:
    """Linear probes of the distilled (EMA) student and of a random one (seeded) on the same features."""
    p, s = cfg["probe"], cfg["student"]
    if not p["train_size"] or not p["test_size"]:
        return {}
    test = data_lib.load(cfg["data"], "test")
    train, test = (d.subset(data_lib.stratified_subset(d.labels, min(n, len(d)), cfg["seed"]))
                   for d, n in ((train, p["train_size"]), (test, p["test_size"])))
    torch.manual_seed(cfg["seed"])
    random_student = build_student(s["arch"], teacher.channels, s["stem"])
    accuracy = {name: probe_student(model, s["tap"], train, test)
                for name, model in (("student", module.ema.module), ("random_student", random_student))}
    print(f"linear probe of the pooled {s['tap']} features ({len(train)} train / {len(test)} test images): "
          f"distilled student {accuracy['student']:.2%}, random student {accuracy['random_student']:.2%}")
    return {f"{name}_probe_accuracy": value for name, value in accuracy.items()}


def default_teacher_tap(teacher: Teacher) -> str:
    """The reference's tap, the last conv of the residual branch of the mid block's last resnet, else mid_block."""
    convs = [name for name in teacher.taps if re.fullmatch(r"mid_block\.resnets\.\d+\.conv2", name)]
    if convs:
        return max(convs, key=lambda name: int(name.split(".")[2]))
    if "mid_block" in teacher.taps:
        return "mid_block"
    raise UserError("this teacher has no mid_block; pass --teacher_tap (see `diffrep teacher info`)")


def _check(value, valid, name):
    if value not in valid:
        raise UserError(f"unknown {name} '{value}' (valid: {', '.join(map(str, valid))})")


def resolve(cfg: dict, teacher: Teacher) -> dict:
    """The config with the teacher's resolution/channels and the default taps filled in, every choice checked."""
    cfg = {**cfg, **{k: {**cfg[k]} for k in ("data", "student", "loss", "policy", "optim", "trainer")}}
    cfg["data"] = teacher.data_config(cfg["data"])
    cfg["teacher_tap"] = teacher.check_taps([cfg["teacher_tap"] or default_teacher_tap(teacher)])[0]
    _check(cfg["teacher_input"], INPUT_MODES, "teacher_input")
    _check(cfg["student"]["arch"], STUDENTS, "student.arch")
    cfg["student"]["tap"] = cfg["student"]["tap"] or default_tap(cfg["student"]["arch"])
    _check(cfg["loss"]["name"], LOSSES, "loss.name")
    _check(cfg["policy"]["baseline"], BASELINES, "policy.baseline")
    parse_selection(cfg["timesteps"], teacher.num_timesteps)
    for name, value in (("optim.batch_size", cfg["optim"]["batch_size"]), ("epochs", cfg["epochs"] or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    for key, value in cfg["probe"].items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"probe.{key} must be a count (0: no probe), got {value!r}")
    return cfg


def run(cfg: dict, resume: bool = False) -> dict:
    teacher = load_teacher(cfg["teacher"])
    cfg = resolve(cfg, teacher)
    train = data_lib.load(cfg["data"], "train")
    if len(train) == 0:
        raise UserError("the train split is empty")
    batch = min(cfg["optim"]["batch_size"], len(train))
    steps_per_epoch = len(train) // batch
    if cfg["epochs"]:
        cfg["trainer"]["max_steps"] = cfg["epochs"] * steps_per_epoch
    labelled = None
    if cfg["data"]["labels"] not in (None, 1, 1.0):
        labelled = data_lib.labelled(train, cfg["data"]["labels"], cfg["data"]["seed"])
    L.seed_everything(cfg["seed"], verbose=False)
    module = DistillModule(teacher, cfg, train, labelled, steps_per_epoch)
    out = prepare_run(cfg["out"], cfg, resume)  # after every check, so a bad option leaves no run directory
    s = cfg["student"]
    print(f"distilling {cfg['teacher_tap']} of {teacher.path} ({cfg['teacher_input']} input, timesteps "
          f"{parse_selection(cfg['timesteps'], teacher.num_timesteps)}) into {s['arch']}.{s['tap']} with "
          f"{cfg['loss']['name']} on {len(train)} {cfg['data']['name']} images"
          + (f" ({len(labelled)} labelled for the policy)" if labelled is not None else "")
          + f" for {cfg['trainer']['max_steps']} steps ({cfg['trainer']['max_steps'] / steps_per_epoch:.1f} epochs)"
          f" -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume)
    if not trainer.is_global_zero:  # with several devices, one process exports
        return {}
    path = save_backbone(module.ema.module, out / "student.safetensors", s["arch"], teacher.channels, s["stem"])
    plots = module.history.write(out)
    metrics = write_metrics(out, {**module.final_metrics(), "epochs": module.global_step / steps_per_epoch,
                                  "world_size": trainer.world_size, **student_probes(cfg, module, train, teacher)})
    print(f"saved the EMA student backbone to {path}" + (f", timestep distribution to {plots[-1]}" if plots else ""))
    return metrics
