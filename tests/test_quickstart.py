import json

from conftest import run_cli
from diffrep.teacher import SHIPPED_TEACHER, load_teacher


def test_shipped_teacher_is_a_plain_diffusers_directory_under_20mb():
    files = {p.name: p.stat().st_size for p in SHIPPED_TEACHER.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "README.md",
            "samples.png"} <= set(files)
    assert files["diffusion_pytorch_model.safetensors"] <= 20_000_000
    teacher = load_teacher()
    assert teacher.channels == 1 and teacher.resolution == 32
    assert {"down_blocks.1", "mid_block", "mid_block.resnets.1.conv2", "up_blocks.0"} <= set(teacher.taps)


def test_quickstart_writes_info_and_samples(tmp_path):
    run_cli("quickstart", "--samples.n", "4", "--samples.steps", "2", "--out", str(tmp_path))
    assert "mid_block.resnets.1.conv2" in (tmp_path / "teacher_info.txt").read_text()
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["taps"] > 10
