"""Every bad input a user is likely to type, through the CLI: exit code 2, exactly one line on stderr (no
traceback), and nothing left under --out.

The cases that fail in the checks made before any heavy import run as real processes, two at a time (each takes
a fraction of a second); those that need a teacher or a data set first (from "teachers that cannot be read" on)
call the same `diffrep.cli.main` in this process, where torch is already imported, to keep the suite fast.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from diffrep import cli

OUT = "{out}"  # replaced by the case's own --out folder, which must stay absent
HEAVY = ("heavy", [], "")


def _png(path: Path, value: int = 128, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value).save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_teacher_dir) -> dict[str, str]:
    """The bad inputs on disk: files where folders belong, broken teachers and configs, odd image folders."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"teacher": str(tiny_teacher_dir)}
    (root / "a_file").write_text("not a folder\n")
    paths["file"] = str(root / "a_file")
    (root / "bad.yaml").write_text("optim: [1, 2\n")
    paths["bad_yaml"] = str(root / "bad.yaml")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    paths["list_yaml"] = str(root / "list.yaml")
    truncated = root / "truncated_teacher"
    truncated.mkdir()
    (truncated / "config.json").write_text((tiny_teacher_dir / "config.json").read_text())
    weights = (tiny_teacher_dir / "diffusion_pytorch_model.safetensors").read_bytes()
    (truncated / "diffusion_pytorch_model.safetensors").write_bytes(weights[: len(weights) // 3])
    paths["truncated_teacher"] = str(truncated)
    garbage = root / "garbage_teacher"
    garbage.mkdir()
    (garbage / "config.json").write_text("{ this is not json")
    paths["garbage_teacher"] = str(garbage)
    empty_teacher = root / "weightless_teacher"
    empty_teacher.mkdir()
    (empty_teacher / "config.json").write_text((tiny_teacher_dir / "config.json").read_text())
    paths["weightless_teacher"] = str(empty_teacher)
    for name, classes in (("one_class", ["shirts"]), ("good", ["a", "b"])):
        for cls in classes:
            for i in range(6):
                _png(root / name / cls / f"{i}.png", 20 * i)
        paths[name] = str(root / name)
    for cls in ("a", "b"):
        for i in range(6):
            _png(root / "with_empty" / cls / f"{i}.png", 20 * i)
    (root / "with_empty" / "c").mkdir()
    paths["with_empty"] = str(root / "with_empty")
    for cls in ("a", "b"):
        for i in range(6):
            _png(root / "corrupt" / cls / f"{i}.png", 20 * i)
    png = (root / "corrupt" / "a" / "0.png").read_bytes()
    (root / "corrupt" / "a" / "3.png").write_bytes(png[: len(png) // 2])  # truncated
    (root / "corrupt" / "b" / "5.png").write_bytes(b"garbage, not a PNG")
    paths["corrupt"] = str(root / "corrupt")
    run = root / "finished_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config.yaml").write_text("seed: 0\n")
    paths["finished_run"] = str(run)
    failed = root / "failed_run"
    failed.mkdir()
    (failed / "config.yaml").write_text("seed: 0\n")
    (failed / "FAILED").write_text("UserError: something broke\n")
    paths["failed_run"] = str(failed)
    stranger = root / "not_a_run"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("my notes\n")
    paths["not_a_run"] = str(stranger)
    (root / "random.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    paths["empty_safetensors"] = str(root / "random.safetensors")
    (root / "truncated.pt").write_bytes(b"PK\x03\x04 half a zip archive")
    paths["truncated_pt"] = str(root / "truncated.pt")
    latent = root / "latent_without_vae" / "unet"
    latent.mkdir(parents=True)
    (latent / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    paths["latent_without_vae"] = str(root / "latent_without_vae")
    paths["_listing"] = _listing(root)
    return paths


TINY = ["--data", "digits", "--data.train_size", "40", "--data.test_size", "20"]
# (case id, arguments ({name} is a path from `files`, {out} the case's --out), a part of the expected message)
CASES = [
    # --out checked before anything is created
    ("sample_out_is_file", ["dpm", "sample", "--out", "{file}"], "is a file, not a folder"),
    ("sample_out_under_file", ["dpm", "sample", "--out", "{file}/sub"], "which is a file"),
    ("distill_out_is_file", ["distill", "--out", "{file}"], "is a file, not a folder"),
    ("probe_out_is_file", ["probe", "--out", "{file}"], "is a file, not a folder"),
    ("pdae_fit_out_under_file", ["pdae", "fit", "--out", "{file}/x/y"], "which is a file"),
    # numeric ranges and names, before any heavy import
    ("sample_n_0", ["dpm", "sample", "--n", "0", "--out", OUT], "--n must be an integer >= 1, got 0"),
    ("sample_steps_0", ["dpm", "sample", "--steps", "0", "--out", OUT], "--steps must be an integer >= 1"),
    ("sample_unknown_sampler", ["dpm", "sample", "--sampler", "euler", "--out", OUT], "--sampler must be one of"),
    ("fit_max_steps_0", ["dpm", "fit", "--trainer.max_steps", "0", "--out", OUT], "--trainer.max_steps must be"),
    ("fit_bad_lr_schedule", ["dpm", "fit", "--optim.schedule", "wavy", "--out", OUT], "--optim.schedule must be"),
    ("distill_batch_0", ["distill", "--optim.batch_size", "0", "--out", OUT], "--optim.batch_size must be"),
    ("distill_bad_loss", ["distill", "--loss.name", "kl", "--out", OUT], "--loss.name must be one of"),
    ("finetune_labels_above_1", ["finetune", "--data.labels", "1.5", "--out", OUT], "--data.labels must be a fraction"),
    ("finetune_labels_0", ["finetune", "--data.labels", "0", "--out", OUT], "--data.labels must be a fraction"),
    ("finetune_train_size_0", ["finetune", "--data.train_size", "0", "--out", OUT], "--data.train_size must be"),
    ("finetune_unknown_task", ["finetune", "--task", "dance", "--out", OUT], "--task must be one of"),
    ("probe_negative_t", ["probe", "--timesteps", "-1", "--out", OUT], "--timesteps must be a list of integers"),
    ("probe_batch_0", ["probe", "--batch_size", "0", "--out", OUT], "--batch_size must be an integer >= 1"),
    ("pdae_unknown_weighting", ["pdae", "fit", "--weighting", "foo", "--out", OUT], "--weighting must be one of"),
    ("interpolate_one_frame", ["pdae", "interpolate", "--frames", "1", "--out", OUT], "--frames must be an integer"),
    ("experiment_label_0", ["experiment", "repfusion", "--labels", "[0]", "--out", OUT], "--labels must be a list"),
    ("quickstart_no_samples", ["quickstart", "--samples.n", "0", "--out", OUT], "--samples.n must be"),
    ("unknown_option", ["distill", "--optim.lrr", "1", "--out", OUT], "unknown option 'optim.lrr'"),
    ("option_without_value", ["distill", "--optim.lr"], "option '--optim.lr' needs a value"),
    ("no_teacher_option", ["finetune", "--teacher", "{teacher}", "--out", OUT], "this command takes no --teacher"),
    ("quiet_and_verbose", ["probe", "--quiet", "--verbose", "--out", OUT], "not allowed with argument --quiet"),
    ("bad_depth", ["teacher", "info", "--depth", "x"], "invalid int value"),
    ("malformed_yaml", ["distill", "--config", "{bad_yaml}", "--out", OUT], "not valid YAML"),
    ("yaml_not_a_mapping", ["distill", "--config", "{list_yaml}", "--out", OUT], "a config must be a mapping"),
    ("missing_config", ["distill", "--config", "/no/such.yaml", "--out", OUT], "config file not found"),
    # missing inputs, checked before any heavy import
    ("missing_teacher", ["probe", "--teacher", "/no/such/teacher", "--out", OUT], "teacher not found"),
    ("missing_image_folder", ["finetune", "--data", "imagefolder:/no/such", "--out", OUT], "image folder not found"),
    ("missing_init", ["finetune", "--init", "/no/such.safetensors", "--out", OUT], "init not found"),
    ("missing_model", ["pdae", "reconstruct", "--model", "/no/such/model", "--out", OUT], "model not found"),
    ("missing_pretrained", ["quickstart", "--pdae.pretrained", "/no/such/pdae", "--out", OUT],
     "pdae.pretrained not found: /no/such/pdae"),
    # run folders: never overwritten by accident
    ("failed_run", ["distill", "--out", "{failed_run}"], "--resume to continue it or --overwrite"),
    ("overwrite_a_stranger", ["probe", "--overwrite", "--out", "{not_a_run}"], "does not look like a diffrep run"),
    HEAVY,  # the cases below need torch: they run in this process
    # teachers that cannot be read
    ("truncated_teacher", ["probe", "--teacher", "{truncated_teacher}", "--out", OUT], "cannot load the teacher"),
    ("garbage_teacher", ["probe", "--teacher", "{garbage_teacher}", "--out", OUT], "not valid JSON"),
    ("weightless_teacher", ["probe", "--teacher", "{weightless_teacher}", "--out", OUT], "no weights"),
    ("teacher_is_a_file", ["teacher", "info", "{file}"], "is a file"),
    ("truncated_adm_checkpoint", ["probe", "--teacher", "{truncated_pt}", "--teacher.preset", "improved-cifar10-32",
                                  "--out", OUT], "{truncated_pt}"),
    ("adm_flags_without_preset", ["probe", "--teacher", "{truncated_pt}", "--teacher.flags", "--image_size x",
                                  "--out", OUT], "image_size"),
    ("latent_teacher_without_vae", ["probe", "--teacher", "{latent_without_vae}", "--out", OUT], "vae"),
    ("hub_id_not_cached", ["probe", "--teacher", "nobody-here/no-such-model", "--out", OUT], "huggingface"),
    ("existing_run", ["dpm", "fit", *TINY, "--out", "{finished_run}"], "already holds a run"),
    # what only the teacher or the data can tell
    ("wrong_tap", ["probe", "--teacher", "{teacher}", *TINY, "--taps", "mid_blok", "--out", OUT],
     "unknown tap 'mid_blok' (did you mean mid_block"),
    ("t_beyond_T", ["probe", "--teacher", "{teacher}", *TINY, "--timesteps", "5000", "--out", OUT],
     "timesteps must lie in 0..999"),
    ("resolution_mismatch", ["probe", "--teacher", "{teacher}", *TINY, "--data.resolution", "64", "--out", OUT],
     "data.resolution is 64 but the teacher expects 16"),
    ("channel_mismatch", ["probe", "--teacher", "{teacher}", *TINY, "--data.channels", "3", "--out", OUT],
     "data.channels is 3 but the teacher expects 1"),
    ("fixed_t_beyond_T", ["distill", "--teacher", "{teacher}", *TINY, "--timesteps", "fixed:5000", "--out", OUT],
     "0..999"),
    ("wrong_init_file", ["finetune", *TINY, "--init", "{empty_safetensors}", "--out", OUT], "{empty_safetensors}"),
    ("teacher_is_no_pdae_model", ["pdae", "reconstruct", "--model", "{teacher}", "--out", OUT],
     "is not a saved autoencoder"),
    ("one_class_folder", ["finetune", "--data", "imagefolder:{one_class}", "--out", OUT],
     "holds 1 class (shirts); labelled stages need at least 2"),
    ("empty_class_folder", ["finetune", "--data", "imagefolder:{with_empty}", "--out", OUT],
     "without PNG or JPEG images"),
    ("corrupt_images", ["distill", "--data", "imagefolder:{corrupt}", "--out", OUT], "2 image(s) cannot be read"),
    ("dense_task_on_digits", ["finetune", "--task", "segment", *TINY, "--out", OUT], "task segment needs a dataset"),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "diffrep.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def results(files, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    base = tmp_path_factory.mktemp("outs")
    heavy_from = CASES.index(HEAVY)
    jobs = {name: ([a.format(out=base / name, **files) for a in args], base / name) for name, args, _ in CASES
            if name != "heavy"}
    light = list(jobs)[:heavy_from]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(light, pool.map(lambda name: _run(jobs[name][0], base), light)))
    for name in list(jobs)[heavy_from:]:
        done[name] = _run_here(jobs[name][0])
    return {name: (done[name], jobs[name][1]) for name in jobs}


def _run_here(args: list[str]) -> subprocess.CompletedProcess:
    """diffrep.cli.main in this process, its stderr captured like a process's."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(args)
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name, message", [(name, message) for name, _, message in CASES if name != "heavy"],
                         ids=[name for name, _, _ in CASES if name != "heavy"])
def test_bad_input_is_one_clear_line_and_leaves_nothing(results, files, name, message):
    proc, out = results[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("diffrep: error: ") and message.format(**files) in lines[0], lines[0]
    assert not out.exists(), f"{out} was created"


def test_bad_inputs_change_no_file(files, results, tmp_path_factory):
    """The existing run folders, the stranger's folder and every input are exactly as they were."""
    root = Path(files["file"]).parent
    assert _listing(root) == files["_listing"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so a read-only folder cannot be tested")
def test_out_in_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    proc = _run(["dpm", "sample", "--out", str(locked / "samples")], tmp_path)
    assert proc.returncode == 2 and "cannot write to" in proc.stderr and not (locked / "samples").exists()
