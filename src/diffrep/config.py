"""Nested configs: defaults, a YAML file over them, then dotted command-line overrides.

    cfg = resolve(DEFAULTS, "configs/dpm/fashion-mnist.yaml", ["--optim.lr", "1e-4"])
"""
from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path

import yaml

from diffrep.errors import UserError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-3 as a string; read it as the float everyone means."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _load(text: str):
    return yaml.load(text, Loader=_Loader)


def flatten(cfg: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def merge(base: dict, update: dict, where: str, prefix: str = "") -> dict:
    """Return `base` updated by `update`; an unknown key is a UserError naming the valid ones."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in out:
            valid = ", ".join(sorted(flatten(base, prefix)))
            raise UserError(f"{where}: unknown option '{prefix}{key}'; valid options: {valid}")
        if isinstance(out[key], dict) and out[key] and isinstance(value, dict):
            out[key] = merge(out[key], value, where, f"{prefix}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(args: list[str]) -> dict:
    """['--a.b', '1', '--c=x'] -> {'a': {'b': 1}, 'c': 'x'}; values are parsed as YAML scalars."""
    nested: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument '{arg}' (options look like --data.labels 0.01)")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise UserError(f"option '{arg}' needs a value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        value = _load(raw) if raw != "" else ""
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"option '--{key}' conflicts with an earlier option")
        node[leaf] = value
    return nested


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        loaded = _load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a config must be a mapping of options")
    return loaded


def resolve(defaults: dict, config_file: str | Path | None, overrides: list[str] | dict) -> dict:
    """Defaults, then the YAML file, then the command-line overrides; unknown keys are errors."""
    cfg = copy.deepcopy(defaults)
    if config_file:
        cfg = merge(cfg, load_yaml(config_file), str(config_file))
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return merge(cfg, overrides, "command line")


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def describe(defaults: dict, comments: dict | None = None, width: int = 100) -> str:
    """One line per option with its default, for --help, with what `comments` says of it (see
    options/comments.py): lines above it, and a note beside it (wrapped under itself)."""
    lines = []
    for key, value in flatten(defaults).items():
        above, beside = (comments or {}).get(key, ([], None))
        lines += [f"  # {line}" for line in above]
        option = f"  --{key} {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        if beside is not None and ("\n" in option or len(option) > width // 2):  # no room beside: above it
            lines += [f"  # {line}" for line in textwrap.wrap(beside, width - 4)]
            beside = None
        if beside is None:
            lines.append(option)
            continue
        column = max(len(option) + 2, 40)
        note = textwrap.wrap(beside, width - column - 2)
        lines.append(f"{option.ljust(column)}# {note[0]}")
        lines += [f"{'':{column}}# {rest}" for rest in note[1:]]
    return "\n".join(lines)
