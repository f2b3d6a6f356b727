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
from diffrep.options import repfusion as options
from diffrep.repfusion.module import DistillModule
from diffrep.repfusion.timesteps import parse_selection
from diffrep.tasks import STUDENTS, build_student, default_tap, save_backbone
from diffrep.tasks.probe_student import probe_student
from diffrep.teacher import INPUT_MODES, Teacher, teacher_from_config
from diffrep.train import fit, prepare_run, write_metrics

DEFAULTS = options.DISTILL
LOSSES = ("hint", "at", "rkd")
BASELINES = ("none", "moving_average")


def student_probes(cfg: dict, module: DistillModule, train: data_lib.ImageSet, test: data_lib.ImageSet | None,
                   teacher: Teacher) -> dict:
    """Linear probes of the distilled (EMA) student and of a random one (seeded) on the same features."""
    p, s = cfg["probe"], cfg["student"]
    if test is None:
        return {}
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
    """The reference's tap, the last conv of the residual branch of the mid block's last resnet, else the
    teacher's default tap (mid_block or its equivalent)."""
    convs = [name for name in teacher.taps if re.fullmatch(r"mid_block\.resnets\.\d+\.conv2", name)]
    if convs:
        return max(convs, key=lambda name: int(name.split(".")[2]))
    return teacher.default_tap  # mid_block, or its equivalent in other families


def parse_hints(value, teacher: Teacher) -> list[str]:
    """extra_hints as a list of "TEACHER_TAP:STUDENT_TAP", the teacher taps checked (student taps are checked when
    the student is built)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    pairs = []
    for item in (str(item).strip() for item in items):
        teacher_tap, colon, student_tap = item.partition(":")
        if not colon or not teacher_tap or not student_tap:
            raise UserError(f"bad extra hint '{item}' (TEACHER_TAP:STUDENT_TAP, e.g. down_blocks.2:layer3)")
        pairs.append(f"{teacher.check_taps([teacher_tap])[0]}:{student_tap}")
    return pairs


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
    cfg["extra_hints"] = parse_hints(cfg.get("extra_hints"), teacher)
    _check(cfg["loss"]["name"], LOSSES, "loss.name")
    _check(cfg["policy"]["baseline"], BASELINES, "policy.baseline")
    parse_selection(cfg["timesteps"], teacher.num_timesteps)
    if cfg["policy"]["reward_holdout"] >= 1:
        raise UserError(f"policy.reward_holdout must be below 1 (the head needs images), got "
                        f"{cfg['policy']['reward_holdout']}")
    if cfg["policy"]["reward_holdout"] and cfg["data"]["labels"] in (None, 1, 1.0):
        raise UserError("policy.reward_holdout needs data.labels below 1: with every label the head and the policy "
                        "learn from the distillation batch")
    for name, value in (("optim.batch_size", cfg["optim"]["batch_size"]), ("epochs", cfg["epochs"] or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    for key, value in cfg["probe"].items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"probe.{key} must be a count (0: no probe), got {value!r}")
    return cfg


def run(cfg: dict, resume: bool = False) -> dict:
    teacher = teacher_from_config(cfg["teacher"])
    cfg = resolve(cfg, teacher)
    train = data_lib.load(cfg["data"], "train")
    if len(train) == 0:
        raise UserError("the train split is empty")
    probing = cfg["probe"]["train_size"] and cfg["probe"]["test_size"]
    test = data_lib.check_classes(data_lib.load(cfg["data"], "test"), "test") if probing else None  # read up front:
    if probing or cfg["timesteps"] == "policy":  # a bad test image must stop the run before it trains
        data_lib.check_classes(train, "train")
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
    labelled_note = "" if labelled is None else f" ({len(labelled)} labelled for the policy)"
    if module.reward_data is not None:
        labelled_note = (f" ({len(module.labelled_data)} labelled for the reward head, {len(module.reward_data)} for "
                         f"the policy's reward)")
    extra = "".join(f" and {pair.split(':')[0]} into {pair.split(':')[1]}" for pair in cfg["extra_hints"])
    print(f"distilling {cfg['teacher_tap']} of {teacher.path} ({cfg['teacher_input']} input, timesteps "
          f"{parse_selection(cfg['timesteps'], teacher.num_timesteps)}) into {s['arch']}.{s['tap']}{extra} with "
          f"{cfg['loss']['name']} on {len(train)} {cfg['data']['name']} images"
          + labelled_note
          + f" for {cfg['trainer']['max_steps']} steps ({cfg['trainer']['max_steps'] / steps_per_epoch:.2g} epochs)"
          f" -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume)
    if not trainer.is_global_zero:  # with several devices, one process exports
        return {}
    path = save_backbone(module.ema.module, out / "student.safetensors", s["arch"], teacher.channels, s["stem"])
    plots = module.history.write(out)
    probes = student_probes(cfg, module, train, test, teacher)
    metrics = write_metrics(out, {**module.final_metrics(), "epochs": module.global_step / steps_per_epoch,
                                  "world_size": trainer.world_size, **probes})
    print(f"saved the EMA student backbone to {path}" + (f", timestep distribution to {plots[-1]}" if plots else ""))
    return metrics
