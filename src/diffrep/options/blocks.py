"""Option blocks shared by several commands, with their rules (see rules.py)."""
from __future__ import annotations

TEACHER = {
    "path": None,          # a diffusers folder, an ADM .pt, a pipeline folder or an owner/name in the HF cache
    "flags": None,         # ADM checkpoints: the release flags, "--image_size 64 --num_channels 192 ..."
    "preset": None,        # ADM checkpoints: a release's flags by name (adm-imagenet-64, adm-256-uncond, ...)
    "conditioning": None,  # latent UNets: empty-prompt | zeros | an embedding file; DiT: null or a class id
}

DATA = {
    "name": "fashion-mnist",  # fashion-mnist | digits | imagefolder:PATH | cifar10:PATH | fmnist-scenes
    "root": None,             # overrides the dataset's default folder
    "resolution": 32,         # square side the images are padded or resized to
    "channels": 1,            # 1 or 3; converted as needed
    "fit": "auto",            # pad | resize | auto (pad when at least 3/4 of the side, else resize)
    "hflip": True,            # random horizontal flip of training batches
    "train_size": None,       # seeded, stratified subset of the train split (count, or a fraction)
    "test_size": None,        # same for the test split
    "labels": 1.0,            # fraction of each class's labels kept for supervised stages
    "seed": 0,
}
DATA_RULES = {"data.resolution": "int>=1|null", "data.channels": "in:1,3|null", "data.fit": "in:pad,resize,auto",
              "data.hflip": "bool", "data.train_size": "size|null", "data.test_size": "size|null",
              "data.labels": "fraction|null", "data.seed": "int>=0", "data.max_items": "int>=1",
              "data.scene_seed": "int>=0"}

TRAINER = {
    "max_steps": 1000,
    "accelerator": "auto",
    "devices": 1,
    "strategy": "auto",
    "num_nodes": 1,
    "precision": "32-true",
    "gradient_clip_val": None,
    "log_every_n_steps": 25,
    "checkpoint_every_n_steps": 500,
    "progress_bar": True,
}
TRAINER_RULES = {"trainer.max_steps": "int>=1", "trainer.devices": "devices", "trainer.num_nodes": "int>=1",
                 "trainer.gradient_clip_val": "float>0|null", "trainer.log_every_n_steps": "int>=1",
                 "trainer.checkpoint_every_n_steps": "int>=1", "trainer.progress_bar": "bool"}

SCHEDULE = {  # DDPM (Ho et al. 2020): linear betas 1e-4 .. 0.02, T = 1000
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
}
SCHEDULE_RULES = {"schedule.num_train_timesteps": "int>=2", "schedule.beta_start": "float>0",
                  "schedule.beta_end": "float>0", "schedule.beta_schedule": "in:linear,scaled_linear,squaredcos_cap_v2"}

PROBE = {
    "weight_decay": 1.0e-4,  # loss = mean cross-entropy + weight_decay * ||W||_F^2 (bias not penalised)
    "max_iter": 50,          # L-BFGS iterations (strong-Wolfe line search; at most 1.25x as many evaluations)
}
PROBE_RULES = {"probe.weight_decay": "float>=0", "probe.max_iter": "int>=1"}

FINETUNE_OPTIM = {
    "name": "sgd",          # sgd | adamw
    "lr": None,             # peak learning rate, after the warm-up; null: 0.1 for sgd, 2e-3 for adamw
    "momentum": 0.9,        # sgd only
    "nesterov": True,       # sgd only
    "weight_decay": None,   # null: 1e-4 for sgd, 0.05 for adamw
    "batch_size": 128,
    "warmup_steps": 100,    # linear warm-up, then cosine decay to 0 at trainer.max_steps
    "ema_decay": None,      # e.g. 0.999 (RepFusion's CIFAR fine-tuning); null: no EMA
    # the pre-trained backbone's rate as a fraction of lr, while the fresh head (or FPN decoder) keeps lr:
    # discriminative fine-tuning, so that the first steps rewrite less of what distillation put there. 1: the reference
    "backbone_lr_ratio": 1.0,
}

