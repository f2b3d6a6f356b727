"""Reading the parts of a diffusers pipeline folder (unet/, transformer/, vae/, scheduler/) with one-line errors."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from diffrep.errors import UserError


def read_config(folder: Path) -> dict:
    """A component's config.json ({} when there is none)."""
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object")
    return config


def class_name(folder: Path) -> str | None:
    return read_config(folder).get("_class_name")


@contextmanager
def _quiet_diffusers():
    """diffusers logs warnings (e.g. about configs written by other versions) that are not the user's business."""
    logger = logging.getLogger("diffusers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_component(cls, folder: Path) -> nn.Module:
    """cls.from_pretrained(folder), offline and strict: no weights, a missing or an unexpected key is one line
    (diffusers itself would warn and initialise missing weights at random)."""
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise UserError(f"{folder}: no weights (diffusion_pytorch_model.safetensors)")
    try:
        with _quiet_diffusers():
            model, info = cls.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False,
                                              output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the teacher's {cls.__name__} in {folder}: {first}") from None
    for kind, what in (("missing_keys", "is missing from the checkpoint"), ("unexpected_keys", "is not in the model"),
                       ("mismatched_keys", "has another shape than the config says")):
        if info.get(kind):
            key = info[kind][0]
            key = key[0] if isinstance(key, (tuple, list)) else key
            raise UserError(f"{folder}: the weights do not match config.json: key {key} {what} "
                            f"({len(info[kind])} such key(s))")
    return model


def load_vae(root: Path, denoiser: str):
    """The pipeline's AutoencoderKL: a latent denoiser is useless without it."""
    from diffusers import AutoencoderKL

    folder = root / "vae"
    if not (folder / "config.json").is_file():
        raise UserError(f"{root}: a latent {denoiser} needs the pipeline's vae/ folder (AutoencoderKL) beside it; "
                        f"point at the whole pipeline folder")
    if (name := class_name(folder)) not in (None, "AutoencoderKL"):
        raise UserError(f"{folder}: a {name}; diffrep reads AutoencoderKL VAEs")
    return load_component(AutoencoderKL, folder)
