import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import killed_at_step, run_cli
from diffrep import cli
from diffrep.errors import UserError
from diffrep import config as config_lib
from diffrep import data as data_lib
from diffrep import run_dir
from diffrep.repfusion import distill, experiment
from diffrep.repfusion.module import DistillModule, split_for_reward
from diffrep.teacher import load_teacher

# torchvision's stem keeps the student cheap on 16 x 16 images (the small stem is tested in test_tasks)
TINY_DISTILL = ["--data", "digits", "--data.train_size", "96", "--data.test_size", "32", "--optim.batch_size", "16",
                "--student.stem", "imagenet", "--trainer.log_every_n_steps", "1", "--trainer.progress_bar", "false"]


def tiny_cfg(teacher_dir, out, **overrides):
    args = [a for pair in overrides.items() for a in (f"--{pair[0]}", str(pair[1]))]
    cfg = config_lib.resolve(distill.DEFAULTS, None, [*TINY_DISTILL[2:], *args])
    return {**cfg, "teacher": str(teacher_dir), "out": str(out), "data": {**cfg["data"], "name": "digits"}}


def test_distill_with_the_policy_then_finetune_from_the_student(tiny_teacher_dir, tmp_path):
    out = tmp_path / "distill"
    run_cli("distill", "--teacher", str(tiny_teacher_dir), *TINY_DISTILL, "--data.labels", "0.5",
            "--policy.baseline", "moving_average", "--trainer.max_steps", "6", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("loss_feat", "loss_head", "loss_pg", "policy_entropy", "policy_beta", "t_mean", "t_mode",
                "steps", "train_seconds"):
        assert key in metrics, key
    assert metrics["steps"] == 6 and 0 <= metrics["t_mode"] < 1000
    assert 0 < metrics["student_probe_accuracy"] <= 1 and 0 < metrics["random_student_probe_accuracy"] <= 1
    assert metrics["policy_entropy"] == pytest.approx(6.9, abs=0.1)  # a fresh policy is near uniform: log 1000
    assert (out / "timesteps.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "timesteps.csv").open()))
    assert sum(float(rows[0][str(t)]) for t in range(1000)) == pytest.approx(1.0, abs=1e-4)
    logged = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert {"loss/hint", "loss/pg", "policy/entropy", "t/mean"} <= set(logged[0])
    # the entropy weight changes once per epoch, as the reference's hook: all 6 steps are in epoch 0
    assert [float(row["policy/beta"]) for row in logged if row.get("policy/beta")] == pytest.approx([0.1] * 6)
    assert not any(key.startswith(("head.", "policy.", "distill.")) for key in load_file(out / "student.safetensors"))

    ft = tmp_path / "finetune"
    run_cli("finetune", "--init", str(out / "student.safetensors"), "--data", "digits", "--data.resolution", "16",
            "--data.train_size", "96", "--data.test_size", "32", "--optim.batch_size", "16",
            "--trainer.max_steps", "2", "--trainer.progress_bar", "false", "--out", str(ft))
    assert 0 <= json.loads((ft / "metrics.json").read_text())["test_accuracy"] <= 1


@pytest.mark.parametrize("loss", ["at", "rkd"])
def test_fixed_and_uniform_timesteps_with_other_losses(tiny_teacher_dir, tmp_path, loss):
    timesteps = "fixed:7" if loss == "at" else "uniform:3-5"
    metrics = distill.run(tiny_cfg(tiny_teacher_dir, tmp_path, timesteps=timesteps, **{
        "loss.name": loss, "trainer.max_steps": 2, "teacher_input": "noised"}))
    assert f"loss_{loss}" in metrics and "loss_pg" not in metrics
    assert metrics["t_mode"] == 7 if loss == "at" else 3 <= metrics["t_mean"] <= 5


def test_a_crashed_run_resumes_to_the_same_student(tiny_teacher_dir, tmp_path, monkeypatch):
    options = {"trainer.checkpoint_every_n_steps": 2, "data.labels": 0.5, "trainer.max_steps": 4,
               "policy.baseline": "moving_average", "optim.ema_decay": 0.5}
    distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "straight", **options))
    with killed_at_step(monkeypatch, DistillModule):
        distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "resumed", **options))
    distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "resumed", **options), resume=True)
    straight, resumed = (load_file(tmp_path / d / "student.safetensors") for d in ("straight", "resumed"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "resumed"))
    assert a["t_mean"] == b["t_mean"] and a["steps"] == b["steps"] == 4


