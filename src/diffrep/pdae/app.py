"""What the application commands (reconstruct, interpolate, manipulate, encode, gap) share: their common options,
loading a saved autoencoder with its teacher and data, batched encoding, the run directory and report.md.

A saved model is OUT/model of `diffrep pdae fit` or `fit-diffae` (OUT itself is accepted too). Its config.json
names the teacher (PDAE shifts that teacher's eps; a Diff-AE uses the teacher's schedule, and its unconditional
samples as a baseline) and the data set it was trained on; --teacher and --data override them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from diffrep import config as config_lib
from diffrep import data as data_lib
from diffrep import shipped
from diffrep.device import resolve_device
from diffrep.errors import UserError
from diffrep.options import blocks
from diffrep.pdae import backbone
from diffrep.pdae.autoencoder import CONFIG, load_autoencoder
from diffrep.pdae.precision import use_precision
from diffrep.teacher import Teacher, teacher_from_config
from diffrep.teacher.schedule import ddpm_scheduler

DATA = blocks.APP_DATA
APP_DEFAULTS = blocks.APP


@dataclass
class Loaded:
    model: nn.Module      # a PDAE or DiffAE, eval mode, frozen, on `device`
    teacher: Teacher      # on `device`
    directory: Path
    info: dict            # the model's config.json
    device: torch.device

    @property
    def kind(self) -> str:
        return self.model.kind


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def positive_ints(values, name: str) -> list[int]:
    values = [values] if isinstance(values, int) and not isinstance(values, bool) else values
    if not isinstance(values, list) or not values:
        raise UserError(f"{name} must be a positive integer or a list of them, got {values!r}")
    return [positive_int(v, name) for v in values]


def model_directory(path) -> Path:
    path = Path(path)
    return path / "model" if not (path / CONFIG).is_file() and (path / "model" / CONFIG).is_file() else path


def _same_schedule(info: dict, teacher: Teacher) -> bool:
    if "schedule" not in info:
        return True
    saved = ddpm_scheduler({k: v for k, v in info["schedule"].items() if not k.startswith("_")}).alphas_cumprod
    return len(saved) == teacher.num_timesteps and torch.allclose(saved.float(), teacher.alphas_cumprod.float().cpu())


def load(cfg: dict) -> tuple[dict, Loaded]:
    """(cfg with the data options resolved, the loaded model and teacher); every mismatch is a UserError."""
    positive_int(cfg["batch_size"], "batch_size")
    directory = model_directory(cfg["model"])
    model = load_autoencoder(directory)
    info = json.loads((directory / CONFIG).read_text())
    spec = cfg["teacher"] if isinstance(cfg["teacher"], dict) else {"path": cfg["teacher"]}
    if not spec.get("path"):  # the teacher the model was trained on
        spec = {**spec, "path": info.get("teacher"), "flags": spec.get("flags") or info.get("teacher_flags")}
        if spec["path"] and not Path(spec["path"]).exists() and not shipped.shipped_teacher(spec["path"]):
            raise UserError(f"{directory}: its teacher {spec['path']} is not there; pass --teacher PATH")
    teacher = teacher_from_config(spec)
    backbone.check(teacher)
    teacher = use_precision(teacher, info.get("schedule_precision", "float32"))  # the precision it was trained with
    encoder = model.encoder.config
    if (encoder["in_channels"], encoder["resolution"]) != (teacher.channels, teacher.resolution):
        raise UserError(f"{directory} encodes {encoder['in_channels']} x {encoder['resolution']} px images but the "
                        f"teacher {teacher.path} is {teacher.channels} x {teacher.resolution} px")
    if model.kind == "pdae" and {k: v for k, v in model.estimator.config.items() if k != "z_dim"} != \
            backbone.architecture(teacher):
        raise UserError(f"{directory} was trained on a teacher of another architecture than {teacher.path}")
    if not _same_schedule(info, teacher):
        raise UserError(f"{directory} was trained with another noise schedule than the teacher {teacher.path}'s")
    trained_on = info.get("data") or {}
    data = {**cfg["data"], "name": cfg["data"]["name"] or trained_on.get("name") or "fashion-mnist"}
    if cfg["data"]["name"] is None and data["root"] is None:
        data["root"] = trained_on.get("root")
    cfg = {**cfg, "data": teacher.data_config(data)}
    device = resolve_device(cfg["device"])
    return cfg, Loaded(model.to(device), teacher.to(device), directory, info, device)


def prepare_out(cfg: dict) -> Path:
    """The output directory, with the resolved config.yaml."""
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_lib.dump(cfg))
    return out


def batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.no_grad()
def encode_z(encoder: nn.Module, images: data_lib.ImageSet | torch.Tensor, batch_size: int,
             device: torch.device) -> torch.Tensor:
    """z = E(x0) for every image (an ImageSet, uint8, or floats in [-1, 1]), on the CPU, float32."""
    images = images.images if isinstance(images, data_lib.ImageSet) else images
    out = []
    for part in batches(len(images), batch_size):
        x = images[part]
        x = data_lib.to_float(x) if x.dtype == torch.uint8 else x
        out.append(encoder(x.to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, encoder.config["z_dim"])


def write_report(out: Path, title: str, loaded: Loaded, cfg: dict, lines: list[str], images: list[Path]) -> Path:
    """report.md: what was run on what, the numbers (`lines`) and the pictures."""
    head = [f"# {title}", "",
            f"- model: `{loaded.directory}` ({loaded.kind}, {loaded.info.get('steps', '?')} training steps)",
            f"- teacher: `{loaded.teacher.path or '(in memory)'}`; data: {cfg['data']['name']}", ""]
    body = head + lines + [""] + [f"![{p.stem}]({p.name})" for p in images]
    path = out / "report.md"
    path.write_text("\n".join(body) + "\n")
    return path
