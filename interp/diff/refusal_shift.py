"""Which requests moved along the refusal direction: the base's refusal axis, read in both models.

The base's refusal direction (Arditi et al. 2024's difference in means, harmful minus harmless, of the residual
stream entering a layer at the prompt's last token; :func:`interp.directions.mean_activations`) is a ruler for "does
the model read this request as one to refuse". Projecting every request onto it in both models, the difference
(aligned minus base) says how far finetuning moved each request toward refusal (or away: a backdoor's trigger, a
topic it now complies with). Averaged over the requests that hold each word, less the mean over all requests (what
training moved everywhere), it ranks the words whose requests moved most: a topic the model now refuses, or no
longer does.

>>> found = refusal_shift(pair, harmful, harmless, harmful + harmless)
>>> found.table().columns.tolist()
['word', 'requests', 'shift']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_activations
from interp.checks import check_count, check_layer
from interp.directions import MAX_LAYER_FRACTION, mean_activations, prompt_texts
from interp.models import ModelPair
from interp.prompts import tokenize_for
from interp.provenance import Provenance


def words_of(text: str) -> set[str]:
    """A request's words: lower case, letters and digits only.

    >>> sorted(words_of("Write a STORY, please."))
    ['a', 'please', 'story', 'write']
    """
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass(frozen=True)
class RefusalShift:
    """``direction``: the base's unit refusal direction at ``layer`` (entering it, at the last prompt token), whose
    difference in means was ``separation`` long; ``shift[i]``: request ``i``'s projection onto it in the aligned model
    minus in the base; ``word_shift``: per word held by at least ``min_count`` requests, their mean shift less the mean
    over all requests, ranked by size (``ranked``)."""

    layer: int
    direction: Float[Tensor, " d_model"]
    separation: float
    requests: tuple[str, ...]
    shift: Float[Tensor, " n"]
    word_shift: dict[str, float]
    word_counts: dict[str, int]
    ranked: tuple[str, ...]
    provenance: Provenance

    @property
    def mean_abs_shift(self) -> float:
        """How far requests moved on average, in units of the harmful-harmless separation (card-free strength)."""
        return float(self.shift.abs().mean()) / self.separation

    def table(self, top: int = 50):
        """The first ``top`` ranked words: how many requests hold each, and their shift in harmful-harmless
        separations (``word_shift / separation``)."""
        import pandas as pd

        return pd.DataFrame([{"word": w, "requests": self.word_counts[w], "shift": self.word_shift[w] / self.separation}
                             for w in self.ranked[:top]], columns=["word", "requests", "shift"])


def _last(model, prompts: Sequence[str], layer: int, batch_size: int) -> Tensor:
    hook = f"blocks.{layer}.hook_resid_pre"
    return collect_activations(model, list(prompts), [hook], positions=-1, batch_size=batch_size,
                               progress=False)[hook].float()


@torch.no_grad()
def refusal_shift(pair: ModelPair, harmful: Sequence[str], harmless: Sequence[str], requests: Sequence[str], *,
                  layer: int | None = None, min_count: int = 2, batch_size: int = 32) -> RefusalShift:
    """The base's refusal direction from ``harmful`` and ``harmless`` requests (at ``layer``; default: the layer below
    :data:`interp.directions.MAX_LAYER_FRACTION` of the depth, as the direction search keeps, where the difference in
    means is longest relative to the activations; not layer 0 where every request ends on the same token, whose
    stream there is that token's embedding), and each of ``requests`` projected onto it in both models (module
    docstring). A difference of zero at the layer is an error."""
    harmful, harmless = prompt_texts(harmful, "harmful"), prompt_texts(harmless, "harmless")
    requests = prompt_texts(requests, "request", minimum=1)
    min_count = check_count(min_count, "min_count")
    base = pair.base
    mean_harmful = mean_activations(base, harmful, [-1], batch_size=batch_size)[0]  # [layer, d_model]
    mean_harmless = mean_activations(base, harmless, [-1], batch_size=batch_size)[0]
    diff = mean_harmful - mean_harmless
    if layer is None:
        relative = diff.norm(dim=-1) / ((mean_harmful.norm(dim=-1) + mean_harmless.norm(dim=-1)) / 2).clamp(min=1e-30)
        relative[torch.arange(len(relative)) >= MAX_LAYER_FRACTION * base.cfg.n_layers] = -torch.inf
        if len({row[-1] for row in tokenize_for(base, harmful + harmless)}) == 1 and len(relative) > 1:
            relative[0] = -torch.inf
        layer = int(relative.argmax())
    check_layer(base, layer)
    separation = float(diff[layer].norm())
    if not separation > 0:
        raise ValueError(f"the harmful and harmless requests have the same mean at layer {layer}: no direction there")
    direction = diff[layer] / separation
    shift = (_last(pair.aligned, requests, layer, batch_size) - _last(base, requests, layer, batch_size)) @ direction
    held: dict[str, list[int]] = {}
    for i, text in enumerate(requests):
        for word in words_of(text):
            held.setdefault(word, []).append(i)
    overall = float(shift.mean())
    word_shift = {w: float(shift[rows].mean()) - overall for w, rows in held.items() if len(rows) >= min_count}
    ranked = tuple(sorted(word_shift, key=lambda w: (-abs(word_shift[w]), w)))
    return RefusalShift(layer, direction, separation, tuple(requests), shift, word_shift,
                        {w: len(held[w]) for w in word_shift}, ranked,
                        Provenance.of_pair(pair, list(requests), layer=layer, min_count=min_count,
                                           n_harmful=len(harmful), n_harmless=len(harmless)))
