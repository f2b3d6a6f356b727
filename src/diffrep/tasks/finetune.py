"""`diffrep finetune`: train a student on a labelled (fraction of a) dataset and report its test score.

    diffrep finetune --data digits --init runs/distill/backbone.safetensors --data.labels 0.1 --out runs/ft
    diffrep finetune --task segment --init runs/distill/student.safetensors --data.labels 0.1 --out runs/seg
    diffrep finetune --task landmarks --data.labels 0.1 --out runs/landmarks

Tasks: classify (a fresh linear head, test_accuracy), segment (an FPN decoder over the student's multi-scale
features, test_miou; tasks/segment.py) and landmarks (the same decoder to one heatmap per keypoint, test_nme;
tasks/landmarks.py). data.name defaults by task: fashion-mnist for classify, fmnist-scenes for the dense tasks,
which also take celebamask-hq:PATH (segment) or wflw:PATH (landmarks). Dense training batches are augmented
jointly (flip, small affine; tasks/augment.py). The optimiser is SGD (lr 0.1) for classify and segment and AdamW
(lr 2e-3) for landmarks unless optim.name / optim.lr say otherwise.

With --data.val N, N training images outside the labelled ones (or a fraction of the train split) are held out
and scored at the end (val_accuracy | val_miou | val_nme), so that a setting can be picked without the test split.

Writes OUT/model.safetensors (classify: the whole classifier with torchvision keys; dense tasks: `backbone.*`
(torchvision keys, no classification head) and `decoder.*`; EMA weights when enabled), OUT/metrics.json
(test_accuracy | test_miou | test_nme, train_images, steps, train_seconds, ...; with --head_init probe, LP-FT,
also the probe head's own probe_train_accuracy and probe_test_accuracy), for the dense tasks
OUT/overlays.png (test images, ground truth, predictions), config.yaml, logs and checkpoints.
"""
from __future__ import annotations

import json
import time

import lightning as L
import torch
from torch import nn

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.options import tasks as options
from diffrep.tasks.augment import check_augment
from diffrep.tasks.classify import ClassifierModule
from diffrep.tasks.fpn import DENSE_FORMAT
from diffrep.tasks.landmarks import NORMALISERS, LandmarkModule
from diffrep.tasks.overlays import overlay_grid
from diffrep.tasks.segment import SegmentModule
from diffrep.tasks.students import build_student, load_backbone, save_file_atomic
from diffrep.train import fit, prepare_run, write_metrics

TASKS = ("classify", "segment", "landmarks")
DEFAULT_OPTIMIZER = {"classify": "sgd", "segment": "sgd", "landmarks": "adamw"}  # heatmap MSE diverges with sgd 0.1
DEFAULT_DATA = {"classify": "fashion-mnist", "segment": "fmnist-scenes", "landmarks": "fmnist-scenes"}
DENSE_DATA = {"segment": ("fmnist-scenes", "celebamask-hq"), "landmarks": tuple(NORMALISERS)}  # dataset kinds
DENSE_ONLY = ("celebamask-hq", "wflw")  # fmnist-scenes also classifies: each scene's main item

DEFAULTS = options.FINETUNE


def resolve_data(cfg: dict) -> dict:
    """The config with data.name filled in by task; a dataset that cannot serve the task is an error."""
    task, name = cfg["task"], cfg["data"]["name"] or DEFAULT_DATA[cfg["task"]]
    kind = str(name).partition(":")[0]
    if task == "classify" and kind in DENSE_ONLY:
        raise UserError(f"dataset '{name}' is for --task segment or landmarks; classify takes {data_lib.NAMES}")
    if task != "classify" and kind not in DENSE_DATA[task]:
        needs = "masks" if task == "segment" else "landmarks"
        names = ", ".join(k if k == "fmnist-scenes" else f"{k}:PATH" for k in DENSE_DATA[task])
        raise UserError(f"task {task} needs a dataset with {needs}: {names}; got '{name}'")
    return {**cfg, "data": {**cfg["data"], "name": name}}


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
    data_lib.check_classes(data, split)


def check_dense(data: data_lib.DenseSet, split: str, task: str) -> None:
    if len(data) == 0:
        raise UserError(f"the {split} split is empty")
    if task == "segment" and int(data.masks.max()) >= len(data.classes):
        raise UserError(f"{split} masks must hold class ids 0..{len(data.classes) - 1}, got {int(data.masks.max())}")
    if task == "landmarks" and not torch.isfinite(data.keypoints).all():
        raise UserError(f"{split} keypoints must be finite numbers")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _with_epochs(cfg: dict, labelled: int) -> dict:
    """trainer.max_steps from `epochs` when it is set."""
    if cfg["epochs"] is None:
        return cfg
    steps_per_epoch = labelled // min(cfg["optim"]["batch_size"], labelled)
    return {**cfg, "trainer": {**cfg["trainer"], "max_steps": _positive_int(cfg["epochs"], "epochs") * steps_per_epoch}}


