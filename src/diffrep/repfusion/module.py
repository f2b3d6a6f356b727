"""DistillModule: RepFusion distillation of a frozen teacher's feature into a student, as one Lightning module.

Per step (reference section 4 and its recipe in section 8): the timestep t of every image comes from the
selection (the REINFORCE policy, fixed:T or uniform:LO-HI); the teacher's tap at (x, t) supervises the
student's tap through the distillation loss; with the policy, a reward head on the pooled teacher feature is
trained with cross entropy and its per-image -CE is the policy's reward. One SGD optimizer over student,
adapter, head and policy, as in the reference; the terms reach disjoint parameters.

Labels: with every label available the policy learns from the distillation batch itself (the reference).
With a label fraction below 1 the student still distils from every image, and the head and the policy learn
from a second batch drawn from the labelled images only (`policy_batch`), so no hidden label is ever used. With
policy.reward_holdout (a deviation) part of those images is kept from the head, and the policy's reward is the head's
CE on a third batch drawn from them: a head that has learnt its few images by heart rewards every t alike.
"""
from __future__ import annotations

import math
from collections import defaultdict, deque

import torch

from diffrep.data import ImageSet, outside, stratified_subset
from diffrep.errors import UserError
from diffrep.repfusion.history import TimestepHistory
from diffrep.repfusion.losses import DistillLoss
from diffrep.repfusion.policy import ActionGrid, MovingAverageBaseline, PolicyNet, RewardHead, entropy_weight
from diffrep.repfusion.policy import policy_losses
from diffrep.repfusion.timesteps import parse_selection
from diffrep.tasks import build_student, student_features
from diffrep.teacher import Teacher
from diffrep.train import TimedModule, ema_model, step_generator, step_loader
from diffrep.train.steps import StepBatches

RANK_SEED = 7919  # each device draws its own batches and noise


