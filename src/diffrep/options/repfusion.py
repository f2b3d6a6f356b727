"""`diffrep distill` and `diffrep experiment repfusion`."""
from __future__ import annotations

from diffrep.options.blocks import DATA, DATA_RULES, TEACHER, TRAINER, TRAINER_RULES

STUDENT_RULES = {"student.arch": "in:resnet18,resnet50,mobilenet_v2", "student.stem": "in:small,imagenet"}

DISTILL = {
    "teacher": {**TEACHER},  # path null: the shipped teacher (see diffrep teacher info)
    "teacher_tap": None,          # null: mid_block.resnets.<last>.conv2 (the reference's tap), else mid_block
    "teacher_input": "clean",     # clean: x0 with the embedding of t (the official code) | noised: x_t ~ q(x_t|x0)
    "student": {"arch": "resnet18", "stem": "small", "tap": None},  # tap null: the last stage
    # more TEACHER_TAP:STUDENT_TAP pairs ("down_blocks.2:layer3" or a list), each distilled beside the main pair
    # with the same loss and weight through its own adapter (a multi-tap hint; the reference distils one tap)
    "extra_hints": [],
    "loss": {"name": "hint",      # hint | at | rkd
             "mode": "pooled",    # hint: pooled (the RL classes) | dense (bilinear resize, the CelebA classes)
             "distance": "mse",   # hint: mse | l1 | l2_norm
             "weight": None},     # null: the reference's kd_weight (hint 1, at 1000, rkd 1)
    "timesteps": "policy",        # policy | fixed:T | uniform:LO-HI (both ends included)
    "policy": {
        "actions": None,          # null: one action per teacher timestep (the reference); N: an even grid of N
        "entropy": 0.1,           # beta0 of the entropy bonus, decaying linearly to 0 ...
        "entropy_end_epoch": None,  # ... at this epoch; null: half the run (the reference: 100 of 200 epochs)
        "entropy_decay": "epoch",  # epoch: beta changes once per epoch (the reference's hook) | step: every step
        "baseline": "none",       # none (the reference) | moving_average (variance reduction, a deviation)
        "baseline_momentum": 0.9,
        "lr_ratio": 1.0,          # the policy's rate / optim.lr; 1: one rate for all (the reference), < 1 a deviation
        # with data.labels < 1: this fraction of the labelled images is kept from the reward head and gives the policy
        # its reward (the head's CE on images it never fits); 0: head and reward on the same images (the reference)
        "reward_holdout": 0.0,
        "batch_size": None,       # labelled batch for head and policy when data.labels < 1; null: optim.batch_size
    },
    "data": {**DATA, "resolution": None, "channels": None},  # null: the teacher's
    "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1.0e-4, "batch_size": 128,
              "milestones": [0.5, 0.75],  # lr x0.1 at these fractions of the run (reference: epochs 100, 150 of 200)
              "ema_decay": 0.999},
    "epochs": None,               # when set: trainer.max_steps = epochs * (train images // batch_size)
    "trainer": {**TRAINER, "max_steps": 2000},
    # after training, linear probes of the EMA student's and a random student's pooled tap features, on these
    # many train / test images (a diagnostic: labels beyond data.labels are read only here); 0: skip
    "probe": {"train_size": 10000, "test_size": 2000},
    "seed": 0,
    "out": "runs/distill",
}
DISTILL_RULES = {**DATA_RULES, **TRAINER_RULES, **STUDENT_RULES, "teacher_input": "in:clean,noised",
                 "loss.name": "in:hint,at,rkd", "loss.mode": "in:pooled,dense", "loss.distance": "in:mse,l1,l2_norm",
                 "loss.weight": "float>0|null", "policy.actions": "int>=2|null", "policy.entropy": "float>=0",
                 "policy.entropy_end_epoch": "float>0|null",
                 "policy.entropy_decay": "in:epoch,step", "policy.baseline": "in:none,moving_average",
                 "policy.baseline_momentum": "unit", "policy.lr_ratio": "float>0", "policy.reward_holdout": "unit",
                 "policy.batch_size": "int>=1|null", "optim.lr": "float>0",
                 "optim.momentum": "unit", "optim.nesterov": "bool", "optim.weight_decay": "float>=0",
                 "optim.batch_size": "int>=1", "optim.milestones": "fractions", "optim.ema_decay": "unit",
                 "epochs": "int>=1|null", "probe.train_size": "int>=0", "probe.test_size": "int>=0", "seed": "int>=0"}

EXPERIMENT = {
    "teacher": {**TEACHER},  # path null: the shipped teacher (see diffrep teacher info)
    # shared by every run; root, resolution and channels null: each run's default (distill: the teacher's)
    "data": {"name": "fashion-mnist", "root": None, "resolution": None, "channels": None, "hflip": True,
             "train_size": None, "test_size": None},
    "tasks": ["classify"],           # classify | segment | landmarks (diffrep finetune --task)
    "labels": [0.01, 0.1],           # label fractions for fine-tuning (and for the policy's reward)
    "seeds": [0, 1, 2],
    "distill_per_seed": True,        # false: one distillation (the first seed) shared by every fine-tuning seed
    "variants": [                    # name + distill options (null: random init, no distillation); a variant's
                                     # own `labels` list runs it on those fractions only
        {"name": "random_init", "distill": None},
        {"name": "policy_clean", "distill": {"timesteps": "policy", "teacher_input": "clean"}},
        {"name": "policy_noised", "distill": {"timesteps": "policy", "teacher_input": "noised"}},
        {"name": "uniform", "distill": {"timesteps": "uniform:0-999"}},
        {"name": "best_fixed", "distill": {"timesteps": "fixed:best"}},
    ],
    "distill": {},                   # options for every distillation (see diffrep distill --help)
    "finetune": {},                  # options for every fine-tuning (see diffrep finetune --help)
    # Fine-tune every run at each of `values` of one finetune `option` (e.g. optim.backbone_lr_ratio) and report,
    # per variant, task and label fraction, the value whose mean validation score over the seeds is best; the
    # validation images are finetune.data.val's, held out of the train split. option null: no selection.
    "select": {"option": None, "values": []},
    "best_fixed": {"train_size": 10000, "test_size": 2000, "timesteps": None},  # the probe that picks t
    "out": "runs/experiments/repfusion",
}
EXPERIMENT_RULES = {**{k: v for k, v in DATA_RULES.items() if k.split(".")[1] in EXPERIMENT["data"]},
                    "labels": "fractions", "seeds": "ints>=0", "distill_per_seed": "bool",
                    "best_fixed.train_size": "int>=1", "best_fixed.test_size": "int>=1",
                    "best_fixed.timesteps": "ints>=0|null"}
