"""PDAE: unsupervised representation learning from a pre-trained DPM (Zhang et al., NeurIPS 2022).

The method as implemented (section numbers are those of reference/pdae.md, which follows the official code):

- Semantic encoder z = E(x0) (encoder.py, 2.1): stride-2 3x3 convs, each followed by GroupNorm(32) + SiLU, one
  4-head attention block on the 16 x 16 map, flatten, Linear to z_dim. At 128 and 64 px it is the reference's
  network exactly (3,914,240 and 1,487,104 parameters); other sizes halve down to 4 x 4 the same way.
- Gradient estimator G(x_t, z, t) (estimator.py, 2.3): the frozen teacher's time embedding, conv_in and down
  blocks run once without gradients; their skips feed the teacher's own decoder (eps_theta) and a new trainable
  mid block + up blocks + output layers that mirror the teacher's config, in which every residual block has a
  nested adaptive group norm (zblock.py): h = (GN(h) (1 + scale_t) + shift_t) (1 + scale_z) + shift_z, with
  (scale_t, shift_t) = Linear(SiLU(t_emb)), (scale_z, shift_z) = Linear(SiLU(z_emb)), z_emb = Linear(z).
  Attention blocks are not conditioned. The output conv is zero, so G = 0 at init. On an ADM (guided-diffusion)
  teacher, the reference's own architecture, adm_parts.py builds exactly the official ShiftUNet: time_embed and
  input_blocks frozen, new middle and output blocks with ResBlockShift, label_emb = Linear(z); backbone.py picks
  the family's halves.
- The shift (shift.py, 1.3), in the official code's sign convention:
      shift_coef_t = -sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t)
      eps_hat = eps_theta(x_t, t) + shift_coef_t G(x_t, z, t),
  i.e. the DPM's posterior mean moves by +beta~_t G (classifier guidance with G as grad log p(z | x_t)).
  DDIM uses eps_hat = eps_theta - sqrt(1 - abar_t) G (`shifted_eps(..., coefficient="ddim")`).
- Loss (module.py, 1.4): t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
      L = mean over batch, channels and pixels of lambda_t (eps - eps_hat)^2,
  with lambda_t = SNR_t^gamma / (1 + SNR_t), gamma = 0.1 (weighting.py, 1.5); `none` (lambda = 1) and `p2`
  (1 / (k + SNR)^gamma', k = 1, gamma' = 1) for the ablation. As in the official code, abar_t, alpha_t, the SNR,
  lambda_t and the shift coefficient come from the betas in float64 and are cast at use (precision.py;
  `schedule_precision: float32` keeps the teacher scheduler's float32 abar_t instead, an option). Only E and G
  train (Adam, constant lr, no clipping); their EMA is saved.
- Baseline (baseline.py): Diff-AE, the same encoder with a full z-conditioned UNet of the teacher's
  architecture (z scales only, as Diff-AE) trained from scratch with the plain eps loss.
- Applications (4.1-4.4, 1.6), each a `diffrep pdae` command on a saved model (app.py loads it): DDIM encode and
  decode with one eps function for the teacher, a PDAE or a Diff-AE (ddim.py); reconstruct, interpolate,
  manipulate, encode (z + linear probe) and gap. evaluation.py records the random-x_T MSE during training
  (--eval.every_n_steps) and `diffrep pdae compare` turns two such records into time-to-the-same-MSE.

Deviations, and why:
- z_dim defaults to the teacher's time-embedding width (4 x block_out_channels[0]) instead of a fixed 512: that
  is 512 for the reference's C = 128 DPMs, and 128 for the shipped 32 x 32 x 1 teacher, where a 512-d code
  would be half the size of the image it should summarise (512 is 1-4% of a 64 or 128 px RGB image).
- EMA decay 0.999 with the shared warm-up (1 + n) / (10 + n), not 0.9999 from step 0: runs here are thousands
  of steps, not hundreds of thousands. Batch 64 rather than 128 by default, for one CPU; both are options.
- The G branch's time conditioning is always scale-shift (the reference's ResBlockShift), even when the teacher's
  own resnets add the time embedding (diffusers' resnet_time_scale_shift "default").
- The encoder's group norm uses gcd(32, channels) groups, so widths below 32 (tests) work; 32 otherwise.
- Teachers: diffusers UNet2DModel built from DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D with a
  positional time embedding and no class conditioning, or an unconditional eps-predicting ADM checkpoint (a learned
  sigma is dropped: eps is the first half of its output); anything else (latent UNets, DiT, class-conditional
  models) is a one-line error. The Diff-AE baseline takes UNet2DModel teachers only.
"""
from diffrep.pdae.autoencoder import PDAE, load_autoencoder, save_autoencoder
from diffrep.pdae.encoder import SemanticEncoder
from diffrep.pdae.adm_parts import ADMGradientEstimator
from diffrep.pdae.estimator import GradientEstimator
from diffrep.pdae.shift import (eps_and_gradient, posterior_mean, posterior_variance, predicted_x0, shift_coefficient,
                                shifted_eps)
from diffrep.pdae.weighting import WEIGHTINGS, loss_weights

__all__ = ["ADMGradientEstimator", "GradientEstimator", "PDAE", "SemanticEncoder", "WEIGHTINGS", "eps_and_gradient",
           "load_autoencoder", "loss_weights", "posterior_mean", "posterior_variance", "predicted_x0",
           "save_autoencoder", "shift_coefficient", "shifted_eps"]
