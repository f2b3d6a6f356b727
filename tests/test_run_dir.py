"""Run folders: FAILED markers, --overwrite, --resume, the umask, exact subset sizes, quiet image reading."""
from __future__ import annotations

import csv
import os
import re
import sys
import types
import warnings

import pytest
import torch
from PIL import Image

from diffrep import cli, run_dir
from diffrep.data import stratified_subset
from diffrep.data.sources import image_folder
from diffrep.tasks.students import save_file_atomic


@pytest.fixture
def command(monkeypatch):
    """A fake command module whose run() writes OUT/config.yaml, then fails when cfg['fail'] is set."""
    module = types.ModuleType("fake_command")

    def run(cfg, resume=False):
        os.makedirs(cfg["out"], exist_ok=True)
        with open(os.path.join(cfg["out"], "config.yaml"), "w") as fh:
            fh.write(f"resume: {resume}\n")
        if cfg["fail"]:
            raise RuntimeError("the disk is full")
        return {}

    module.run = run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    return "fake_command"


def test_a_failed_run_is_marked_and_needs_resume_or_overwrite(command, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        cli._run(command, {"out": str(out), "fail": True}, True, False, False)
    assert (out / "FAILED").read_text() == "RuntimeError: the disk is full\n"
    with pytest.raises(cli.UserError, match="holds a run that failed .*--resume to continue it or --overwrite"):
        cli._run(command, {"out": str(out), "fail": False}, True, False, False)
    cli._run(command, {"out": str(out), "fail": False}, True, True, False)  # --resume
    assert not (out / "FAILED").exists() and (out / "config.yaml").read_text() == "resume: True\n"
    with pytest.raises(RuntimeError):
        cli._run(command, {"out": str(out), "fail": True}, False, False, False)
    (out / "stale.png").write_text("old")
    cli._run(command, {"out": str(out), "fail": False}, False, False, True)  # --overwrite starts afresh
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "index.html"]


def test_a_check_that_fails_before_any_work_leaves_no_marker(command, tmp_path, monkeypatch):
    out = tmp_path / "done"
    cli._run(command, {"out": str(out), "fail": False}, False, False, False)
    monkeypatch.setattr(sys.modules[command], "run", lambda cfg: (_ for _ in ()).throw(cli.UserError("bad tap")))
    with pytest.raises(cli.UserError):
        cli._run(command, {"out": str(out)}, False, False, False)
    assert not (out / "FAILED").exists()


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_file_atomic({"w": torch.zeros(2)}, tmp_path / "student.safetensors", {"arch": "resnet18"})
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert run_dir.honour_umask(tmp_path) == tmp_path


@pytest.mark.parametrize("size", [4000, 3999, 5, 7, 0.01, 3, 1])
def test_stratified_subsets_have_exactly_the_size_asked(size):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([3001, 2999, 1000, 3])])
    index = stratified_subset(labels, size, seed=0)
    expected = size if isinstance(size, int) else round(size * len(labels))
    assert len(index) == expected and len(index.unique()) == expected
    # every class kept while there is room for it; below that, one image from each of `size` classes
    assert len(set(labels[index].tolist())) == min(expected, 4)


def test_greyscale_folders_read_without_warnings(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / cls / f"{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, labels, classes = image_folder("train", str(tmp_path))
    assert classes == ["a", "b"] and images[0].shape == (1, 8, 8)


def test_every_run_gets_a_one_file_report_page(tmp_path):
    """index.html renders report.md and metrics.json, inlines every picture (no broken image), links sub-runs."""
    from diffrep.report.html import write_index

    stage = tmp_path / "probe"
    stage.mkdir()
    Image.new("L", (4, 4), 200).save(stage / "heatmap.png")
    (stage / "report.md").write_text("# Probe\n\n| t | acc |\n|---|---|\n| 10 | 0.9 |\n\n![heatmap](heatmap.png)\n")
    (stage / "metrics.json").write_text('{"best_accuracy": 0.9}')
    Image.new("L", (4, 4), 50).save(tmp_path / "samples.png")
    (tmp_path / "metrics.json").write_text('{"seconds": 12.5}')
    page = write_index(tmp_path, "diffrep quickstart").read_text()
    assert '<a href="probe/index.html">probe</a>' in page and "seconds" in page
    assert 'src="data:image/png;base64,' in page and "samples.png" in page
    stage_page = (stage / "index.html").read_text()
    assert "<table>" in stage_page and "<td>0.9</td>" in stage_page and "best_accuracy" in stage_page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', stage_page + page)
    assert len(sources) == 2 and all(src.startswith("data:image/png;base64,") for src in sources)



@pytest.mark.skipif(not __import__("shutil").which("chromium"), reason="needs Chromium (apt-get install chromium)")
def test_report_pages_load_in_chromium_without_broken_images(tmp_path):
    from diffrep.report import check_page
    from diffrep.report.html import write_index

    Image.new("L", (8, 8), 200).save(tmp_path / "samples.png")
    (tmp_path / "report.md").write_text("# Run\n\n![samples](samples.png)\n\n![gone](missing.png)\n")
    write_index(tmp_path)
    assert check_page.check(tmp_path / "index.html", tmp_path / "shot.png") == {"images": 2, "broken": 1}
    assert Image.open(tmp_path / "shot.png").size == (1200, 1600)
    (tmp_path / "report.md").write_text("# Run\n\n![samples](samples.png)\n")
    write_index(tmp_path)
    assert check_page.main([str(tmp_path)]) == 0

def test_resumed_metrics_csv_keeps_every_column(tmp_path):
    """A resumed run's first logged keys (train loss) must not drop the columns of rows it continues (an eval that
    runs every N steps), which Lightning's own writer rewrites the file without."""
    from diffrep.train.run import _AppendingWriter

    first = _AppendingWriter(str(tmp_path))
    first.log_metrics({"train/loss": 0.5, "eval/acc": 0.8}, 0)
    first.save()
    resumed = _AppendingWriter(str(tmp_path))
    resumed.log_metrics({"train/lr": 1e-4}, 5)
    resumed.save()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [row["step"] for row in rows] == ["0", "5"]
    assert rows[0]["eval/acc"] == "0.8" and rows[1]["train/lr"] == "0.0001"
