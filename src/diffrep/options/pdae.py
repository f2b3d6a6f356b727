"""`diffrep pdae fit | fit-diffae | reconstruct | interpolate | manipulate | encode | gap | compare`."""
from __future__ import annotations

from diffrep.options.blocks import (APP, APP_DATA, APP_RULES, DATA, DATA_RULES, PDAE_EVAL, PDAE_EVAL_RULES, PROBE,
                                    PROBE_RULES, TEACHER, TRAINER, TRAINER_RULES)

FIT = {
    "teacher": {**TEACHER},  # path null: the shipped teacher (see diffrep teacher info)
    "data": {**DATA, "resolution": None, "channels": None},  # null: the teacher's
    "init": None,               # a saved PDAE model folder of this teacher and architecture to start from (a warm
                                # start: its EMA weights, a fresh optimizer), to continue a run whose checkpoint is lost
    "z_dim": None,              # null: the teacher's time-embedding width, 4 x block_out_channels[0] (512 for the
                                # reference's C=128 DPMs, 128 for the shipped 32 px teacher)
    "encoder": {"channels": None},  # one stride-2 conv per width; null: the reference's widths for the resolution
    "weighting": "pdae",        # pdae: SNR^gamma / (1 + SNR) | none: 1 | p2: 1 / (k + SNR)^gamma
    "gamma": 0.1,               # of the pdae weighting (the reference's)
    "p2": {"k": 1.0, "gamma": 1.0},
    "schedule_precision": "float64",  # float64: abar_t from the betas in float64, as the official code | float32
    "optim": {"lr": 1.0e-4, "batch_size": 64, "ema_decay": 0.999},  # reference: Adam 1e-4, batch 128, EMA 0.9999
    "trainer": {**TRAINER, "max_steps": 5000},
    "eval": {**PDAE_EVAL},      # random-x_T MSE of the EMA model against train_seconds, to OUT/eval.csv
    "seed": 0,
    "out": "runs/pdae",
}
FIT_RULES = {**DATA_RULES, **TRAINER_RULES, **PDAE_EVAL_RULES, "z_dim": "int>=1|null",
             "encoder.channels": "ints>=1|null", "weighting": "in:pdae,none,p2", "gamma": "float>=0",
             "p2.k": "float>=0", "p2.gamma": "float>=0",
             "schedule_precision": "in:float64,float32", "optim.lr": "float>0", "optim.batch_size": "int>=1",
             "optim.ema_decay": "unit", "seed": "int>=0"}

FIT_DIFFAE = {**{k: v for k, v in FIT.items() if k not in ("weighting", "gamma", "p2", "init")},
              "teacher": {**TEACHER},  # whose architecture and noise schedule to use; its weights are not read
              "out": "runs/diffae"}
FIT_DIFFAE_RULES = {k: v for k, v in FIT_RULES.items() if k.split(".")[0] in FIT_DIFFAE}

RECONSTRUCT = {**APP,
               "data": {**APP_DATA, "test_size": 100},  # a seeded, class-stratified test subset
               "encode_steps": 100,          # DDIM inversion steps (reference: 1000); null: as many as each decode
               "decode_steps": [10, 20, 50, 100],
               "random_steps": 100,          # DDIM steps from random x_T, with z and unconditional (reference: 100)
               "grid_images": 16,            # columns of reconstruct.png
               "out": "runs/pdae-reconstruct"}
RECONSTRUCT_RULES = {**APP_RULES, "encode_steps": "int>=1|null", "decode_steps": "ints>=1", "random_steps": "int>=1",
                     "grid_images": "int>=1"}

INTERPOLATE = {**APP,
               "pairs": 4,            # seeded pairs of test images, one grid row each
               "frames": 11,          # alphas 0, 0.1, ..., 1 (the reference's)
               "encode_steps": 100,   # DDIM inversion steps (reference: 100)
               "decode_steps": 100,   # DDIM decoding steps (reference: 100)
               "out": "runs/pdae-interpolate"}
INTERPOLATE_RULES = {**APP_RULES, "pairs": "int>=1", "frames": "int>=2", "encode_steps": "int>=1",
                     "decode_steps": "int>=1"}

MANIPULATE = {**APP,
              "target": 1,           # class index or name (Fashion-MNIST 1: Trouser) to move the images towards
              "images": 8,           # test images (not of the target class), one grid row each
              "scales": [-0.5, -0.3, 0.0, 0.3, 0.5, 1.0],  # s; the reference shows -0.3, -0.1, 0.1, 0.3 at 128 px
              "encode_steps": 100,   # DDIM inversion steps (reference: 500)
              "decode_steps": 100,   # DDIM decoding steps (reference: 200)
              "probe": {**PROBE},
              "out": "runs/pdae-manipulate"}
MANIPULATE_RULES = {**APP_RULES, **PROBE_RULES, "target": "class", "images": "int>=1", "scales": "floats",
                    "encode_steps": "int>=1", "decode_steps": "int>=1"}

ENCODE = {**APP,
          "batch_size": 500,
          "probe": {**PROBE},
          "out": "runs/pdae-encode"}
ENCODE_RULES = {**APP_RULES, **PROBE_RULES}

GAP = {**APP,
       "data": {**APP_DATA, "test_size": 200},
       "timesteps": 50,   # a count (evenly spaced over 0..T-1) or a list of timesteps; the reference: all T
       "out": "runs/pdae-gap"}
GAP_RULES = {**APP_RULES, "timesteps": "ints>=0"}

COMPARE = {"runs": [],          # run directories of `pdae fit` / `pdae fit-diffae` with eval on (or eval.csv files)
           "target_mse": None,  # null: the worst final MSE among the runs
           "out": "runs/pdae-compare"}
COMPARE_RULES = {"target_mse": "float>0|null"}