def run(cfg: dict, resume: bool = False) -> dict:
    if cfg["task"] not in TASKS:
        raise UserError(f"unknown task '{cfg['task']}'; valid tasks: {', '.join(TASKS)}")
    cfg = resolve_data(cfg)
    cfg = {**cfg, "optim": {**cfg["optim"], "name": cfg["optim"]["name"] or DEFAULT_OPTIMIZER[cfg["task"]]}}
    cfg, backbone = resolve_student(cfg)
    _positive_int(cfg["optim"]["batch_size"], "optim.batch_size")
    _positive_int(cfg["eval_batch_size"], "eval_batch_size")
    return (_classify if cfg["task"] == "classify" else _dense)(cfg, backbone, resume)


def _start(cfg: dict, backbone: nn.Module | None, module, net: nn.Module, labelled: int, resume: bool):
    """Write the run directory (after every check, so a bad option leaves none), say what runs, train."""
    out = prepare_run(cfg["out"], cfg, resume)
    arch, stem = cfg["student"]["arch"], cfg["student"]["stem"]
    params = sum(p.numel() for p in net.parameters())
    start_from = f"the backbone {cfg['init']}" if backbone is not None else "random init"
    head = {"classify": "", "segment": " with an FPN segmentation head", "landmarks": " with an FPN heatmap head"}
    print(f"fine-tuning a {params / 1e6:.2f}M-parameter {arch} ({stem} stem, {start_from}){head[cfg['task']]} on "
          f"{labelled} labelled {cfg['data']['name']} images for {cfg['trainer']['max_steps']} steps -> {out}")
    trainer = fit(module, cfg["trainer"], out, resume)
    return out, trainer, params, start_from


def _common_metrics(module, trainer, labelled: int, test: int, params: int, start: float) -> dict:
    losses = module.recent_losses
    return {"train_images": labelled, "test_images": test, "steps": module.global_step,
            "train_seconds": module.train_seconds, "eval_seconds": time.perf_counter() - start, "parameters": params,
            "world_size": trainer.world_size, **({"final_loss": sum(losses) / len(losses)} if losses else {})}


def _labelled_splits(cfg: dict, load, select, hold_out, check) -> tuple:
    """(cfg with `epochs` resolved, train, test, the labelled part of train, the validation images held out of the
    rest of train or None); `check(data, split, train)` vets each part before anything trains."""
    data = cfg["data"]
    train, test = load(data, "train"), load(data, "test")
    labelled = select(train, data["labels"], data["seed"])
    val = None if data["val"] is None else hold_out(train, data["labels"], data["seed"], data["val"])
    for part, split in ((labelled, "train"), (val, "validation"), (test, "test")):
        if part is not None:
            check(part, split, train)
    return _with_epochs(cfg, len(labelled)), train, test, labelled, val


def _student(cfg: dict, backbone: nn.Module | None) -> nn.Module:
    """The init file's backbone, else a fresh student; seeds first, so the random init and the fresh head or
    decoder built next depend on the seed only."""
    L.seed_everything(cfg["seed"], verbose=False)
    if backbone is not None:
        return backbone
    return build_student(cfg["student"]["arch"], cfg["data"]["channels"], cfg["student"]["stem"])