def test_policy_lr_ratio_gives_the_policy_its_own_slower_rate(tiny_teacher_dir, tmp_path):
    distill.run(tiny_cfg(tiny_teacher_dir, tmp_path, **{"policy.lr_ratio": 0.01, "trainer.max_steps": 2,
                                                        "optim.milestones": "[]"}))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    student, policy = ckpt["optimizer_states"][0]["param_groups"]
    assert student["lr"] == pytest.approx(0.1) and policy["lr"] == pytest.approx(0.001)
    policy_params = [k for k in ckpt["state_dict"] if k.startswith("policy.")]
    assert len(policy["params"]) == len(policy_params) > 0


def test_reward_holdout_rewards_the_policy_on_images_the_head_never_fits(tiny_teacher_dir, tmp_path, capsys):
    labelled = data_lib.ImageSet(torch.zeros(40, 1, 8, 8, dtype=torch.uint8), torch.arange(40) % 4, list("abcd"))
    labelled.images[:, 0, 0, 0] = torch.arange(40, dtype=torch.uint8)  # each image tells which one it is
    head, reward = split_for_reward(labelled, 0.25, seed=0)
    assert len(head) == 30 and sorted(torch.bincount(reward.labels).tolist()) == [2, 2, 3, 3]  # stratified
    assert not set(head.images[:, 0, 0, 0].tolist()) & set(reward.images[:, 0, 0, 0].tolist())

    metrics = distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "holdout", **{
        "data.labels": 0.5, "policy.reward_holdout": 0.25, "trainer.max_steps": 3}))
    assert "(36 labelled for the reward head, 12 for the policy's reward)" in capsys.readouterr().out
    # the reference's reward is minus the head's own training CE; held out, it is the CE on other images
    assert metrics["policy_reward"] != pytest.approx(-metrics["loss_head"])
    reference = distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "reference", **{
        "data.labels": 0.5, "trainer.max_steps": 3}))
    assert reference["policy_reward"] == pytest.approx(-reference["loss_head"])
    with pytest.raises(UserError, match="policy.reward_holdout needs data.labels below 1"):
        distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "all", **{"policy.reward_holdout": 0.5}))


