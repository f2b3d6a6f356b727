"""The REINFORCE timestep policy of RepFusion (reference section 4): a contextual bandit over timesteps.

Per batch (the reference's `Repfusion32_ImageClassifier.forward_train`):

    logits = policy(x); dist = Categorical(logits=logits); actions = dist.sample()
    t = grid.to_t(actions)                                    # the teacher's timestep per sample
    feature = teacher.features(x0, t, tap)                    # no gradient
    loss_head, reward = head.loss_and_reward(feature, labels) # reward = -CE, detached
    losses = policy_losses(logits, actions, reward, entropy_weight(epoch), baseline)
    total = kd_weight * L_feat + loss_head + losses["loss_pg"] + losses["loss_entropy"]

The policy, the head and the student receive gradients from disjoint terms, so one optimizer over all of
them (as in the reference) is equivalent to separate ones with the same learning rate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

from diffrep.errors import UserError


class PolicyNet(nn.Module):
    """The reference's LeNet-5 policy `PolicyNet_Cov`, generalised to any channels and square resolution >= 16.

    conv(C->6, k5) -> ReLU -> maxpool 2 -> conv(6->16, k5) -> ReLU -> maxpool 2 [-> conv(16->16, k5) -> ReLU ->
    maxpool 2 when resolution >= 64, the reference's `PolicyNet_Cov64`] -> flatten -> FC 120 -> ReLU -> FC 84 ->
    ReLU -> FC num_actions. Returns logits (the reference applies a softmax and builds Categorical(probs); the
    distribution is the same, logits are numerically safer). PyTorch's default initialisation, as in the reference.
    """

    def __init__(self, in_channels: int, resolution: int, num_actions: int):
        super().__init__()
        if resolution < 16:
            raise UserError(f"the policy network needs images of at least 16 x 16 pixels, got {resolution}")
        if num_actions < 1:
            raise UserError(f"the policy needs at least one action, got {num_actions}")
        widths = [in_channels, 6, 16] + ([16] if resolution >= 64 else [])
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():  # a dry run gives the flatten size: 400 at 32x32, 256 at 28x28 and 64x64
            flat = self.features(torch.zeros(1, in_channels, resolution, resolution)).shape[1]
        self.classifier = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, num_actions))
        self.resolution = resolution

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, R, R) images -> (B, num_actions) logits."""
        return self.classifier(self.features(images))


class ActionGrid:
    """The policy's action space: action a picks timestep timesteps[a].

    The default (num_actions = num_timesteps) is the reference: every training timestep is an action.
    A coarser grid is a documented deviation (fewer logits to learn from a bandit signal): action a maps to
    t = round(a * (T - 1) / (A - 1)), rounding halves up, so the grid covers 0 and T - 1, is evenly spaced
    and has no duplicates.
    """

    def __init__(self, num_timesteps: int, num_actions: int | None = None):
        num_actions = num_timesteps if num_actions is None else num_actions
        if num_timesteps < 2:
            raise UserError(f"the action grid needs a teacher with at least 2 timesteps, got {num_timesteps}")
        if not 2 <= num_actions <= num_timesteps:
            raise UserError(f"the number of policy actions must lie in 2..{num_timesteps} (the teacher's timesteps),"
                            f" got {num_actions}; for a single timestep use the selection fixed:T")
        self.num_timesteps, self.num_actions = num_timesteps, num_actions
        # integer arithmetic for round-half-up: floor(a * (T-1) / (A-1) + 1/2)
        span, steps = num_timesteps - 1, num_actions - 1
        self.timesteps = torch.tensor([(2 * a * span + steps) // (2 * steps) for a in range(num_actions)],
                                      dtype=torch.long)

    def to_t(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (any shape, integer) -> timesteps (same shape and device)."""
        return self.timesteps.to(actions.device)[actions.long()]

    def __repr__(self) -> str:
        return f"ActionGrid(num_timesteps={self.num_timesteps}, num_actions={self.num_actions})"


class RewardHead(nn.Module):
    """The reference's task head h on the GAP of the teacher feature: Linear(C, H)-ReLU-Linear(H, H)-ReLU-Linear(H, K).

    hidden defaults to C (the CIFAR configs); the Tiny-ImageNet config used C // 2. It is trained with cross
    entropy on detached teacher features, and its per-sample CE is the policy's cost (reward = -CE).
    """

    def __init__(self, teacher_channels: int, num_classes: int, hidden: int | None = None):
        super().__init__()
        hidden = teacher_channels if hidden is None else hidden
        self.net = nn.Sequential(nn.Linear(teacher_channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, teacher_feature: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) map or (B, C) pooled vector -> (B, K) logits; the feature is detached (h only is trained)."""
        pooled = teacher_feature.detach().float()
        if pooled.dim() == 4:
            pooled = pooled.mean(dim=(2, 3))
        return self.net(pooled)

    def loss_and_reward(self, teacher_feature: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean CE to train the head, per-sample reward -CE detached for the policy)."""
        ce = F.cross_entropy(self(teacher_feature), labels, reduction="none")
        return ce.mean(), -ce.detach()


class MovingAverageBaseline(nn.Module):
    """A REINFORCE baseline b: the exponential moving average of the mean batch reward (a documented deviation;
    the reference has no baseline). Subtracting b does not bias the gradient, it only reduces its variance.

    `baseline(rewards)` returns the b to use for this batch (the batch mean on the first call), then updates
    b <- momentum * b + (1 - momentum) * mean(rewards). The state is a buffer, so it is saved in checkpoints.
    Under DDP each process keeps its own average of its own batches.
    """

    def __init__(self, momentum: float = 0.9):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"the baseline momentum must lie in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("value", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, update: bool = True) -> torch.Tensor:
        batch_mean = rewards.detach().float().mean().to(self.value.device)
        if not bool(self.initialized):
            self.value.copy_(batch_mean)
            self.initialized.fill_(True)
            return self.value.clone()
        used = self.value.clone()
        if update:
            self.value.mul_(self.momentum).add_((1.0 - self.momentum) * batch_mean)
        return used


def policy_losses(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, entropy_weight: float,
                  baseline: float | torch.Tensor | MovingAverageBaseline | None = None) -> dict[str, torch.Tensor]:
    """The policy's REINFORCE and entropy terms for one batch.

    loss_pg = -mean_i log pi(a_i | x_i) * (r_i - b), with b = 0 when baseline is None (the reference);
    b may be a number or a MovingAverageBaseline (called here, so it is updated once per call).
    loss_entropy = -entropy_weight * mean_i H(pi(. | x_i)). Also returns, detached for logging,
    entropy (the mean H) and baseline (the b used). Rewards are detached: only the policy learns from them.
    """
    dist = Categorical(logits=logits.float())
    rewards = rewards.detach().float()
    if isinstance(baseline, MovingAverageBaseline):
        b = baseline(rewards).to(rewards.device)
    else:
        b = torch.as_tensor(0.0 if baseline is None else baseline, dtype=torch.float32, device=rewards.device)
    entropy = dist.entropy().mean()
    return {
        "loss_pg": -(dist.log_prob(actions) * (rewards - b.detach())).mean(),
        "loss_entropy": -entropy_weight * entropy,
        "entropy": entropy.detach(),
        "baseline": b.detach(),
    }


def entropy_weight(epoch: float, beta0: float = 0.1, end_epoch: float = 100) -> float:
    """The reference's EntropyDecayHook: beta0 * max(0, 1 - epoch / end_epoch) for the 0-based epoch (fractional
    epochs allowed, for a per-step schedule); 0 from end_epoch on."""
    if end_epoch <= 0:
        raise UserError(f"the entropy decay end epoch must be positive, got {end_epoch}")
    if epoch < 0:
        raise UserError(f"the epoch must be >= 0, got {epoch}")
    return beta0 * max(0.0, 1.0 - epoch / end_epoch)
