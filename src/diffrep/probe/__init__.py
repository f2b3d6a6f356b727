"""Linear probes of a frozen DPM's features: which timestep t, tap and input make the best representation.

Protocol (`diffrep probe`, or `diffrep.probe.run` from Python)
-------------------------------------------------------------
For every input mode ("clean": x0 with the time embedding of t, as in the RepFusion code; "noised":
x_t ~ q(x_t | x0)), every timestep t and every tap (a named module output of the UNet):

1. Features. One early-exit forward pass per batch computes all requested taps at once; each map is
   average-pooled immediately (`pool: gap`, or `pool: grid:K` for a K x K adaptive-average grid, never
   finer than the map; several poolings such as `gap,grid:2` all come from the same pass) and flattened,
   and only these pooled float32 vectors are kept. In noised mode
   the noise of batch b, draw d comes from a generator seeded by (seed, split, b, d), so image i sees
   the same noise at every t, tap and for both teachers (paired comparisons; it does depend on
   batch_size). `noise_draws: k` averages the pooled features of k noisy copies.
2. Probe. Features are standardised with the train split's per-feature mean and std, then a
   multinomial logistic regression is fitted on the whole train split by full-batch L-BFGS
   (strong-Wolfe line search, `probe.max_iter` iterations, zero initialisation, hence deterministic)
   minimising  mean_i cross_entropy(W x_i + b, y_i) + weight_decay * ||W||_F^2  (bias not penalised,
   default weight_decay 1e-4), preconditioned by the features' covariance so that 50 iterations reach
   the optimum (see diffrep.probe.linear). The score is top-1 accuracy on the test split.
3. Effective rank of the centred train feature matrix X (N x D, pooled, not standardised), from its
   singular values s (the square roots of the clamped eigenvalues of the float64 Gram matrix
   X^T X, accumulated in chunks; X X^T when D > N):
   - erank_entropy = exp(H(p)), p_i = s_i / sum_j s_j, H the Shannon entropy (Roy & Vetterli 2007,
     "The effective rank: a measure of effective dimensionality"); a real number in [1, rank];
   - erank_count = #{i : s_i > 1e-3 * max(s)}, the integer count the RepFusion repository's
     "effective rank vs timestep" plots appear to use.
   mean_norm is the mean L2 norm of the pooled, un-standardised train features.

Baselines in the same run: the same probe on raw pixels (the whole flattened image, standardised; no
pooling) and, unless `random_teacher: false`, on a seeded randomly initialised UNet of the same
architecture (same taps, t grid, inputs and noise).

Cost: the teacher's passes dominate (about 90% of the time at 60k images); each probe takes about
1.25 * max_iter passes over the N x D train matrix. On a CPU, teacher batches and probes run in
torch.get_num_threads() worker threads of one intra-op thread each (diffrep.probe.workers).

Stored features: `diffrep features` writes the same features to disk (diffrep.probe.store), and
`diffrep probe --features DIR` probes them without the teacher (diffrep.probe.stored).
"""
from diffrep.probe.features import extract, extract_pools, parse_pool, parse_pools, pixels, pool_map, pooled_batches
from diffrep.probe.linear import PROBE_DEFAULTS, fit_logistic, probe, standardise
from diffrep.probe.rank import effective_rank, feature_rank, singular_values
from diffrep.probe.store import FeatureStore
from diffrep.probe.sweep import COLUMNS, best, default_taps, default_timesteps, probe_passes, random_like, run

__all__ = ["COLUMNS", "PROBE_DEFAULTS", "FeatureStore", "best", "default_taps", "default_timesteps", "effective_rank",
           "extract", "extract_pools", "feature_rank", "fit_logistic", "parse_pool", "parse_pools", "pixels",
           "pool_map", "pooled_batches", "probe", "probe_passes", "random_like", "run", "singular_values",
           "standardise"]