def test_a_second_process_in_a_run_folder_in_training_stops_with_one_line(tiny_teacher_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with run_dir.locked(out):  # this process stands for the run still training there
        proc = subprocess.run([sys.executable, "-m", "diffrep.cli", "distill", "--teacher", str(tiny_teacher_dir),
                               *TINY_DISTILL, "--trainer.max_steps", "2", "--resume", "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == (
        f"diffrep: error: {out} is in use by another diffrep process; wait for it to end or stop it, or choose "
        f"another --out\n"), proc.stderr[-2000:]
    assert sorted(out.iterdir()) == []  # its folder untouched: no config, no checkpoint, no FAILED marker


def test_default_teacher_tap_is_the_reference_one(tiny_teacher_dir):
    assert distill.default_teacher_tap(load_teacher(tiny_teacher_dir)) == "mid_block.resnets.1.conv2"


@pytest.mark.parametrize("option, value, message", [
    ("--teacher_tap", "mid_blok", "unknown tap 'mid_blok'"),
    ("--timesteps", "fixed:5000", "fixed:5000"),
    ("--loss.name", "kl", "--loss.name must be one of hint, at, rkd, got 'kl'"),
    ("--student.arch", "vgg", "--student.arch must be one of resnet18, resnet50, mobilenet_v2, got 'vgg'"),
    ("--data.resolution", "32", "data.resolution is 32 but the teacher expects 16"),
])
def test_bad_options_are_one_line_errors(tiny_teacher_dir, tmp_path, capsys, option, value, message):
    code = cli.main(["distill", "--teacher", str(tiny_teacher_dir), *TINY_DISTILL, option, value,
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_experiment_tabulates_every_variant_and_resumes(tiny_teacher_dir, tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text(f"""
teacher: {tiny_teacher_dir}
data: {{name: digits, train_size: 96, test_size: 32}}
labels: [0.5, 1.0]
seeds: [0, 1]
variants:
  - {{name: random_init, distill: null}}
  - {{name: policy_clean, distill: {{timesteps: policy}}, labels: [0.5]}}
  - {{name: best_fixed, distill: {{timesteps: "fixed:best"}}, labels: [1.0]}}
distill: {{student: {{stem: imagenet}}, optim: {{batch_size: 16}}, trainer: {{max_steps: 2, progress_bar: false}}}}
finetune: {{data: {{resolution: 16}}, optim: {{batch_size: 16}}, trainer: {{max_steps: 2, progress_bar: false}}}}
best_fixed: {{train_size: 64, test_size: 32, timesteps: "0,500"}}
out: {tmp_path / "exp"}
""")
    first = run_cli("experiment", "repfusion", "--config", str(config))
    out = tmp_path / "exp"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["variant"], r["labels"], r["seed"]) for r in rows] == [
        (v, f, s) for v, fractions in (("random_init", ("0.5", "1.0")), ("policy_clean", ("0.5",)),
                                       ("best_fixed", ("1.0",))) for f in fractions for s in ("0", "1")]
    assert json.loads((out / "best_fixed_t.json").read_text())["t"] in (0, 500)
    table = (out / "results.md").read_text()
    assert "| policy_clean | " in table and "| best_fixed | - | " in table and (out / "results.png").is_file()
    assert "4 distillations and 8 fine-tunings" in first.stdout
    distilled = (out / "distill_metrics.md").read_text()
    assert "| policy_clean/labels0.5-seed0 | " in distilled and "| best_fixed/seed0 | " in distilled
    again = run_cli("experiment", "repfusion", "--config", str(config))
    assert again.stdout.count(": done") == 4 and "fine-tuning a" not in again.stdout


def test_experiment_on_the_dense_tasks_shares_one_distillation_on_scenes(tiny_teacher_dir, tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text(f"""
teacher: {tiny_teacher_dir}
data: {{name: fmnist-scenes, train_size: 64, test_size: 16}}
tasks: [segment, landmarks]
labels: [0.5]
seeds: [0]
variants:
  - {{name: random_init, distill: null}}
  - {{name: dense_t0, distill: {{timesteps: "fixed:0", loss: {{mode: dense}}}}}}
distill: {{student: {{stem: imagenet}}, optim: {{batch_size: 16}}, probe: {{train_size: 0}},
          trainer: {{max_steps: 2, progress_bar: false}}}}
finetune: {{data: {{resolution: 16}}, optim: {{batch_size: 8}}, trainer: {{max_steps: 2, progress_bar: false}}}}
out: {tmp_path / "exp"}
""")
    first = run_cli("experiment", "repfusion", "--config", str(config))
    out = tmp_path / "exp"
    assert "1 distillations and 4 fine-tunings" in first.stdout
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["variant"], r["task"], r["metric"]) for r in rows] == [
        (v, t, m) for v in ("random_init", "dense_t0")
        for t, m in (("segment", "test_miou"), ("landmarks", "test_nme"))]
    assert (out / "finetune-segment/dense_t0/labels0.5-seed0/overlays.png").is_file()
    table = (out / "results.md").read_text()
    assert "| student init | mIoU, 0.5 labels | NME, 0.5 labels |" in table and "lower is better" in table
    assert (out / "results-segment.png").is_file() and (out / "results-landmarks.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["landmarks_dense_t0_labels0.5_mean"] and "segment_random_init_labels0.5_std" in metrics


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("configs/experiments/*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_experiment_config_merges_into_its_runs(path):
    cfg = config_lib.resolve(experiment.DEFAULTS, path, [])
    runs, distills = experiment.check(cfg)
    assert runs and all(experiment.finetune_config(cfg, r)["task"] in cfg["tasks"] for r in runs)
    assert len(distills) >= 1 and all(experiment.distill_config(cfg, d)["data"]["name"] for d in distills.values())


def test_a_wrong_key_in_an_experiment_fails_before_any_run(tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    config.write_text(f"finetune: {{optim: {{lr_typo: 1}}}}\nout: {tmp_path / 'exp'}\n")
    assert cli.main(["experiment", "repfusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "lr_typo" in err and err.count("\n") == 1 and not (tmp_path / "exp").exists()


def test_a_runner_passes_over_runs_another_runner_holds(tmp_path, monkeypatch):
    """Runners sharing OUT: a run held by another runner is taken up last, once it is free, and trained once."""
    out = tmp_path / "exp"
    cfg = config_lib.resolve(experiment.DEFAULTS, None, ["--labels", "[0.1]", "--seeds", "[0,1]", "--out", str(out),
                                                         "--distill_per_seed", "false"])
    cfg["variants"] = [{"name": "random_init", "distill": None},
                       {"name": "uniform", "distill": {"timesteps": "uniform:0-999"}}]
    held = "finetune/random_init/labels0.1-seed0"
    lock = experiment._claimed(out, held, wait=True)
    assert lock.__enter__()  # another runner is training this run
    trained = []

    def fake(key):
        def train(run_cfg, resume=False):
            trained.append(str(Path(run_cfg["out"]).relative_to(out)))
            Path(run_cfg["out"]).mkdir(parents=True, exist_ok=True)
            (Path(run_cfg["out"]) / "metrics.json").write_text(json.dumps({key: 0.5, "train_images": 10}))
            if len(trained) == 4:  # every other run is done: the other runner finishes and lets go
                lock.__exit__(None, None, None)
        return train

    monkeypatch.setattr(experiment.distill, "run", fake("train_seconds"))
    monkeypatch.setattr(experiment.finetune, "run", fake("test_accuracy"))
    experiment.run(cfg)
    assert trained == ["distill/uniform/seed0", "finetune/random_init/labels0.1-seed1",
                       "finetune/uniform/labels0.1-seed0", "finetune/uniform/labels0.1-seed1", held]
    assert (out / "results.md").read_text().count("50.00 +/- 0.00") == 2


def test_experiment_select_picks_each_variants_value_by_validation_and_reports_its_test_score(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    cfg = config_lib.resolve(experiment.DEFAULTS, None, [
        "--labels", "[0.1]", "--seeds", "[0,1]", "--out", str(out), "--distill_per_seed", "false",
        "--select.option", "optim.backbone_lr_ratio", "--select.values", "[1.0, 0.1]", "--finetune.data.val", "100"])
    cfg["variants"] = [{"name": "random_init", "distill": None},
                       {"name": "uniform", "distill": {"timesteps": "uniform:0-999"}}]
    # random init validates best at the full rate, the distilled student at the slow one; the test scores say
    # which run each cell comes from
    val = {("random_init", 1.0): 0.8, ("random_init", 0.1): 0.7, ("uniform", 1.0): 0.6, ("uniform", 0.1): 0.9}
    test = {("random_init", 1.0): 0.81, ("random_init", 0.1): 0.99, ("uniform", 1.0): 0.99, ("uniform", 0.1): 0.85}

    def fake_distill(run_cfg, resume=False):
        Path(run_cfg["out"]).mkdir(parents=True)
        (Path(run_cfg["out"]) / "metrics.json").write_text(json.dumps({"train_seconds": 1}))

    def fake_finetune(run_cfg, resume=False):
        assert run_cfg["data"]["val"] == 100
        key = ("uniform" if run_cfg["init"] else "random_init", run_cfg["optim"]["backbone_lr_ratio"])
        Path(run_cfg["out"]).mkdir(parents=True)
        (Path(run_cfg["out"]) / "metrics.json").write_text(json.dumps(
            {"test_accuracy": test[key], "val_accuracy": val[key], "train_images": 10}))

    monkeypatch.setattr(experiment.distill, "run", fake_distill)
    monkeypatch.setattr(experiment.finetune, "run", fake_finetune)
    summary = experiment.run(cfg)
    assert (out / "finetune/uniform/labels0.1-seed1/backbone_lr_ratio0.1/metrics.json").is_file()
    assert summary["random_init_labels0.1_picked"] == 1.0 and summary["uniform_labels0.1_picked"] == 0.1
    assert summary["random_init_labels0.1_mean"] == pytest.approx(81) and summary["uniform_labels0.1_mean"] == 85
    table = (out / "results.md").read_text()
    assert "| uniform | 85.00 +/- 0.00 (backbone_lr_ratio 0.1) |" in table
    assert "| uniform | 0.1 | 85.00 +/- 0.00 (90.00) * |" in table
    assert "| uniform | 1 | 99.00 +/- 0.00 (60.00) |" in table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 and sum(r["picked"] == "True" for r in rows) == 4


@pytest.mark.parametrize("options, message", [
    (["--select.values", "[1.0, 0.1]"], "set finetune.data.val"),
    (["--select.values", "[0.1]", "--finetune.data.val", "10"], "select.values must list at least two distinct"),
    (["--select.values", "[1.0, 2.0]", "--finetune.data.val", "10"], "finetune: --optim.backbone_lr_ratio must be"),
])
def test_a_selection_without_validation_images_or_with_bad_values_is_one_line(tmp_path, capsys, options, message):
    args = ["experiment", "repfusion", "--select.option", "optim.backbone_lr_ratio", *options,
            "--out", str(tmp_path / "e")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "e").exists()


def test_a_diverging_distillation_stops_with_one_line_and_exports_nothing(tiny_teacher_dir, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("distill", "--teacher", str(tiny_teacher_dir), *TINY_DISTILL, "--timesteps", "fixed:10",
                   "--optim.lr", "1e30", "--trainer.max_steps", "4", "--out", str(out), check=False)
    assert proc.returncode == 2 and "training diverged" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (out / "student.safetensors").exists()


def test_extra_hints_distil_a_second_teacher_tap_into_a_second_student_stage(tiny_teacher_dir, tmp_path):
    metrics = distill.run(tiny_cfg(tiny_teacher_dir, tmp_path, timesteps="fixed:3", **{
        "extra_hints": "down_blocks.0:layer3", "trainer.max_steps": 2}))
    assert metrics["loss_feat_down_blocks.0_layer3"] > 0 and metrics["loss_feat"] > metrics["loss_hint"]
    with pytest.raises(UserError, match="bad extra hint"):
        distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "bad", **{"extra_hints": "down_blocks.0"}))
    with pytest.raises(UserError, match="unknown student tap 'layer9'"):
        distill.run(tiny_cfg(tiny_teacher_dir, tmp_path / "bad", **{"extra_hints": "down_blocks.0:layer9"}))