def _classify(cfg: dict, backbone: nn.Module | None, resume: bool) -> dict:
    cfg, train, test, labelled, val = _labelled_splits(
        cfg, data_lib.load, data_lib.labelled, data_lib.held_out,
        lambda data, split, train: check_labels(data, split, len(train.classes)))
    num_classes = len(train.classes)
    arch, stem, channels = cfg["student"]["arch"], cfg["student"]["stem"], cfg["data"]["channels"]
    module = ClassifierModule(_student(cfg, backbone), arch, num_classes, cfg["optim"], labelled, cfg["seed"],
                              cfg["data"]["hflip"])
    probe = {}
    if cfg["head_init"] == "probe":  # before training; on resume the checkpoint's head replaces it
        probe["probe_train_accuracy"] = module.init_head_from_probe()
        probe["probe_test_accuracy"] = module.test_accuracy(test, cfg["eval_batch_size"])
    out, trainer, params, start_from = _start(cfg, backbone, module, module.student, len(labelled), resume)
    if not trainer.is_global_zero:  # with several devices, one process evaluates and exports
        return {}

    start = time.perf_counter()
    accuracy = module.test_accuracy(test, cfg["eval_batch_size"])
    held = {} if val is None else {"val_accuracy": module.test_accuracy(val, cfg["eval_batch_size"]),
                                   "val_images": len(val)}
    save_file_atomic(module.eval_model.state_dict(), out / "model.safetensors",
                     {"arch": arch, "in_channels": str(channels), "stem": stem, "num_classes": str(num_classes),
                      "format": "diffrep-classifier-v1"})
    metrics = write_metrics(out, {"test_accuracy": accuracy, **held, **probe,
                                  **_common_metrics(module, trainer, len(labelled), len(test), params, start)})
    before = f" (the probe head alone: {probe['probe_test_accuracy']:.2%})" if probe else ""
    validation = f", validation {held['val_accuracy']:.2%} on {len(val)}" if held else ""
    print(f"test accuracy {accuracy:.2%}{before} on {len(test)} images{validation}: {arch} from {start_from}, "
          f"{len(labelled)} labelled images, {module.global_step} steps in {module.train_seconds:.0f}s -> {out}")
    return metrics


def _dense(cfg: dict, backbone: nn.Module | None, resume: bool) -> dict:
    task = cfg["task"]
    if cfg["head_init"] != "random":
        raise UserError(f"head_init {cfg['head_init']} is for --task classify; {task} trains an FPN decoder")
    check_augment(cfg["augment"])
    n_overlays = _non_negative_int(cfg["overlays"], "overlays")
    cfg, train, test, labelled, val = _labelled_splits(cfg, data_lib.load_dense, data_lib.labelled_dense,
                                                       data_lib.held_out_dense,
                                                       lambda data, split, _: check_dense(data, split, task))
    arch, stem, channels = cfg["student"]["arch"], cfg["student"]["stem"], cfg["data"]["channels"]
    student = _student(cfg, backbone)
    common = dict(arch=arch, in_channels=channels, head=cfg["head"], optim=cfg["optim"], augment=cfg["augment"],
                  train_data=labelled, seed=cfg["seed"], hflip=cfg["data"]["hflip"])
    if task == "segment":
        module = SegmentModule(student, out_channels=len(train.classes), **common)
    else:
        module = LandmarkModule(student, out_channels=len(train.keypoint_names), sigma=cfg["head"]["sigma"], **common)
    out, trainer, params, start_from = _start(cfg, backbone, module, module.net, len(labelled), resume)
    if not trainer.is_global_zero:  # with several devices, one process evaluates and exports
        return {}

    start = time.perf_counter()
    batch = cfg["eval_batch_size"]

    def evaluate(split):
        return module.evaluate(split, batch) if task == "segment" else module.evaluate(split, cfg["data"]["name"],
                                                                                       batch)

    scores = evaluate(test)
    if val is not None:
        scores |= {key.replace("test_", "val_"): value for key, value in evaluate(val).items()}
        scores["val_images"] = len(val)
    names = train.classes if task == "segment" else train.keypoint_names
    save_file_atomic(module.eval_model.state_dict(), out / "model.safetensors",
                     {"arch": arch, "in_channels": str(channels), "stem": stem, "task": task,
                      "taps": ",".join(module.net.taps), "width": str(cfg["head"]["width"]),
                      "outputs": json.dumps(names), "format": DENSE_FORMAT})
    if n_overlays:
        shown = test.subset(slice(0, n_overlays))
        pred = module.predict(shown.images, batch)
        if task == "segment":
            overlay_grid(out / "overlays.png", shown.images, truth_masks=shown.masks, pred_masks=pred)
        else:
            overlay_grid(out / "overlays.png", shown.images, truth_points=shown.keypoints, pred_points=pred)
    metrics = write_metrics(out, {**scores,
                                  **_common_metrics(module, trainer, len(labelled), len(test), params, start)})
    key, show = ("miou", "mIoU {:.2%}") if task == "segment" else ("nme", "NME {:.4f}")
    validation = f", validation {show.format(scores['val_' + key])} on {len(val)}" if val is not None else ""
    print(f"test {show.format(scores['test_' + key])} on {len(test)} images{validation}: {arch} from {start_from}, "
          f"{len(labelled)} labelled images, {module.global_step} steps in {module.train_seconds:.0f}s -> {out}")
    return metrics