class DistillModule(TimedModule):
    def __init__(self, teacher: Teacher, cfg: dict, train_data: ImageSet, labelled_data: ImageSet | None,
                 steps_per_epoch: int):
        """cfg: the resolved `diffrep distill` config (teacher_tap, teacher_input, student, loss, timesteps,
        policy, optim, seed, data.hflip). labelled_data: None when every image has its label."""
        super().__init__()
        self.teacher = teacher  # a plain object, not a submodule: frozen, and kept out of every checkpoint
        self.cfg, self.train_data, self.labelled_data = cfg, train_data, labelled_data
        self.reward_data = None  # the labelled images kept from the head for the policy's reward
        if labelled_data is not None and cfg["timesteps"] == "policy" and cfg["policy"]["reward_holdout"]:
            self.labelled_data, self.reward_data = split_for_reward(labelled_data, cfg["policy"]["reward_holdout"],
                                                                    cfg["seed"])
        self.steps_per_epoch = steps_per_epoch
        s = cfg["student"]
        self.student = build_student(s["arch"], teacher.channels, s["stem"])
        # (teacher tap, student tap): the main pair, then the extra hints, each with its own loss and adapter
        self.pairs = [(cfg["teacher_tap"], s["tap"])] + [tuple(pair.split(":", 1))
                                                          for pair in cfg.get("extra_hints") or []]
        self.teacher_taps = list(dict.fromkeys(teacher_tap for teacher_tap, _ in self.pairs))
        self.student_taps = student_features(self.student, list(dict.fromkeys(tap for _, tap in self.pairs)))
        self.ema = ema_model(self.student, cfg["optim"]["ema_decay"])
        with torch.no_grad():
            shapes = self.student_taps(torch.zeros(2, teacher.channels, teacher.resolution, teacher.resolution))
        loss = cfg["loss"]
        opts = {k: loss[k] for k in ("mode", "distance") if loss["name"] == "hint"}
        losses = [DistillLoss(loss["name"], shapes[student_tap].shape[1], teacher.taps[teacher_tap][0][0],
                              loss["weight"], **opts) for teacher_tap, student_tap in self.pairs]
        self.distill, self.extra_distill = losses[0], torch.nn.ModuleList(losses[1:])
        c_teacher = teacher.taps[cfg["teacher_tap"]][0][0]
        self.selection = parse_selection(cfg["timesteps"], teacher.num_timesteps)
        p = cfg["policy"]
        if self.selection.kind == "policy":
            self.grid = ActionGrid(teacher.num_timesteps, p["actions"])
            self.policy = PolicyNet(teacher.channels, teacher.resolution, self.grid.num_actions)
            self.head = RewardHead(c_teacher, len(train_data.classes))
            self.baseline = MovingAverageBaseline(p["baseline_momentum"]) if p["baseline"] == "moving_average" \
                else None
        self.history = TimestepHistory(teacher.num_timesteps)
        self.recent = defaultdict(lambda: deque(maxlen=50))  # the last losses, for metrics.json

    # ---- data ---------------------------------------------------------------------------------------------
    def _seed(self) -> int:
        return self.cfg["seed"] + RANK_SEED * self.global_rank

    def train_dataloader(self):
        return step_loader(self.train_data, self.cfg["optim"]["batch_size"], lambda: self.global_step, self._seed(),
                           self.cfg["data"]["hflip"])

    def _labelled_batch(self, step: int, data: ImageSet | None = None, stream: int = 1):
        batches = StepBatches(self.labelled_data if data is None else data,
                              self.cfg["policy"]["batch_size"] or self.cfg["optim"]["batch_size"],
                              lambda: step, self._seed() + stream, self.cfg["data"]["hflip"])
        x, y = batches.batch(step)
        return x.to(self.device), y.to(self.device)

    # ---- one step -----------------------------------------------------------------------------------------
    def _teacher_features(self, x: torch.Tensor, t: torch.Tensor, gen: torch.Generator,
                          taps: list[str] | None = None) -> dict[str, torch.Tensor]:
        """{tap: map} of the teacher at (x, t), all taps from one early-exit pass (default: every distilled tap)."""
        noise = torch.randn(x.shape, generator=gen) if self.cfg["teacher_input"] == "noised" else None
        taps = taps or self.teacher_taps
        return {tap: value.to(self.device)
                for tap, value in self.teacher.features(x, t, taps, self.cfg["teacher_input"], noise).items()}

    def _act(self, x: torch.Tensor, gen: torch.Generator, learn: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, actions, t) with the actions drawn from the policy by a per-step generator (exact resume);
        learn=False when this batch only needs timesteps, not a policy gradient."""
        with torch.set_grad_enabled(learn and torch.is_grad_enabled()):
            logits = self.policy(x)
        actions = torch.multinomial(logits.detach().float().softmax(-1).cpu(), 1, generator=gen).squeeze(1)
        actions = actions.to(self.device)
        return logits, actions, self.grid.to_t(actions)

    def training_step(self, batch, batch_idx):
        x, y = batch
        step, epoch = self.global_step, self.global_step / self.steps_per_epoch
        gen = step_generator(self._seed(), step, stream=2)
        logs = {}
        if self.selection.kind == "policy":
            logits, actions, t = self._act(x, gen, learn=self.labelled_data is None)
            probs = logits.detach().float().softmax(-1)
            by_t = torch.zeros(len(x), self.teacher.num_timesteps, device=probs.device)
            self.history.add(int(epoch), t, by_t.index_copy_(1, self.grid.timesteps.to(probs.device), probs))
        else:
            t = self.selection.sample(len(x), gen, self.device)
            self.history.add(int(epoch), t)
        teacher_maps, student_maps = self._teacher_features(x, t, gen), self.student_taps(x)
        loss, terms = self.distill(student_maps[self.pairs[0][1]], teacher_maps[self.pairs[0][0]])
        logs |= {f"loss/{k}": v for k, v in terms.items()}
        for (teacher_tap, student_tap), extra in zip(self.pairs[1:], self.extra_distill):
            extra_loss, _ = extra(student_maps[student_tap], teacher_maps[teacher_tap])
            logs[f"loss/feat_{teacher_tap}_{student_tap}"] = extra_loss.detach()
            loss = loss + extra_loss
        logs["loss/feat"] = loss.detach()
        teacher_map = teacher_maps[self.cfg["teacher_tap"]]
        if self.selection.kind == "policy":
            if self.labelled_data is not None:  # the policy learns from labelled images only
                x, y = self._labelled_batch(step)
                logits, actions, t_policy = self._act(x, gen, learn=self.reward_data is None)
                main = self.cfg["teacher_tap"]
                teacher_map = self._teacher_features(x, t_policy, gen, [main])[main]
            decay_at = epoch if self.cfg["policy"]["entropy_decay"] == "step" else math.floor(epoch)
            beta = entropy_weight(decay_at, self.cfg["policy"]["entropy"], self.entropy_end_epoch)
            loss_head, reward = self.head.loss_and_reward(teacher_map, y)
            if self.reward_data is not None:  # the reward on labelled images the head never trains on
                x, y = self._labelled_batch(step, self.reward_data, stream=2)
                logits, actions, t_reward = self._act(x, gen)
                with torch.no_grad():
                    _, reward = self.head.loss_and_reward(self._teacher_features(x, t_reward, gen, [main])[main], y)
            terms = policy_losses(logits, actions, reward, beta, self.baseline)
            loss = loss + loss_head + terms["loss_pg"] + terms["loss_entropy"]
            logs |= {"loss/head": loss_head.detach(), "loss/pg": terms["loss_pg"].detach(),
                     "loss/entropy": terms["loss_entropy"].detach(), "policy/entropy": terms["entropy"],
                     "policy/beta": beta, "policy/reward": reward.mean(), "policy/baseline": terms["baseline"]}
        logs |= {"t/mean": t.float().mean(), "loss/total": loss.detach(),
                 "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        self.log_dict(logs, prog_bar=False)
        # the bar shows the distillation term: the total holds the REINFORCE surrogate, negative by design
        self.log("feat", logs["loss/feat"], prog_bar=True, logger=False)
        for key, value in logs.items():
            self.recent[key].append(float(value))
        return loss

    @property
    def entropy_end_epoch(self) -> float:
        """The epoch at which the entropy bonus reaches 0: as configured, else half the run (the reference: 100 of
        200 epochs)."""
        end = self.cfg["policy"]["entropy_end_epoch"]
        return end if end else max(self.trainer.max_steps / self.steps_per_epoch / 2, 1e-9)

    def optimizer_step(self, *args, **kwargs):
        # The EMA is updated here, not in on_train_batch_end: callbacks (the checkpoint) run before that hook.
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.student)

    def configure_optimizers(self):
        o = self.cfg["optim"]
        params = [(name, p) for name, p in self.named_parameters() if p.requires_grad and not name.startswith("ema.")]
        # the policy on a slower rate when asked (a collapsing policy); else one group, the reference's optimizer
        slow = self.cfg["policy"]["lr_ratio"] != 1 and self.selection.kind == "policy"
        groups = [{"params": [p for name, p in params if not (slow and name.startswith("policy."))]}]
        if slow:
            groups.append({"params": [p for name, p in params if name.startswith("policy.")],
                           "lr": o["lr"] * self.cfg["policy"]["lr_ratio"]})
        opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"],
                              nesterov=o["nesterov"])
        total = max(1, self.trainer.max_steps)
        milestones = sorted({max(1, round(f * total)) for f in o["milestones"]})  # step x0.1, as the reference
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- bookkeeping --------------------------------------------------------------------------------------
    def on_train_start(self):
        super().on_train_start()
        self.teacher.to(self.device)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["timestep_history"] = self.history.state_dict()
        checkpoint["recent"] = {k: list(v) for k, v in self.recent.items()}

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        if "timestep_history" in checkpoint:
            self.history.load_state_dict(checkpoint["timestep_history"])
        for key, values in checkpoint.get("recent", {}).items():
            self.recent[key].extend(values)

    def final_metrics(self) -> dict:
        """Means of the last 50 logged values of every term, the last epoch's timestep summary, the time."""
        means = {key.replace("/", "_"): sum(v) / len(v) for key, v in self.recent.items() if v and key != "lr"}
        return {**means, **self.history.summary(), "steps": self.global_step, "train_seconds": self.train_seconds}


def split_for_reward(labelled: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(the head's images, the reward's): a stratified `fraction` of the labelled images kept from the head."""
    held = stratified_subset(labelled.labels, fraction, seed)
    kept = outside(len(labelled), held)
    if not len(kept):
        raise UserError(f"policy.reward_holdout {fraction} keeps all {len(labelled)} labelled images from the reward "
                        f"head; lower it or label more images")
    return labelled.subset(kept), labelled.subset(held)
