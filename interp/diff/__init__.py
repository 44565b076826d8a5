"""Diffing the two checkpoints of a pair: weights, representations, logit lens, layer swaps.

* :func:`weight_diff` - which weights moved, how much, and is the change low-rank;
* :func:`representation_similarity` - where in depth the residual streams part ways (:func:`family_similarity`:
  several aligned stages against one base, the base run once);
* :func:`logit_lens` - each layer's prediction, for both models, and how far apart they are;
* :func:`cluster_separation` - how harmful and harmless prompts separate at each layer;
  :func:`principal_components` and :func:`centroid_distance` for a 2-D picture of it;
* :func:`swap_sweep` - which layers' weight changes carry the aligned behaviour;
* :func:`amplified_generate` - replies from the aligned logits with their change from the base amplified
  (logit-diff amplification, Aranguri and McGrath 2025);
* :func:`activation_difference_lens` - the mean activation difference on the first tokens of ordinary text, read
  through the logit lens and used to steer (ADL, Minder et al. 2025);
* :func:`diff_mining` - the tokens finetuning promotes most often on ordinary text, grouped into topics;
* :func:`token_kl` - the tokens after which the two models' next-token predictions part most (per-token KL);
* :func:`refusal_shift` - how far each request moved along the base's refusal direction, and the words of those
  that moved most.
"""

from interp.diff.adl import ActivationDifferenceLens, activation_difference_lens
from interp.diff.amplify import amplified_generate
from interp.diff.mining import DiffMining, diff_mining
from interp.diff.refusal_shift import RefusalShift, refusal_shift
from interp.diff.representations import (
    ClusterSeparation,
    LogitLens,
    RepresentationSimilarity,
    centroid_distance,
    cluster_separation,
    family_similarity,
    linear_cka,
    logit_lens,
    principal_components,
    representation_similarity,
)
from interp.diff.swap import SwapSweep, end_groups, interpolated_weights, layer_groups, swap, swap_sweep
from interp.diff.token_kl import TokenKL, token_kl
from interp.diff.weights import KINDS, MatrixDiff, WeightDiff, canonical_weights, matrix_diff, weight_diff

__all__ = [
    "KINDS", "ClusterSeparation", "LogitLens", "MatrixDiff", "RepresentationSimilarity", "WeightDiff",
    "canonical_weights", "centroid_distance", "cluster_separation", "family_similarity", "principal_components",
    "linear_cka", "logit_lens", "matrix_diff", "representation_similarity", "weight_diff", "SwapSweep",
    "interpolated_weights", "end_groups", "layer_groups", "swap", "swap_sweep", "amplified_generate",
    "ActivationDifferenceLens", "activation_difference_lens", "DiffMining", "diff_mining", "TokenKL", "token_kl",
    "RefusalShift", "refusal_shift",
]
