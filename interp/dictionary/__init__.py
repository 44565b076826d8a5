"""Model diffing with sparse dictionaries: which features did alignment add, remove or keep, and do the
added ones cause the behaviour change?

* :func:`fit` trains a **BatchTopK crosscoder** (one encoder and one decoder per model, shared latents) or a
  **difference-SAE** (a BatchTopK SAE on aligned minus base) on both models' residual stream entering one
  layer, streamed from :func:`interp.cache.collect_pair_activations` (:func:`paired_tokens`);
* :class:`Dictionary` tags each crosscoder latent by its relative decoder norm (base-only, shared,
  aligned-only), gives decoder cosines, and saves/loads with a fingerprint of its pair;
* :func:`latent_scaling` (Minder et al. 2025) flags aligned-only latents the base has after all;
* :func:`latent_effects` takes each latent out of the aligned model and puts it into the base, and reads
  the refusal score.

>>> d = fit(pair, texts, layer=1, config=DictionaryConfig(n_latents=64, k=4, steps=20), progress=False)
>>> d.kind, d.n_latents, sorted(d.stats)
('crosscoder', 64, ['dead_fraction', 'fve', 'l0', 'n_tokens'])
>>> d.relative_norms().shape
torch.Size([64])
"""

from interp.dictionary.batchtopk import BatchTopK, batch_topk_mask
from interp.dictionary.causal import (
    LatentCheck,
    LatentEffects,
    NoRefusalGap,
    check_latents,
    latent_effects,
    most_active,
)
from interp.dictionary.diffing import (
    MAX_NU,
    LatentScaling,
    default_layer,
    evaluate,
    firing_rates,
    fit,
    latent_scaling,
    training_rows,
)
from interp.dictionary.result import TAGS, Dictionary, WrongPairError, fingerprint, load_dictionary
from interp.dictionary.tokens import PairedTokens, count_tokens, paired_tokens, site
from interp.dictionary.train import DictionaryConfig, train

__all__ = [
    "MAX_NU", "TAGS", "BatchTopK", "Dictionary", "DictionaryConfig", "LatentCheck", "LatentEffects", "LatentScaling",
    "NoRefusalGap", "PairedTokens", "WrongPairError", "batch_topk_mask", "check_latents", "count_tokens",
    "default_layer", "evaluate", "fingerprint", "firing_rates", "fit", "latent_effects", "latent_scaling",
    "load_dictionary", "most_active", "paired_tokens", "site", "train", "training_rows",
]
