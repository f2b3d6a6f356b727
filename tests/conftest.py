"""Shared fixtures: a tiny UNet teacher on disk, small image folders, the CLI in this process or a fresh one."""
from __future__ import annotations

import os
import subprocess
import sys
import io
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from diffrep import cli

# at most 2 threads, fewer if OMP_NUM_THREADS says so (two threads on two busy cores run ~50x slower)
torch.set_num_threads(min(int(os.environ.get("OMP_NUM_THREADS", 2)), 2, os.cpu_count() or 1))

TINY_UNET = dict(
    sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 16, 32, 32), layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8, attention_head_dim=8,
)
TINY_FIT = ["--data.train_size", "256", "--data.resolution", "16", "--model.block_out_channels", "[16,16,32,32]",
            "--model.norm_num_groups", "8", "--model.attention_head_dim", "8", "--optim.batch_size", "8",
            "--optim.warmup_steps", "1", "--optim.lr", "1e-3", "--sample.n", "4", "--sample.steps", "2",
            "--trainer.log_every_n_steps", "2", "--trainer.progress_bar", "false"]


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny UNet2DModel saved as a diffusers directory (no scheduler config)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher")
    UNet2DModel(**TINY_UNET).save_pretrained(path, safe_serialization=True)
    return path


def run_cli(*args: str, check: bool = True, fresh: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run `diffrep ARGS` through `diffrep.cli.main`, its stdout and stderr captured like a process's. In this
    process by default: a fresh interpreter would spend most of a small test importing torch, diffusers and
    Lightning again. fresh=True runs `python -m diffrep.cli` as a user would, where the console is what a test
    checks (warnings are then not silenced by anything of pytest's or of earlier tests)."""
    if fresh or kwargs:
        proc = subprocess.run([sys.executable, "-m", "diffrep.cli", *args], capture_output=True, text=True,
                              env=dict(os.environ), **kwargs)
    else:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(list(args))
        proc = subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"diffrep {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@contextmanager
def killed_at_step(monkeypatch, module_cls, step: int = 3):
    """Within the block, module_cls.training_step raises RuntimeError("killed") at `step` (a crash after the
    previous checkpoint), and the block expects that error; afterwards the real training_step is back."""
    real = module_cls.training_step

    def crash(module, *args):
        if module.global_step == step:
            raise RuntimeError("killed")
        return real(module, *args)

    monkeypatch.setattr(module_cls, "training_step", crash)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            yield
    finally:
        monkeypatch.setattr(module_cls, "training_step", real)
