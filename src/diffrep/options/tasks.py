"""`diffrep finetune`."""
from __future__ import annotations

from diffrep.options.blocks import AUGMENT, DATA, DATA_RULES, FINETUNE_OPTIM, HEAD, SIGMA, TRAINER, TRAINER_RULES

FINETUNE = {
    "task": "classify",        # classify | segment | landmarks
    "init": None,              # backbone safetensors (diffrep.tasks.save_backbone); null: random init
    "student": {
        "arch": None,          # resnet18 | resnet50 | mobilenet_v2; null: the init file's, else resnet18
        "stem": None,          # small (CIFAR: 3x3 stride-1 conv, no max-pool) | imagenet; null: the file's, else small
    },
    # name null: fashion-mnist for classify, fmnist-scenes for segment / landmarks; channels null: the init
    # file's, else 1. fit: classify only; max_items, scene_seed: fmnist-scenes only (see data.DENSE_DEFAULTS).
    # val: validation images held out of the train split's unlabelled rest (a count, or a fraction of the split),
    # scored at the end (val_accuracy | val_miou | val_nme) to pick settings without the test split; null: none.
    "data": {**DATA, "name": None, "channels": None, "max_items": 2, "scene_seed": 0, "val": None},
    "optim": {**FINETUNE_OPTIM, "name": None},  # name null: adamw for landmarks, else sgd
    # classify: random (the reference) | probe (LP-FT: the head starts as a linear probe of the frozen backbone,
    # fitted on the labelled images; see tasks/probe_head.py)
    "head_init": "random",
    "head": {**HEAD, "sigma": SIGMA},  # segment / landmarks: FPN taps and width; landmarks: target sigma
    "augment": {**AUGMENT},             # segment / landmarks, after the flip (data.hflip)
    "overlays": 16,            # segment / landmarks: test images in OUT/overlays.png (0: none)
    # When set, overrides trainer.max_steps with epochs * (labelled images // batch_size): an epoch is the
    # training stream's, whose last partial batch is dropped.
    "epochs": None,
    "trainer": {**TRAINER, "max_steps": 2000},
    "eval_batch_size": 256,
    "seed": 0,
    "out": "runs/finetune",
}
FINETUNE_RULES = {**DATA_RULES, **TRAINER_RULES, "task": "in:classify,segment,landmarks",
                  "student.arch": "in:resnet18,resnet50,mobilenet_v2|null", "student.stem": "in:small,imagenet|null",
                  "optim.name": "in:sgd,adamw|null", "optim.lr": "float>0|null", "optim.momentum": "unit",
                  "optim.nesterov": "bool", "optim.weight_decay": "float>=0|null", "optim.batch_size": "int>=1",
                  "optim.warmup_steps": "int>=0", "optim.ema_decay": "unit|null",
                  "optim.backbone_lr_ratio": "fraction", "data.val": "size|null", "head_init": "in:random,probe",
                  "head.width": "int>=1", "head.sigma": "float>0", "augment.degrees": "range:0..180",
                  "augment.scale": "range:0..0.9", "augment.translate": "unit", "overlays": "int>=0",
                  "epochs": "int>=1|null", "eval_batch_size": "int>=1", "seed": "int>=0"}
