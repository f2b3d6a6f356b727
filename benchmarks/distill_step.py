"""Seconds per RepFusion distillation step: early-exit teacher vs a full teacher pass with hooks, vs supervised.

Three training steps of the same student on the same batch, timed in alternation (medians compared):
  - distill_early: the diffrep step, the teacher run only up to its tap (mid_block.resnets.1.conv2);
  - distill_full:  the same step with the whole UNet run and the tap read by a hook (the official code);
  - supervised:    a plain cross-entropy step of the student alone (the cost floor).
Each distillation step is the policy variant: policy forward and sampling, teacher feature, student
forward, hint loss through the adapter, reward head, REINFORCE and entropy terms, backward, SGD step.

    python benchmarks/distill_step.py [--arch resnet18] [--stem imagenet] [--batch 128] [--repeats 5]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from diffrep.repfusion import ActionGrid, DistillLoss, PolicyNet, RewardHead, policy_losses
from diffrep.repfusion.distill import default_teacher_tap
from diffrep.tasks import build_student, default_tap, replace_head, student_features
from diffrep.teacher import load_teacher
from timing import alternating_medians, machine, save_result, step_parser  # benchmarks/timing.py


def make_steps(arch: str, stem: str, batch: int) -> dict:
    teacher = load_teacher()
    tap, s_tap = default_teacher_tap(teacher), default_tap(arch)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, teacher.channels, teacher.resolution, teacher.resolution, generator=gen) * 2 - 1
    y = torch.randint(0, 10, (batch,), generator=gen)
    student = build_student(arch, teacher.channels, stem)
    features = student_features(student, s_tap)
    c_student = features(x[:2])[s_tap].shape[1]
    c_teacher = teacher.taps[tap][0][0]
    grid = ActionGrid(teacher.num_timesteps)
    policy = PolicyNet(teacher.channels, teacher.resolution, grid.num_actions)
    head, loss_fn = RewardHead(c_teacher, 10), DistillLoss("hint", c_student, c_teacher)
    distill_opt = torch.optim.SGD([*student.parameters(), *loss_fn.parameters(), *head.parameters(),
                                   *policy.parameters()], lr=0.01, momentum=0.9)
    classifier = replace_head(build_student(arch, teacher.channels, stem), arch, 10)
    supervised_opt = torch.optim.SGD(classifier.parameters(), lr=0.01, momentum=0.9)

    def distill(early_exit: bool):
        logits = policy(x)
        actions = torch.multinomial(logits.detach().softmax(-1), 1, generator=gen).squeeze(1)
        t = grid.to_t(actions)
        teacher_map = teacher.features(x, t, tap, early_exit=early_exit)[tap]
        loss, _ = loss_fn(features(x)[s_tap], teacher_map)
        loss_head, reward = head.loss_and_reward(teacher_map, y)
        terms = policy_losses(logits, actions, reward, 0.1)
        distill_opt.zero_grad()
        (loss + loss_head + terms["loss_pg"] + terms["loss_entropy"]).backward()
        distill_opt.step()

    def supervised():
        loss = F.cross_entropy(classifier(x), y)
        supervised_opt.zero_grad()
        loss.backward()
        supervised_opt.step()

    return {"distill_early": lambda: distill(True), "distill_full": lambda: distill(False), "supervised": supervised}


def main() -> None:
    parser = step_parser(__doc__, batch=128, repeats=5)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--stem", default="imagenet", help="imagenet (the CPU protocol's student) or small")
    args = parser.parse_args()
    steps = make_steps(args.arch, args.stem, args.batch)
    med = alternating_medians(steps, args.repeats)
    result = {
        "student": f"{args.arch} ({args.stem} stem)", "batch": args.batch, "repeats": args.repeats,
        **machine(),
        **{f"{key}_seconds_per_step": round(value, 4) for key, value in med.items()},
        "full_over_early": round(med["distill_full"] / med["distill_early"], 2),
        "early_over_supervised": round(med["distill_early"] / med["supervised"], 2),
    }
    save_result(result, args.out, "distill_step")


if __name__ == "__main__":
    main()
