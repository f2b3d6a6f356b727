import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from conftest import TINY_FIT, run_cli
from diffrep.train.checkpoint_io import atomic_save


def test_fit_saves_a_plain_diffusers_directory_and_a_run_dir(tmp_path):
    out = tmp_path / "run"
    run_cli("dpm", "fit", *TINY_FIT, "--trainer.max_steps", "6", "--optim.schedule", "cosine", "--eval.every_n_steps",
            "3", "--eval.train_size", "60", "--eval.labels", "30", "--eval.test_size", "30",
            "--export_every_n_steps", "3", "--out", str(out))
    unet = UNet2DModel.from_pretrained(out / "model")  # plain diffusers, no diffrep needed
    # the EMA every 3 steps too; the last one is the final model
    assert sorted(p.name for p in out.glob("model-step*")) == ["model-step3", "model-step6"]
    final, last = (load_file(out / d / "diffusion_pytorch_model.safetensors") for d in ("model", "model-step6"))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert UNet2DModel.from_pretrained(out / "model-step3").config.sample_size == 16
    assert unet.config.sample_size == 16 and (out / "model" / "scheduler_config.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["final_loss"] > 0 and metrics["train_seconds"] > 0
    assert "max_steps: 6" in (out / "config.yaml").read_text()
    card = (out / "model" / "README.md").read_text()
    assert "| steps | 6 at batch 8" in card and "diffrep dpm fit" in card and (out / "model" / "samples.png").is_file()
    assert "| recipe | Adam lr 0.001, 1 warm-up steps then cosine decay to 0 x lr; unweighted" in card
    # the probes every 3 steps (and at step 0): both label counts, both poolings, in eval.csv, the card and metrics
    evals = list(csv.DictReader((out / "eval.csv").open()))
    assert sorted({int(row["step"]) for row in evals}) == [0, 3, 6] and len(evals) == 3 * 4
    assert 0 < metrics["eval_mid_block_grid2_30"] <= 1 and "| probe mid_block_gap_60 |" in card
    for name in ("loss.png", "probes.png"):
        assert (out / "model" / name).is_file() and f"]({name})" in card
    assert (out / "samples.png").is_file() and (out / "logs" / "metrics.csv").is_file()
    assert list((out / "logs").glob("events.out.tfevents*"))
    # A second fit into the same directory must not silently overwrite it
    again = run_cli("dpm", "fit", *TINY_FIT, "--out", str(out), check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr


def _final(out):
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    return ckpt["global_step"], ckpt["state_dict"]


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    steps = ["--trainer.max_steps", "60", "--trainer.checkpoint_every_n_steps", "5"]
    run_cli("dpm", "fit", *TINY_FIT, *steps, "--out", str(tmp_path / "straight"))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "diffrep.cli", "dpm", "fit", *TINY_FIT, *steps,
                             "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill, _ = _final(killed)
    assert 0 < step_at_kill < 60, "the run must be killed part-way for this test to mean anything"
    orphan = killed / "checkpoints" / ".last.ckpt.tmp999999"  # as a kill during a checkpoint's write leaves it
    orphan.write_bytes(b"half a checkpoint")

    run_cli("dpm", "fit", *TINY_FIT, *steps, "--out", str(killed), "--resume")
    step_a, weights_a = _final(tmp_path / "straight")
    step_b, weights_b = _final(killed)
    assert step_a == step_b == 60 and not orphan.exists()
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=0, msg=key)
    ema_a = load_file(tmp_path / "straight" / "model" / "diffusion_pytorch_model.safetensors")
    ema_b = load_file(killed / "model" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_save({"step": 2, "x": Boom()}, path)
    assert torch.load(path, weights_only=False) == {"step": 1}


def test_sample_and_info_commands(tmp_path, tiny_teacher_dir):
    run_cli("dpm", "sample", "--teacher", str(tiny_teacher_dir), "--n", "4", "--nrow", "2", "--steps", "2",
            "--out", str(tmp_path))
    assert (tmp_path / "samples.png").is_file()
    short = tmp_path / "short-schedule"  # DDPM sampling runs every step of the schedule: T = 50 keeps it quick
    shutil.copytree(tiny_teacher_dir, short)
    (short / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler",
                                                             "num_train_timesteps": 50}))
    run_cli("dpm", "sample", "--teacher", str(short), "--n", "2", "--sampler", "ddpm", "--out", str(tmp_path / "ddpm"))
    assert (tmp_path / "ddpm" / "samples.png").is_file()
    info = run_cli("teacher", "info", str(tiny_teacher_dir)).stdout
    assert "mid_block.resnets.1.conv2" in info and "32 x 2 x 2" in info and "T = 1000" in info


@pytest.mark.parametrize("args, message", [
    (["teacher", "info", "/no/such/teacher"], "teacher not found: /no/such/teacher"),
    (["dpm", "fit", "--data", "imagefolder:/no/such/folder"], "image folder not found: /no/such/folder"),
    (["dpm", "fit", "--optim.lrr", "1"], "unknown option 'optim.lrr'"),
    (["dpm", "sample", "--sampler", "euler", "--n", "1"], "--sampler must be one of ddim, ddpm, got 'euler'"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    extra = ["--depth", "1"] if args[0] == "teacher" else ["--out", str(tmp_path / "o")]
    proc = run_cli(*args, *extra, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
