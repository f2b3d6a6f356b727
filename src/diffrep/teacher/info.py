"""`diffrep teacher info`: the architecture summary and every tap with its output shape."""
from __future__ import annotations

from diffrep.teacher.model import load_teacher


def depth(name: str) -> int:
    """Named parts of a tap, indexes not counted: mid_block 1, down_blocks.0.resnets.1 2."""
    return sum(not part.isdigit() for part in name.split("."))


def main(args) -> int:
    teacher = load_teacher(args.path)
    print(teacher.summary())
    taps = {name: spec for name, spec in teacher.taps.items()
            if args.depth is None or depth(name) <= args.depth}
    print(f"\ntaps ({len(taps)} of {len(teacher.taps)}, in execution order; output C x H x W at "
          f"{teacher.resolution} x {teacher.resolution}):")
    width = max(len(name) for name in taps)
    for name, (shape, kind) in taps.items():
        print(f"  {name:<{width}}  {' x '.join(map(str, shape)):>14}  {kind}")
    return 0
