"""Reading an ADM `.pt` state dict and loading it strictly, with errors that say which flag is wrong.

A checkpoint's shapes reveal most architecture flags (channels, levels, res-blocks, attention levels, learned
sigma, classes); only the head count and the attention order do not. When the flags and the checkpoint disagree,
the error names the first bad key and the flag value the checkpoint implies.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from diffrep.errors import UserError
from diffrep.teacher.adm_flags import ARCHITECTURE


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .pt (torch.save of a state dict, as the releases ship) or a .safetensors file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, a pickle of something else, an HTML error page: all one line
        raise UserError(f"{path}: not a readable checkpoint (truncated or not a PyTorch state dict?): "
                        f"{_first_line(err)}") from None
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model", "ema"):  # common wrappers of training scripts
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def _layers(state: dict, prefix: str) -> dict[int, str]:
    """{layer index: 'res' | 'attention' | 'upsample' | 'downsample' | 'conv'} of one TimestepEmbedSequential."""
    kinds: dict[int, str] = {}
    for key in state:
        match = re.match(re.escape(prefix) + r"(\d+)\.(.+)$", key)
        if not match:
            continue
        rest = match.group(2)
        kind = ("res" if rest.startswith("in_layers") else "attention" if rest.startswith("qkv")
                else "upsample" if rest.startswith("conv.") else "downsample" if rest.startswith("op.")
                else "conv" if rest in ("weight", "bias") else None)
        if kind:
            kinds.setdefault(int(match.group(1)), kind)
    return kinds


def infer_flags(state: dict, image_size: int) -> dict | None:
    """The architecture flags an official-layout state dict implies, or None when it does not have that layout."""
    try:
        channels = state["time_embed.0.weight"].shape[1]
        n_out = len({int(k.split(".")[1]) for k in state if k.startswith("output_blocks.")})
        up = [j for j in range(n_out) if any(i >= 1 and kind in ("res", "upsample")
                                             for i, kind in _layers(state, f"output_blocks.{j}.").items())]
        per_level = up[0] if up else n_out - 1  # res-blocks per level; each output level has one more
        levels = n_out // (per_level + 1)
        firsts = [1 + level * (per_level + 1) for level in range(levels)]  # first res-block of each input level
        widths = [state[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0] for i in firsts]
        emb_out = state["input_blocks.1.0.emb_layers.1.weight"].shape[0]
        return {
            "num_channels": channels,
            "channel_mult": tuple(int(w / channels) if (w / channels).is_integer() else w / channels for w in widths),
            "num_res_blocks": per_level,
            "attention_resolutions": tuple(image_size // 2 ** level for level, i in enumerate(firsts)
                                           if f"input_blocks.{i}.1.qkv.weight" in state),
            "resblock_updown": any(f"input_blocks.{i + per_level}.0.in_layers.0.weight" in state for i in firsts[:-1]),
            "use_scale_shift_norm": emb_out == 2 * widths[0],
            "learn_sigma": state["out.2.weight"].shape[0] == 6,
            "class_cond": "label_emb.weight" in state,
        }
    except (KeyError, IndexError, ZeroDivisionError, AttributeError):
        return None


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _hint(state: dict, flags: dict) -> str:
    implied = infer_flags(state, flags["image_size"])
    if implied is None:
        return "it does not have the layout of an ADM UNet (time_embed, input_blocks, middle_block, output_blocks, out)"
    for name in ARCHITECTURE:
        given, found = flags[name], implied[name]
        if name == "attention_resolutions":
            given, found = tuple(sorted(given, reverse=True)), tuple(sorted(found, reverse=True))
        if given != found:
            return f"the checkpoint looks like --{name} {_show(found)} (the flags say {_show(given)})"
    return "check --image_size and --channel_mult"


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], flags: dict, path: Path) -> None:
    """Every key present with its shape, nothing extra; otherwise one line naming the first bad key and the fix."""
    expected = model.state_dict()
    problem = None
    for key, tensor in expected.items():
        if key not in state:
            problem = f"key {key} is missing from the checkpoint"
        elif state[key].shape != tensor.shape:
            problem = (f"key {key} has shape {tuple(state[key].shape)} in the checkpoint but "
                       f"{tuple(tensor.shape)} in the model the flags describe")
        if problem:
            break
    if problem is None:
        extra = next((key for key in state if key not in expected), None)
        problem = f"unexpected key {extra} in the checkpoint" if extra else None
    if problem:
        raise UserError(f"{path}: {problem}; {_hint(state, flags)}")
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in state.items()}, strict=True)
