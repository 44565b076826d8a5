"""The activation difference lens (ADL): what finetuning changed, read off ordinary text.

Minder et al. (2025) found that a narrow finetune leaves a readable trace even on text unrelated to it: the mean
difference between the finetuned and the base model's residual stream over the *first few tokens* of ordinary text,
read through the logit lens, names tokens of the finetuning domain, and added to a model's stream it steers replies
towards that domain. Here: ``difference[j]`` is the mean over texts of ``aligned - base`` at one layer's output, at
the ``j``-th token after BOS; ``lens[model][j]`` its log-probabilities through that model's final norm and
unembedding; :meth:`ActivationDifferenceLens.steer` adds it back (scaled to the base's own activation norm there).

>>> adl = activation_difference_lens(pair, ["how do i bake ?", "tell me a story ."], n_tokens=2)
>>> adl.difference.shape[0]
2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_from_tokens
from interp.checks import check_count, check_layer, check_number
from interp.data import PromptSet
from interp.diff.representations import lens_logprobs
from interp.interventions import AddVector, generate
from interp.models import ModelPair
from interp.prompts import first_token, tokenize_for
from interp.provenance import Provenance


@dataclass(frozen=True)
class ActivationDifferenceLens:
    """The mean residual difference (aligned - base) at ``layer``'s output over the first ``n`` tokens of texts.

    ``difference`` and ``base_norm`` are ``[n, d_model]`` and ``[n]`` (the base's mean activation norm there);
    ``lens[model]`` is ``[n, d_vocab]``: ``difference`` read as log-probabilities through ``model``'s final norm and
    unembedding ("base" or "aligned"). ``n_texts`` texts were long enough to count (``skipped`` were not).
    """

    layer: int
    difference: Float[Tensor, "pos d_model"]
    base_norm: Float[Tensor, " pos"]
    lens: dict[str, Float[Tensor, "pos d_vocab"]]
    token_strings: tuple[str, ...]
    n_texts: int
    skipped: int
    provenance: Provenance

    def top_tokens(self, position: int = 0, k: int = 10, model: str = "aligned") -> list[tuple[str, float]]:
        """The ``k`` tokens the difference at ``position`` promotes most through ``model``'s lens, with their
        log-probabilities."""
        values, ids = self.lens[model][position].topk(check_count(k, "k"))
        return [(self.token_strings[i], float(v)) for i, v in zip(ids.tolist(), values, strict=True)]

    def steering_vector(self, position: int = 0) -> Float[Tensor, " d_model"]:
        """The difference at ``position``, rescaled to the base's mean activation norm there (the paper's scale)."""
        vector = self.difference[position]
        return vector / vector.norm().clamp(min=1e-12) * self.base_norm[position]

    def steer(self, model, prompts: PromptSet | Sequence[str], *, position: int = 0, scale: float = 1.0,
              **generate_kwargs) -> list[str]:
        """``model``'s replies with ``scale`` x :meth:`steering_vector` added to ``layer``'s output at every token
        (:func:`interp.interventions.generate`'s keyword arguments pass through)."""
        add = AddVector(self.steering_vector(position), self.layer, check_number(scale, "scale"),
                        hook_at="hook_resid_post")
        return generate(model, prompts, add, **generate_kwargs)


@torch.no_grad()
def activation_difference_lens(
    pair: ModelPair, texts: Sequence[str], *, layer: int | None = None, n_tokens: int = 5, batch_size: int = 32,
) -> ActivationDifferenceLens:
    """The ADL of a pair on ``texts`` (ordinary text: pretraining documents, never the finetuning data), at ``layer``
    (default: the middle one, as the paper reads it) over the first ``n_tokens`` tokens after BOS (where the tokenizer
    puts one first) of every text that has that many. Texts are read raw (no chat template), checked as every prompt
    is (:func:`interp.prompts.tokenize_for`: empty, too long for the context, ids past the embedding)."""
    layer = pair.cfg.n_layers // 2 if layer is None else layer
    check_layer(pair.aligned, layer)
    layer = int(layer)
    n_tokens = check_count(n_tokens, "n_tokens")
    ids = tokenize_for(pair.aligned, list(texts), "raw")
    start = first_token(pair.tokenizer, ids)
    kept = [row[: start + n_tokens] for row in ids if len(row) >= start + n_tokens]
    if not kept:
        raise ValueError(f"no text has {n_tokens} tokens{' after BOS' if start else ''}: give longer texts or a "
                         "smaller n_tokens")
    name = f"blocks.{layer}.hook_resid_post"
    acts = {m: collect_from_tokens(model, kept, name, positions=list(range(start, start + n_tokens)),
                                   batch_size=batch_size, progress=False)[name].float()
            for m, model in pair}  # [text, n_tokens, d_model] each; the forward stops after the layer
    sums = {m: a.sum(0) for m, a in acts.items()}
    norms = acts["base"].norm(dim=-1).sum(0)
    difference = (sums["aligned"] - sums["base"]) / len(kept)
    lens = {m: lens_logprobs(model, difference[None])[0] for m, model in pair}
    vocab = pair.tokenizer.convert_ids_to_tokens(list(range(lens["aligned"].shape[-1])))
    return ActivationDifferenceLens(layer, difference, norms / len(kept), lens, tuple(str(t) for t in vocab),
                                    len(kept), len(ids) - len(kept),
                                    Provenance.of_pair(pair, list(texts), layer=layer, n_tokens=n_tokens))
