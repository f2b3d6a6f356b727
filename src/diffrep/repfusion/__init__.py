"""RepFusion (Yang & Wang, ICCV 2023): distil a frozen DPM's features into a small student, with the teacher's
timestep chosen per image by a REINFORCE policy. These are the pure-PyTorch parts; the training module that
wires them to a Teacher, a student and an optimizer builds on them.

The method as implemented (see reference/repfusion.md, sections 3 and 4)
-----------------------------------------------------------------------
- Distillation losses (`losses.py`), faithful to the official code, with its kd_weights as defaults
  (`LOSS_WEIGHTS`: hint 1, at 1000, rkd 1):
  - hint: a 1x1 conv adapter (with bias) maps the student map to the teacher's channels; "pooled" is the MSE of
    the global-average-pooled maps (the RL classes), "dense" the per-pixel distance after bilinearly resizing
    the student map to the teacher's size (the CelebA classes), with distance mse, l1 or l2_norm;
  - at: attention transfer, p = 2, sum over channels of |F|^p normalised by its L2 norm over H x W (+1e-6);
  - rkd: relational KD on the pooled vectors, 25 * distance term + 50 * angle term, SmoothL1, no adapter.
- Timestep policy (`policy.py`), a contextual bandit: a LeNet-5 over the image gives a Categorical over
  actions; the teacher's feature at the sampled t feeds a reward head (3-layer MLP on its GAP) trained with CE;
  the reward is -CE per sample; REINFORCE loss -mean(log pi(a|x) * r); an entropy bonus whose weight decays
  linearly from beta0 = 0.1 to 0 at epoch 100, changing once per epoch as the reference's EntropyDecayHook does
  (beta = beta0 * max(0, 1 - epoch / E) for the whole epoch).
- Other timestep selections (`timesteps.py`): fixed:T and uniform:LO-HI, the reference's non-RL classes.

Options that deviate from the reference (all off by default unless stated)
-------------------------------------------------------------------------
- `MovingAverageBaseline`: b = EMA of the batch-mean reward subtracted from the reward. The reference has no
  baseline: all its rewards are <= 0, so every sampled action is pushed down, the better ones less. That is
  unbiased in expectation but noisy; the baseline keeps the expected gradient and lowers its variance.
- `ActionGrid(T, num_actions)` with num_actions < T: an evenly spaced grid of timesteps including 0 and T-1,
  instead of one action per training timestep.
- Teacher input: the official code feeds the *clean* image x0 with the embedding of t; `Teacher.features(...,
  input="noised")` feeds x_t ~ q(x_t | x0) instead, as the "DPM is a denoising autoencoder" reading suggests.
  The choice belongs to the caller; nothing here depends on it.
- `policy.entropy_decay: step`: the entropy weight decays every step (beta at the fractional epoch) instead of once
  per epoch; diffrep's behaviour before it followed the reference here.
- `extra_hints: [TEACHER_TAP:STUDENT_TAP, ...]` (a multi-tap hint): more teacher taps distilled into more student
  stages beside the main pair, each through its own loss term and adapter, from the same early-exit teacher pass
  at the same t; the reward head and the policy still read the main teacher tap. The reference distils one tap.
- `PolicyNet` accepts any channel count and resolution >= 16 (the reference: 3 x 32 x 32, or 3 x 64 x 64 with a
  third conv block, which is kept for resolution >= 64) and returns logits instead of probabilities.
"""
from diffrep.repfusion.losses import (
    LOSS_WEIGHTS, DistillLoss, attention_map, attention_transfer_loss, distill_loss, hint_loss, make_adapter,
    rkd_loss, rkd_terms,
)
from diffrep.repfusion.policy import (
    ActionGrid, MovingAverageBaseline, PolicyNet, RewardHead, entropy_weight, policy_losses,
)
from diffrep.repfusion.timesteps import TimestepSelection, parse_selection

__all__ = [
    "LOSS_WEIGHTS", "DistillLoss", "attention_map", "attention_transfer_loss", "distill_loss", "hint_loss",
    "make_adapter", "rkd_loss", "rkd_terms",
    "ActionGrid", "MovingAverageBaseline", "PolicyNet", "RewardHead", "entropy_weight", "policy_losses",
    "TimestepSelection", "parse_selection",
]
