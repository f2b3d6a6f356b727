"""`diffrep quickstart`."""
from __future__ import annotations

from diffrep.options.blocks import TEACHER

QUICKSTART = {
    "teacher": {**TEACHER},  # path null: the shipped teacher (see diffrep teacher info)
    "samples": {"n": 64, "sampler": "ddim", "steps": 50},
    # `diffrep probe` on a subset: every default tap, four timesteps, both inputs, both baselines
    "probe": {"train_size": 2000, "test_size": 1000, "timesteps": "0,50,250,750", "pool": "gap"},
    # `diffrep distill` with the policy, then `diffrep finetune` from a distilled student and from a random one of
    # the same architecture. The student fine-tuned: `pretrained` (a student.safetensors), else the one shipped with
    # the teacher, else this run's short distillation. steps null: 20 when a pre-made model is shown (the live run
    # only shows that the command works), else 100
    "distill": {"steps": None, "batch_size": 64, "labels": 0.01, "pretrained": None},
    "finetune": {"steps": 100, "batch_size": 64, "labels": 0.01, "test_size": 2000},
    # `diffrep pdae fit`, then `pdae reconstruct` and `pdae interpolate` with `ddim_steps` DDIM steps, by the model
    # `pretrained` (a PDAE model folder), else the one shipped with the teacher, else this run's short fit. steps
    # null: 20 when a pre-made model is shown, else 200
    "pdae": {"steps": None, "batch_size": 32, "test_size": 16, "pairs": 3, "ddim_steps": 20, "pretrained": None},
    "seed": 0,
    "out": "out/quickstart",
}
QUICKSTART_RULES = {"samples.n": "int>=1", "samples.sampler": "in:ddim,ddpm", "samples.steps": "int>=1",
                    "probe.train_size": "int>=1", "probe.test_size": "int>=1", "probe.timesteps": "ints>=0",
                    "distill.steps": "int>=1|null", "distill.batch_size": "int>=1", "distill.labels": "fraction",
                    "finetune.steps": "int>=1", "finetune.batch_size": "int>=1", "finetune.labels": "fraction",
                    "finetune.test_size": "int>=1", "pdae.steps": "int>=1|null", "pdae.batch_size": "int>=1",
                    "pdae.test_size": "int>=2", "pdae.pairs": "int>=1", "pdae.ddim_steps": "int>=1", "seed": "int>=0"}
