"""`diffrep teacher info`: the architecture summary and every tap with its output shape, for every family."""
from __future__ import annotations

from diffrep.teacher.adm_teacher import adm_architecture
from diffrep.teacher.families import load_teacher
from diffrep.teacher.model import Teacher


def depth(name: str) -> int:
    """Named parts of a tap, indexes not counted: mid_block 1, down_blocks.0.resnets.1 2."""
    return sum(not part.isdigit() for part in name.split("."))


def describe(teacher: Teacher, max_depth: int | None = None) -> str:
    """The summary, then one line per tap: name, output C x H x W, module type."""
    taps = {name: spec for name, spec in teacher.taps.items() if max_depth is None or depth(name) <= max_depth}
    width = max((len(name) for name in taps), default=0)
    lines = [teacher.summary(), "",
             f"taps ({len(taps)} of {len(teacher.taps)}, in execution order; output C x H x W at "
             f"{teacher.resolution} x {teacher.resolution}):"]
    lines += [f"  {name:<{width}}  {' x '.join(map(str, shape)):>14}  {kind}" for name, (shape, kind) in taps.items()]
    return "\n".join(lines)


def main(args) -> int:
    flags, preset, conditioning = (getattr(args, key, None) for key in ("flags", "preset", "conditioning"))
    if args.path is None and (flags is not None or preset is not None):
        teacher = adm_architecture(flags, preset)  # no checkpoint: the architecture with random weights
    else:
        teacher = load_teacher(args.path, flags=flags, preset=preset, conditioning=conditioning)
    print(describe(teacher, args.depth))
    return 0