HEAD = {
    "taps": None,   # student taps the FPN reads, shallow to deep (list or comma-separated); null: fpn.DENSE_TAPS
    "width": 64,    # FPN channels
}
SIGMA = 1.5  # landmark heatmaps: the default target standard deviation, in heatmap cells

AUGMENT = {
    "degrees": 10.0,     # rotation, uniform in +-degrees (0: none)
    "scale": 0.1,        # zoom, uniform in 1 +- scale
    "translate": 0.05,   # shift, uniform in +-translate of the side, per axis
}

DENSE = {
    "name": "fmnist-scenes",  # fmnist-scenes | celebamask-hq:PATH | wflw:PATH
    "root": None,             # fmnist-scenes: the Fashion-MNIST folder; others: the dataset folder (or NAME:PATH)
    "resolution": 32,         # square side; fmnist-scenes are drawn on this canvas, the others resized to it
    "channels": 1,            # 1 or 3; converted as needed
    "train_size": None,       # fmnist-scenes: a count or a fraction of 10000 scenes; others: a seeded random subset
    "test_size": None,        # the same for the test split (2000 scenes)
    "labels": 1.0,            # fraction of the train split whose masks / landmarks supervised stages see
    "seed": 0,                # subsets and label fractions
    "max_items": 2,           # fmnist-scenes: at most this many items per scene
    "scene_seed": 0,          # fmnist-scenes: the generator's seed, i.e. the benchmark itself; keep it fixed
}

DPM_EVAL = {
    "every_n_steps": 0,      # 0: no evaluation during training
    "taps": ["mid_block"],   # list or "mid_block,up_blocks.0"
    "t": 10,
    "input": "clean",        # clean | noised
    "pool": "gap,grid:2",
    "train_size": 10000,     # the probes' training images: a stratified subset of the training split
    "labels": 600,           # the few-label probe's images: a stratified subset of those
    "test_size": 2000,
    "batch_size": 256,
}
DPM_EVAL_RULES = {"eval.every_n_steps": "int>=0", "eval.t": "int>=0", "eval.input": "in:clean,noised",
                  "eval.train_size": "int>=1", "eval.labels": "int>=1", "eval.test_size": "int>=1",
                  "eval.batch_size": "int>=1"}

PDAE_EVAL = {"every_n_steps": 0,  # 0: off; N: evaluate every N steps and at the end (OUT/eval.csv)
             "images": 64,        # a fixed, seeded test subset
             "steps": 20,         # DDIM decoding steps from the fixed random x_T
             # a linear probe of z (EMA encoder against an untrained one) every N steps, to OUT/z_probe.csv; 0: off
             "probe_every_n_steps": 0,
             "probe_train_size": 10000,  # stratified train and test subsets for that probe
             "probe_test_size": 2000}
PDAE_EVAL_RULES = {"eval.every_n_steps": "int>=0", "eval.images": "int>=1", "eval.steps": "int>=1",
                   "eval.probe_every_n_steps": "int>=0", "eval.probe_train_size": "int>=1",
                   "eval.probe_test_size": "int>=1"}

APP_DATA = {"name": None,         # null: the data set the model was trained on (else fashion-mnist)
            "root": None, "resolution": None, "channels": None, "fit": "auto",  # null size: the teacher's
            "train_size": None, "test_size": None, "seed": 0}
APP = {
    "model": "runs/pdae/model",  # a saved autoencoder: OUT/model of `pdae fit` or `pdae fit-diffae` (or OUT)
    "teacher": {**TEACHER},      # path null: the teacher named in the model's config.json
    "data": APP_DATA,
    "batch_size": 100,
    "device": "auto",            # auto (cuda when available) | cpu | cuda | cuda:1 ...
    "progress_bar": True,
    "seed": 0,
}
APP_RULES = {**DATA_RULES, "batch_size": "int>=1", "progress_bar": "bool", "seed": "int>=0"}
