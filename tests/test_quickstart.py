import json
import re
import shutil

import pytest

from conftest import run_cli
from diffrep import shipped
from diffrep.report import check_page
from diffrep.teacher import SHIPPED_TEACHER, load_teacher


@pytest.mark.parametrize("name", ["fashion-mnist-v1", "fashion-mnist-v2"])
def test_each_shipped_teacher_is_a_plain_diffusers_directory_under_20mb_with_card_and_samples(name):
    folder = shipped.shipped_teacher(name)
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "README.md",
            "samples.png"} <= set(files)
    assert files["diffusion_pytorch_model.safetensors"] <= 20_000_000
    teacher = load_teacher(folder)
    assert teacher.channels == 1 and teacher.resolution == 32
    assert {"down_blocks.1", "mid_block", "mid_block.resnets.1.conv2", "up_blocks.0"} <= set(teacher.taps)


def test_the_default_teacher_is_a_shipped_one():
    assert shipped.shipped_teacher(shipped.DEFAULT) == SHIPPED_TEACHER and load_teacher().resolution == 32


def test_the_shipped_pre_made_models_load_with_their_cards_and_are_a_few_mb():
    from diffrep.pdae import load_autoencoder
    from diffrep.tasks.students import load_backbone

    pdae = shipped.companion(SHIPPED_TEACHER, "pdae")
    student = shipped.companion(SHIPPED_TEACHER, "student")
    assert pdae is not None and student is not None
    for path in (pdae / "model.safetensors", student):
        assert path.stat().st_size <= 10_000_000 and (path.parent / "README.md").is_file()
    model = load_autoencoder(pdae)
    assert model.kind == "pdae" and json.loads((pdae / "config.json").read_text())["teacher"] == shipped.DEFAULT
    assert model.encoder.config["resolution"] == load_teacher().resolution
    _, meta = load_backbone(student)
    assert meta["in_channels"] == 1


def test_quickstart_writes_info_samples_a_probe_a_distilled_student_and_a_pdae(tmp_path):
    proc = run_cli("quickstart", "--samples.n", "4", "--samples.steps", "2", "--probe.train_size", "200",
            "--probe.test_size", "100", "--probe.timesteps", "0,500", "--distill.steps", "2",
            "--distill.batch_size", "16", "--finetune.steps", "2", "--finetune.batch_size", "16",
            "--finetune.test_size", "100", "--pdae.steps", "2", "--pdae.batch_size", "8", "--pdae.test_size", "4",
            "--pdae.pairs", "1", "--pdae.ddim_steps", "2", "--out", str(tmp_path), fresh=True)
    assert "mid_block.resnets.1.conv2" in (tmp_path / "teacher_info.txt").read_text()
    assert (tmp_path / "samples.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["taps"] > 10 and metrics["probe_best_t"] in (0, 500) and 0.1 < metrics["probe_best_accuracy"] <= 1
    assert {"probe.csv", "report.md", "heatmap_clean.png", "heatmap_noised.png"} <= {
        p.name for p in (tmp_path / "probe").iterdir()}
    distilled = tmp_path / "distill"
    assert (distilled / "student.safetensors").is_file() and (distilled / "timesteps.png").is_file()
    assert 0 <= metrics["finetune_distilled_accuracy"] <= 1 and 0 <= metrics["finetune_random_accuracy"] <= 1
    assert (tmp_path / "pdae" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "pdae-reconstruct" / "reconstruct.png").is_file()
    assert (tmp_path / "pdae-interpolate" / "interpolate.png").is_file()
    assert 0 < metrics["pdae_random_xT_mse"] < 1 and -1 <= metrics["pdae_inferred_ssim"] <= 1
    noise = [line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r"Warning|Tip|deprecated", line)]
    assert not noise, noise
    assert "it/s" not in proc.stdout + proc.stderr  # progress bars only on a terminal: a log file gets no redraws
    pages = sorted(tmp_path.rglob("index.html"))
    assert (tmp_path / "index.html") in pages and len(pages) >= 7  # the quickstart's page and one per stage
    if shutil.which("chromium"):  # every page, as a browser draws it
        assert check_page.main([str(tmp_path)]) == 0


def test_the_quickstart_shows_a_given_or_shipped_model_before_its_own_short_training(tmp_path):
    from diffrep.quickstart import pretrained

    teacher = type("T", (), {"path": tmp_path / "teacher"})()
    live = tmp_path / "run" / "model"
    assert pretrained(None, teacher, "pdae", live)[0] == live  # nothing shipped: this run's own
    (tmp_path / "teacher" / "pdae").mkdir(parents=True)
    (tmp_path / "teacher" / "pdae" / "config.json").write_text("{}")
    assert pretrained(None, teacher, "pdae", live)[0] == tmp_path / "teacher" / "pdae"
    assert shipped.companion(teacher.path, "student") is None
    assert pretrained(str(tmp_path), teacher, "student", live)[0] == tmp_path  # given beats shipped


def test_live_stages_beside_a_pre_made_model_are_short_and_teachers_are_saved_by_name(tmp_path):
    from diffrep.quickstart import LIVE_STEPS, live_steps

    live = tmp_path / "live"
    assert live_steps(None, live, live, 200) == 200  # nothing pre-made: the live model is the one shown
    assert live_steps(None, tmp_path / "shipped", live, 200) == LIVE_STEPS
    assert live_steps(7, tmp_path / "shipped", live, 200) == 7  # as asked
    assert shipped.name_of(SHIPPED_TEACHER) == "fashion-mnist-v2" and shipped.name_of(tmp_path) is None
