"""`diffrep teacher info`: the architecture summary and every tap with its output shape."""
from __future__ import annotations

from diffrep.teacher.model import Teacher, load_teacher


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
    print(describe(load_teacher(args.path), args.depth))
    return 0
