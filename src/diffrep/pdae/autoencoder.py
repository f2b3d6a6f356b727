"""The trained parts of an autoencoder, saved as safetensors + config.json so later applications can load them.

    model = load_autoencoder("runs/pdae/model")     # PDAE (encoder, estimator) or DiffAE (encoder, unet)
    z = model.encoder(x0)

A PDAE holds no teacher weights: pair it with the frozen teacher it was trained on (config.json names it).
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from diffrep.errors import UserError
from diffrep.pdae.encoder import SemanticEncoder
from diffrep.pdae.backbone import estimator_from_config
from diffrep.run_dir import honour_umask

WEIGHTS, CONFIG = "model.safetensors", "config.json"


class PDAE(nn.Module):
    """Semantic encoder E and gradient estimator G; the frozen teacher stays outside (and out of checkpoints)."""

    kind = "pdae"

    def __init__(self, encoder: SemanticEncoder, estimator: nn.Module):
        super().__init__()
        self.encoder, self.estimator = encoder, estimator

    @property
    def config(self) -> dict:
        return {"kind": self.kind, "encoder": self.encoder.config, "estimator": self.estimator.config}

    @classmethod
    def from_config(cls, config: dict) -> "PDAE":
        return cls(SemanticEncoder(**config["encoder"]), estimator_from_config(config["estimator"]))


def save_autoencoder(model: nn.Module, directory: str | Path, **info) -> Path:
    """directory/model.safetensors (state dict) and directory/config.json (the model's config plus `info`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, directory / WEIGHTS)
    (directory / CONFIG).write_text(json.dumps({**model.config, **info}, indent=2, default=str) + "\n")
    return honour_umask(directory)


def chain_steps(info: dict) -> int:
    """The steps a saved model's config.json (`info`) was trained for, with those of the runs it warm-started from."""
    return info.get("steps", 0) + info.get("init_steps", 0)


def load_autoencoder(directory: str | Path) -> nn.Module:
    from diffrep.pdae.baseline import DiffAE  # imported here: the baseline module imports this one

    directory = Path(directory)
    if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
        raise UserError(f"{directory} is not a saved autoencoder (no {CONFIG} and {WEIGHTS})")
    config = json.loads((directory / CONFIG).read_text())
    kinds = {PDAE.kind: PDAE, DiffAE.kind: DiffAE}
    if config.get("kind") not in kinds:
        raise UserError(f"{directory / CONFIG}: unknown kind {config.get('kind')!r} (valid: {', '.join(kinds)})")
    model = kinds[config["kind"]].from_config(config)
    model.load_state_dict(load_file(directory / WEIGHTS))
    return model.eval().requires_grad_(False)
