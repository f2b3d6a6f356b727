"""RepFusion building blocks: distillation losses, timestep policy, timestep selections (tiny, CPU only)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical

from diffrep.errors import UserError
from diffrep.repfusion import (
    LOSS_WEIGHTS, ActionGrid, DistillLoss, MovingAverageBaseline, PolicyNet, RewardHead, attention_transfer_loss,
    distill_loss, entropy_weight, hint_loss, make_adapter, parse_selection, policy_losses, rkd_loss, rkd_terms,
)


def constant_maps(values: list[float], size: int = 2) -> torch.Tensor:
    """(1, C, size, size) with channel c equal to values[c] everywhere."""
    return torch.tensor(values).view(1, -1, 1, 1).expand(1, len(values), size, size).clone()


# ---------------------------------------------------------------- hint

def test_hint_distances_against_hand_computation():
    student, teacher = constant_maps([1.0, 3.0]), constant_maps([0.0, 1.0])
    # per channel differences 1 and 2
    assert hint_loss(student, teacher, "pooled", "mse").item() == pytest.approx((1 + 4) / 2)
    assert hint_loss(student, teacher, "dense", "mse").item() == pytest.approx((1 + 4) / 2)
    assert hint_loss(student, teacher, "pooled", "l1").item() == pytest.approx((1 + 2) / 2)
    # l2_norm: student direction (1, 3) / sqrt(10), teacher direction (0, 1)
    expected = ((1 / math.sqrt(10)) ** 2 + (3 / math.sqrt(10) - 1) ** 2) / 2
    assert hint_loss(student, teacher, "dense", "l2_norm").item() == pytest.approx(expected)
    assert hint_loss(student, teacher, "pooled", "l2_norm").item() == pytest.approx(expected)


def test_hint_pooled_ignores_layout_dense_does_not():
    teacher = torch.zeros(1, 1, 2, 2)
    student = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])  # mean 0, nonzero everywhere
    assert hint_loss(student, teacher, "pooled").item() == pytest.approx(0.0)
    assert hint_loss(student, teacher, "dense").item() == pytest.approx(1.0)


def test_hint_dense_resizes_student_bilinearly():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 4, 4)
    resized = F.interpolate(student, size=(4, 4), mode="bilinear", align_corners=False)
    assert hint_loss(student, teacher, "dense", "l1").item() == pytest.approx(F.l1_loss(resized, teacher).item())
    # pooled mode compares the means whatever the sizes
    expected = F.mse_loss(student.mean((2, 3)), teacher.mean((2, 3))).item()
    assert hint_loss(student, teacher, "pooled").item() == pytest.approx(expected)


def test_hint_errors_and_adapter():
    with pytest.raises(UserError, match="make_adapter"):
        hint_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(UserError, match="pooled, dense"):
        hint_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), mode="grid")
    with pytest.raises(UserError, match="mse, l1, l2_norm"):
        hint_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), distance="cosine")
    adapter = make_adapter(4, 3)
    assert adapter.kernel_size == (1, 1) and adapter.bias is not None and adapter.out_channels == 3


# ---------------------------------------------------------------- attention transfer

def test_attention_transfer_matches_formula_and_is_scale_invariant():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 3, 3), torch.randn(2, 7, 3, 3)  # channels may differ

    def q(f):
        a = (f ** 2).sum(1, keepdim=True)
        return a / (a.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-6)

    expected = ((q(student) - q(teacher)) ** 2).mean().item()
    assert attention_transfer_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert attention_transfer_loss(7.0 * student, 0.1 * teacher).item() == pytest.approx(expected, rel=1e-4)
    assert attention_transfer_loss(3.0 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-10)


def test_attention_transfer_resizes_student():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 2, 2), torch.randn(2, 6, 4, 4)
    resized = F.interpolate(student, size=(4, 4), mode="bilinear", align_corners=False)
    assert attention_transfer_loss(student, teacher).item() == pytest.approx(
        attention_transfer_loss(resized, teacher).item())


# ---------------------------------------------------------------- RKD

def slow_rkd_terms(s: torch.Tensor, t: torch.Tensor) -> tuple[float, float]:
    """RKD written directly from the definitions, with loops."""
    def distances(f):
        d = torch.cdist(f.double(), f.double())
        return d / d[d > 0].mean()

    def angles(f):
        n = len(f)
        out = torch.zeros(n, n, n, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    e_ij, e_ik = f[j] - f[i], f[k] - f[i]
                    if e_ij.norm() > 0 and e_ik.norm() > 0:
                        out[i, j, k] = (e_ij / e_ij.norm()) @ (e_ik / e_ik.norm())
        return out.flatten()

    return (F.smooth_l1_loss(distances(s), distances(t)).item(),
            F.smooth_l1_loss(angles(s.double()), angles(t.double())).item())


def test_rkd_matches_definition_with_different_dims():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 3), torch.randn(5, 8)
    loss_distance, loss_angle = rkd_terms(student, teacher)
    slow_distance, slow_angle = slow_rkd_terms(student, teacher)
    assert loss_distance.item() == pytest.approx(slow_distance, rel=1e-4)
    assert loss_angle.item() == pytest.approx(slow_angle, rel=1e-4)
    assert rkd_loss(student, teacher).item() == pytest.approx(25 * slow_distance + 50 * slow_angle, rel=1e-4)
    assert rkd_loss(student, teacher).item() > 0


def test_rkd_zero_for_same_geometry():
    torch.manual_seed(0)
    teacher = torch.randn(6, 8)
    assert rkd_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_loss(5.0 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    # an isometric embedding into more dimensions keeps every distance and angle
    basis, _ = torch.linalg.qr(torch.randn(12, 8))  # (12, 8) orthonormal columns
    assert rkd_loss(teacher @ basis.T, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_rkd_gradient_is_finite_with_duplicate_samples():
    student = torch.randn(4, 3).repeat(2, 1).requires_grad_(True)  # each row twice
    rkd_loss(student, torch.randn(8, 5)).backward()
    assert torch.isfinite(student.grad).all()


# ---------------------------------------------------------------- dispatcher

def test_distill_loss_weights_terms_and_errors():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 6, 2, 2), torch.randn(4, 3, 4, 4)
    loss, terms = distill_loss("at", student, teacher)
    assert set(terms) == {"at"} and loss.item() == pytest.approx(LOSS_WEIGHTS["at"] * terms["at"].item())
    loss, terms = distill_loss("rkd", student, teacher)
    assert set(terms) == {"rkd", "rkd_distance", "rkd_angle"}
    assert terms["rkd"].item() == pytest.approx(25 * terms["rkd_distance"].item() + 50 * terms["rkd_angle"].item())
    loss, terms = distill_loss("hint", student, teacher, adapter=make_adapter(6, 3), mode="dense", distance="l1")
    assert loss.requires_grad and not terms["hint"].requires_grad
    with pytest.raises(UserError, match="hint, at, rkd"):
        distill_loss("crd", student, teacher)
    with pytest.raises(UserError, match="valid: p"):
        distill_loss("at", student, teacher, mode="dense")


def test_distill_loss_module_owns_adapter_for_hint_only():
    hint = DistillLoss("hint", 6, 3)
    assert sum(p.numel() for p in hint.parameters()) == 6 * 3 + 3
    assert list(DistillLoss("rkd", 6, 3).parameters()) == []
    student, teacher = torch.randn(4, 6, 2, 2), torch.randn(4, 3, 2, 2)
    loss, _ = hint(student, teacher)
    loss.backward()
    assert hint.adapter.weight.grad is not None


# ---------------------------------------------------------------- policy

def train_two_action_policy(rewards_of_actions: list[float], baseline, steps: int = 20, lr: float = 0.5) -> float:
    """SGD on loss_pg for a state-free two-action policy; returns the final pi(1)."""
    torch.manual_seed(0)
    theta = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([theta], lr=lr)
    table = torch.tensor(rewards_of_actions)
    for _ in range(steps):
        logits = theta.expand(32, 2)
        actions = Categorical(logits=logits).sample()
        loss = policy_losses(logits, actions, table[actions], entropy_weight=0.0, baseline=baseline)["loss_pg"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return theta.softmax(0)[1].item()


def test_reinforce_with_moving_average_baseline_prefers_cheaper_action():
    assert train_two_action_policy([-1.0, 0.0], MovingAverageBaseline(0.9)) > 0.8


def test_reinforce_without_baseline_still_prefers_cheaper_action_in_expectation():
    # Action 1 costs less. At a uniform policy a batch with one sample of each action is the exact expectation.
    theta = torch.zeros(2, requires_grad=True)
    logits = theta.expand(2, 2)
    loss = policy_losses(logits, torch.tensor([0, 1]), torch.tensor([-2.0, -1.0]), entropy_weight=0.0)["loss_pg"]
    loss.backward()
    # both rewards are negative, yet descent raises logit 1 relative to logit 0: d/dtheta = (+0.25, -0.25)
    assert theta.grad.tolist() == pytest.approx([0.25, -0.25])
    # ... but a single batch that happened to sample only the better action pushes it *down* (the variance the
    # reference lives with, and the moving-average baseline removes on average).
    theta.grad = None
    loss = policy_losses(theta.expand(1, 2), torch.tensor([1]), torch.tensor([-1.0]), entropy_weight=0.0)["loss_pg"]
    loss.backward()
    assert theta.grad[1] > 0
    # over sampled SGD steps the reference's signal (all rewards <= 0, no baseline) still gets there
    assert train_two_action_policy([-1.0, 0.0], None) > 0.6
    assert train_two_action_policy([-2.0, -1.0], None, steps=40, lr=0.2) > 0.6


def test_baseline_reduces_gradient_variance_when_rewards_are_offset():
    # Observed: without a baseline the per-batch gradient's spread grows with the rewards' offset from 0
    # (CE-based rewards are all <= 0); subtracting a baseline near the mean reward removes it.
    torch.manual_seed(0)
    table = torch.tensor([-11.0, -10.0])

    def gradient_spread(baseline) -> float:
        grads = []
        for _ in range(30):
            theta = torch.zeros(2, requires_grad=True)
            logits = theta.expand(16, 2)
            actions = Categorical(logits=logits).sample()
            policy_losses(logits, actions, table[actions], 0.0, baseline)["loss_pg"].backward()
            grads.append((theta.grad[1] - theta.grad[0]).item())
        return torch.tensor(grads).std().item()

    assert gradient_spread(None) > 5 * gradient_spread(-10.5)


def test_policy_losses_entropy_term_and_detached_rewards():
    logits = torch.zeros(3, 4, requires_grad=True)
    rewards = torch.ones(3, requires_grad=True)
    out = policy_losses(logits, torch.tensor([0, 1, 2]), rewards, entropy_weight=0.1)
    assert out["entropy"].item() == pytest.approx(math.log(4))
    assert out["loss_entropy"].item() == pytest.approx(-0.1 * math.log(4))
    assert out["loss_pg"].item() == pytest.approx(math.log(4))  # -mean(log(1/4) * 1)
    (out["loss_pg"] + out["loss_entropy"]).backward()
    assert rewards.grad is None and logits.grad is not None
    assert policy_losses(logits, torch.tensor([0, 1, 2]), rewards, 0.0, baseline=1.0)["loss_pg"].item() == 0.0


def test_moving_average_baseline_updates_after_use_and_checkpoints():
    baseline = MovingAverageBaseline(momentum=0.5)
    assert baseline(torch.tensor([-2.0, -4.0])).item() == pytest.approx(-3.0)  # first call: the batch mean
    assert baseline(torch.tensor([-1.0])).item() == pytest.approx(-3.0)  # used before the update
    assert baseline.value.item() == pytest.approx(-2.0)
    restored = MovingAverageBaseline(momentum=0.5)
    restored.load_state_dict(baseline.state_dict())
    assert restored(torch.tensor([0.0])).item() == pytest.approx(-2.0)


def test_entropy_weight_schedule():
    assert entropy_weight(0) == pytest.approx(0.1)
    assert entropy_weight(50) == pytest.approx(0.05)
    assert entropy_weight(99.5) == pytest.approx(0.0005)
    assert entropy_weight(100) == 0.0 and entropy_weight(150) == 0.0
    assert entropy_weight(10, beta0=0.0) == 0.0
    assert entropy_weight(1, beta0=1.0, end_epoch=4) == pytest.approx(0.75)


def test_action_grid():
    assert torch.equal(ActionGrid(1000).timesteps, torch.arange(1000))
    grid = ActionGrid(1000, 50)
    assert grid.timesteps[0] == 0 and grid.timesteps[-1] == 999 and len(grid.timesteps) == 50
    assert torch.equal(grid.to_t(torch.tensor([[0, 1], [49, 25]])), grid.timesteps[torch.tensor([[0, 1], [49, 25]])])
    assert grid.timesteps[1].item() == round(999 / 49)
    for num_timesteps in (2, 3, 7, 10, 1000):
        for num_actions in {2, 3, num_timesteps // 2, num_timesteps - 1, num_timesteps}:
            if not 2 <= num_actions <= num_timesteps:
                continue
            t = ActionGrid(num_timesteps, num_actions).timesteps
            assert t[0] == 0 and t[-1] == num_timesteps - 1
            assert (t[1:] > t[:-1]).all(), (num_timesteps, num_actions)
    for bad in (1, 1001):
        with pytest.raises(UserError, match="2..1000"):
            ActionGrid(1000, bad)


@pytest.mark.parametrize("channels,resolution,flat", [(1, 32, 400), (3, 32, 400), (3, 64, 256), (1, 28, 256),
                                                      (1, 16, 16)])
def test_policy_net_shapes(channels, resolution, flat):
    net = PolicyNet(channels, resolution, num_actions=10)
    assert net.classifier[0].in_features == flat
    logits = net(torch.randn(2, channels, resolution, resolution))
    assert logits.shape == (2, 10)
    assert Categorical(logits=logits).sample().shape == (2,)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (3 if resolution >= 64 else 2)


def test_policy_net_rejects_small_images():
    with pytest.raises(UserError, match="16 x 16"):
        PolicyNet(1, 8, 10)


def test_reward_head():
    head = RewardHead(8, 3)
    assert [m.out_features for m in head.net if isinstance(m, torch.nn.Linear)] == [8, 8, 3]
    assert [m.out_features for m in RewardHead(8, 3, hidden=4).net if isinstance(m, torch.nn.Linear)] == [4, 4, 3]
    feature = torch.randn(5, 8, 2, 2, requires_grad=True)
    assert torch.allclose(head(feature), head(feature.mean((2, 3))))
    labels = torch.tensor([0, 1, 2, 0, 1])
    loss, reward = head.loss_and_reward(feature, labels)
    ce = F.cross_entropy(head(feature), labels, reduction="none")
    assert torch.allclose(reward, -ce) and not reward.requires_grad
    loss.backward()
    assert feature.grad is None and head.net[0].weight.grad is not None


# ---------------------------------------------------------------- timestep selections

def test_parse_selection_kinds_and_sampling():
    assert parse_selection("policy", 1000).kind == "policy"
    fixed = parse_selection("fixed:0", 1000)
    assert fixed.kind == "fixed" and torch.equal(fixed.sample(3), torch.zeros(3, dtype=torch.long))
    uniform = parse_selection(" Uniform:0-1 ", 1000)
    t = uniform.sample(200, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and set(t.tolist()) == {0, 1}
    assert torch.equal(uniform.sample(50, torch.Generator().manual_seed(1)),
                       uniform.sample(50, torch.Generator().manual_seed(1)))
    assert str(parse_selection("uniform:0-49", 1000)) == "uniform:0-49"
    assert parse_selection("fixed:999", 1000).low == 999
    with pytest.raises(UserError, match="policy network"):
        parse_selection("policy", 1000).sample(2)


@pytest.mark.parametrize("spec,message", [("fixed:1000", "0..999"), ("uniform:0-1000", "0..999"),
                                          ("uniform:5-3", "LO must not exceed HI"), ("uniform:0", "uniform:0-49"),
                                          ("fixed:-1", "fixed:T"), ("max:50", "policy, fixed:0"), ("", "fixed:T")])
def test_parse_selection_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_selection(spec, 1000)
