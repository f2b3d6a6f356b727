"""Taps: named module outputs of a denoiser (UNet or transformer), captured by forward hooks in one pass.

With early exit, the hook that completes the requested set raises `_StopForward`, so the denoiser
runs only as far as the deepest requested tap (a mid-block feature costs the encoder half).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial

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
    return _tapped(model, model, names, early_exit, args, kwargs)


def run_with_taps_on_meta(model: nn.Module, names: list[str], early_exit: bool, *args, **kwargs) -> dict:
    """run_with_taps on shapes only (see forward_on_meta): what a pass up to the taps does, e.g. its FLOPs under
    torch's FlopCounterMode, without computing it."""
    return _tapped(model, partial(forward_on_meta, model), names, early_exit, args, kwargs)


def _tapped(model: nn.Module, forward: Callable, names: list[str], early_exit: bool, args: tuple,
            kwargs: dict) -> dict:
    with capture(model, names, early_exit) as captured:
        try:
            forward(*args, **kwargs)
        except _StopForward:
            pass
    return {name: captured[name] for name in names}


def forward_on_meta(model: nn.Module, *args, **kwargs):
    """model(*args, **kwargs) with every parameter and buffer swapped for a shape-only meta tensor: the same module
    tree and forward code (hooks fire as usual), no arithmetic and no memory, however large the model."""
    def to_meta(x):
        return torch.empty_like(x, device="meta") if isinstance(x, torch.Tensor) else x

    tensors = {name: to_meta(t) for name, t in (*model.named_parameters(), *model.named_buffers())}
    return torch.func.functional_call(model, tensors, tuple(map(to_meta, args)),
                                      {key: to_meta(value) for key, value in kwargs.items()})


def discover(model: nn.Module, example_args: tuple, example_kwargs: dict | None = None,
             as_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
             on_meta: bool = False) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (output shape without batch, module type)} for every module that outputs one
    spatial (B, C, H, W) tensor and runs exactly once per forward pass, in execution order.

    `as_map` turns other outputs into maps where a model has them (a transformer's token sequences);
    `on_meta` runs the pass on shapes only (see forward_on_meta)."""
    calls: dict[str, int] = {}
    shapes: dict[str, tuple] = {}

    def hook_for(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            out = _first_tensor(output)
            if isinstance(out, torch.Tensor) and as_map is not None:
                out = as_map(out)
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                shapes[name] = (tuple(out.shape[1:]), type(module).__name__)
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            (partial(forward_on_meta, model) if on_meta else model)(*example_args, **(example_kwargs or {}))
    finally:
        for handle in handles:
            handle.remove()
    return {name: shapes[name] for name in calls if name in shapes and calls[name] == 1}
