"""`diffrep finetune`: train a student on a labelled (fraction of a) dataset and report its test accuracy.

    diffrep finetune --data digits --init runs/distill/backbone.safetensors --data.labels 0.1 --out runs/ft

Writes OUT/model.safetensors (the whole classifier: torchvision keys, EMA weights when enabled),
OUT/metrics.json (test_accuracy, train_images, steps, train_seconds, ...), config.yaml, logs and checkpoints.
"""
from __future__ import annotations

import time

import lightning as L
from torch import nn

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.tasks.classify import OPTIM_DEFAULTS, ClassifierModule
from diffrep.tasks.students import build_student, load_backbone, save_file_atomic
from diffrep.train import TRAINER_DEFAULTS, fit, prepare_run, write_metrics

TASKS = ("classify",)
LATER_TASKS = ("segment", "landmarks")

DEFAULTS = {
    "task": "classify",        # classify (segment and landmarks are not implemented yet)
    "init": None,              # backbone safetensors (diffrep.tasks.save_backbone); null: random init
    "student": {
        "arch": None,          # resnet18 | resnet50 | mobilenet_v2; null: the init file's, else resnet18
        "stem": None,          # small (CIFAR: 3x3 stride-1 conv, no max-pool) | imagenet; null: the file's, else small
    },
    "data": {**data_lib.DATA_DEFAULTS, "channels": None},  # channels null: the init file's, else 1
    "optim": {**OPTIM_DEFAULTS},
    # When set, overrides trainer.max_steps with epochs * (labelled images // batch_size): an epoch is the
    # training stream's, whose last partial batch is dropped.
    "epochs": None,
    "trainer": {**TRAINER_DEFAULTS, "max_steps": 2000},
    "eval_batch_size": 256,
    "seed": 0,
    "out": "runs/finetune",
}


def resolve_student(cfg: dict) -> tuple[dict, nn.Module | None]:
    """The config with student.arch/stem and data.channels filled in from the init file or the defaults
    (an explicit value that contradicts the file is an error), and the loaded backbone when there is one."""
    cfg = {**cfg, "student": {**cfg["student"]}, "data": {**cfg["data"]}}
    backbone = meta = None
    if cfg["init"] is not None:
        backbone, meta = load_backbone(cfg["init"])
        found = {("student", "arch"): meta["arch"], ("student", "stem"): meta["stem"],
                 ("data", "channels"): meta["in_channels"]}
    else:
        found = {("student", "arch"): "resnet18", ("student", "stem"): "small", ("data", "channels"): 1}
    for (group, key), value in found.items():
        if cfg[group][key] is None:
            cfg[group][key] = value
        elif meta is not None and cfg[group][key] != value:
            raise UserError(f"{group}.{key} is {cfg[group][key]} but the backbone {cfg['init']} has {value}; "
                            f"drop --{group}.{key} to use the file's")
    return cfg, backbone


def check_labels(data: data_lib.ImageSet, split: str, num_classes: int) -> None:
    if len(data) == 0:
        raise UserError(f"the {split} split is empty")
    if data.labels.min() < 0 or data.labels.max() >= num_classes:
        raise UserError(f"{split} labels must lie in 0..{num_classes - 1}, got {int(data.labels.min())}.."
                        f"{int(data.labels.max())}")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def run(cfg: dict, resume: bool = False) -> dict:
    if cfg["task"] in LATER_TASKS:
        raise UserError(f"task '{cfg['task']}' is not implemented yet; valid tasks: {', '.join(TASKS)}")
    if cfg["task"] not in TASKS:
        raise UserError(f"unknown task '{cfg['task']}'; valid tasks: {', '.join(TASKS)}")
    cfg, backbone = resolve_student(cfg)
    batch_size = _positive_int(cfg["optim"]["batch_size"], "optim.batch_size")
    _positive_int(cfg["eval_batch_size"], "eval_batch_size")
    train = data_lib.load(cfg["data"], "train")
    test = data_lib.load(cfg["data"], "test")
    num_classes = len(train.classes)
    labelled = data_lib.labelled(train, cfg["data"]["labels"], cfg["data"]["seed"])
    check_labels(labelled, "train", num_classes)
    check_labels(test, "test", num_classes)
    if cfg["epochs"] is not None:
        steps_per_epoch = len(labelled) // min(batch_size, len(labelled))
        cfg = {**cfg, "trainer": {**cfg["trainer"],
                                  "max_steps": _positive_int(cfg["epochs"], "epochs") * steps_per_epoch}}

    L.seed_everything(cfg["seed"], verbose=False)  # the random init and the fresh head depend on the seed only
    arch, stem, channels = cfg["student"]["arch"], cfg["student"]["stem"], cfg["data"]["channels"]
    student = backbone if backbone is not None else build_student(arch, channels, stem)
    module = ClassifierModule(student, arch, num_classes, cfg["optim"], labelled, cfg["seed"], cfg["data"]["hflip"])
    out = prepare_run(cfg["out"], cfg, resume)  # after every check, so a bad option leaves no run directory
    params = sum(p.numel() for p in module.student.parameters())
    start_from = f"the backbone {cfg['init']}" if backbone is not None else "random init"
    print(f"fine-tuning a {params / 1e6:.2f}M-parameter {arch} ({stem} stem, {start_from}) on {len(labelled)} "
          f"labelled {cfg['data']['name']} images for {cfg['trainer']['max_steps']} steps -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume)
    if not trainer.is_global_zero:  # with several devices, one process evaluates and exports
        return {}

    start = time.perf_counter()
    accuracy = module.test_accuracy(test, cfg["eval_batch_size"])
    save_file_atomic(module.eval_model.state_dict(), out / "model.safetensors",
                     {"arch": arch, "in_channels": str(channels), "stem": stem, "num_classes": str(num_classes),
                      "format": "diffrep-classifier-v1"})
    losses = module.recent_losses
    metrics = write_metrics(out, {
        "test_accuracy": accuracy, "train_images": len(labelled), "test_images": len(test),
        "steps": module.global_step, "train_seconds": module.train_seconds,
        "eval_seconds": time.perf_counter() - start, "parameters": params, "world_size": trainer.world_size,
        **({"final_loss": sum(losses) / len(losses)} if losses else {}),
    })
    print(f"test accuracy {accuracy:.2%} on {len(test)} images: {arch} from {start_from}, {len(labelled)} "
          f"labelled images, {module.global_step} steps in {module.train_seconds:.0f}s -> {out}")
    return metrics
