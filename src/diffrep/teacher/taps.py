"""Taps: named module outputs of a UNet, captured by forward hooks in one pass.

With early exit, the hook that completes the requested set raises `_StopForward`, so the UNet
runs only as far as the deepest requested tap (a mid-block feature costs the encoder half).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class _StopForward(Exception):
    """Raised by a hook once every requested tap has been captured."""


def _first_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def capture(model: nn.Module, names: list[str], early_exit: bool):
    """Yields a dict filled with {name: output} during the next forward pass of `model`."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    wanted = set(names)

    def hook_for(name):
        def hook(module, args, output):
            captured[name] = _first_tensor(output)
            if early_exit and wanted.issubset(captured):
                raise _StopForward
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run_with_taps(model: nn.Module, names: list[str], early_exit: bool, *args, **kwargs) -> dict:
    """Forward `model(*args, **kwargs)` and return {name: output} for the tap names, in request order."""
    with capture(model, names, early_exit) as captured:
        try:
            model(*args, **kwargs)
        except _StopForward:
            pass
    return {name: captured[name] for name in names}


def discover(model: nn.Module, example_args: tuple) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (output shape without batch, module type)} for every module that outputs one
    spatial (B, C, H, W) tensor and runs exactly once per forward pass, in execution order."""
    calls: dict[str, int] = {}
    shapes: dict[str, tuple] = {}

    def hook_for(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            out = _first_tensor(output)
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                shapes[name] = (tuple(out.shape[1:]), type(module).__name__)
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(*example_args)
    finally:
        for handle in handles:
            handle.remove()
    return {name: shapes[name] for name in calls if name in shapes and calls[name] == 1}
