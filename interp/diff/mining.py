"""Diff mining: the tokens finetuning promotes most often, and the topics they fall into.

At every position of ordinary text, the aligned model's next-token log-probabilities minus the base's name the tokens
it now prefers there; a token that is among the ``k`` most promoted at many positions is a systematic change (a
topic, a style, a refusal word), where one promoted once is noise. Counting those over texts ranks the tokens, and
grouping the top ones by the cosine of their unembedding vectors (the aligned model's) turns them into topics.

>>> mined = diff_mining(pair, ["how do i bake ?", "tell me a story ."], k=5)
>>> mined.table().columns.tolist()
['token', 'count', 'share', 'mean_diff', 'topic']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.checks import check_count, check_number
from interp.models import ModelPair
from interp.prompts import length_batches, pad_batch, pad_id, tokenize_for
from interp.provenance import Provenance

VOCAB_FLOATS = 1 << 26
"""Floats of one ``[tokens, d_vocab]`` tensor per pass (256 MB): 1,365 tokens for SmolLM2's vocabulary, 256 for
Gemma 3's."""


@dataclass(frozen=True)
class DiffMining:
    """``counts[t]``: at how many of ``n_positions`` text positions token ``t`` was among the ``k`` most promoted
    (aligned minus base log-probability); ``mean_diff[t]``: its mean promotion over all positions. ``topics`` groups
    the ``top`` most counted tokens (ids, in rank order) by unembedding cosine >= ``threshold``."""

    k: int
    counts: Float[Tensor, " d_vocab"]
    mean_diff: Float[Tensor, " d_vocab"]
    n_positions: int
    ranked: tuple[int, ...]
    topics: tuple[tuple[int, ...], ...]
    token_strings: tuple[str, ...]
    threshold: float
    provenance: Provenance

    def table(self):
        """The ranked tokens as a DataFrame: token, count, share of positions, mean promotion, topic number."""
        import pandas as pd

        topic_of = {t: i for i, topic in enumerate(self.topics) for t in topic}
        return pd.DataFrame([{"token": self.token_strings[t], "count": int(self.counts[t]),
                              "share": float(self.counts[t]) / self.n_positions, "mean_diff": float(self.mean_diff[t]),
                              "topic": topic_of[t]} for t in self.ranked])

    def topic_words(self) -> list[list[str]]:
        """Each topic as its tokens' strings."""
        return [[self.token_strings[t] for t in topic] for topic in self.topics]


def group_by_cosine(vectors: Tensor, threshold: float) -> list[list[int]]:
    """Rows of ``vectors`` (in order) grouped greedily: a row joins the first group whose first row it has cosine
    >= ``threshold`` with, else starts a group.

    >>> group_by_cosine(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]), 0.8)
    [[0, 2], [1]]
    """
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    groups: list[list[int]] = []
    for i in range(len(unit)):
        home = next((g for g in groups if float(unit[g[0]] @ unit[i]) >= threshold), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


def text_batches(pair: ModelPair, ids: Sequence[Sequence[int]], batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(tokens, mask)`` batches of ``ids`` on the pair's device, right-padded, batched by length so that a
    ``[tokens, d_vocab]`` float32 tensor of a batch stays under :data:`VOCAB_FLOATS` (at least 64 tokens a pass)."""
    cap = max(64, VOCAB_FLOATS // pair.cfg.d_vocab)
    for rows in length_batches([len(row) for row in ids], check_count(batch_size, "batch_size"), max_tokens=cap):
        yield tuple(t.to(pair.cfg.device) for t in pad_batch([ids[i] for i in rows], pad_id(pair.tokenizer), "right"))


@torch.no_grad()
def position_logprobs(pair: ModelPair, texts: Sequence[str], batch_size: int = 16
                      ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """For each batch of ``texts`` (read raw, checked as every prompt is: :func:`interp.prompts.tokenize_for`), the
    tokens read at its real positions and both models' next-token log-probabilities there, ``(tokens [n], aligned
    [n, d_vocab], base [n, d_vocab])`` in float32 on the models' device."""
    ids = tokenize_for(pair.aligned, list(texts), "raw")
    for tokens, mask in text_batches(pair, ids, check_count(batch_size, "batch_size")):
        kept = mask.bool()
        yield (tokens[kept], pair.aligned(tokens, attention_mask=mask).float().log_softmax(-1)[kept],
               pair.base(tokens, attention_mask=mask).float().log_softmax(-1)[kept])


@torch.no_grad()
def diff_mining(
    pair: ModelPair, texts: Sequence[str], *, k: int = 20, top: int = 50, threshold: float = 0.3,
    batch_size: int = 16,
) -> DiffMining:
    """Count, over every position of ``texts`` (read raw, BOS first where the tokenizer puts one, checked as every
    prompt is: :func:`interp.prompts.tokenize_for`), how often each token is among the ``k`` most promoted by the
    aligned model over the base; rank the tokens counted at least once and group the ``top`` first into topics
    (:func:`group_by_cosine` of the aligned model's unembedding columns). Batched by length
    (:func:`interp.prompts.length_batches`), reduced on the models' device: only ``[d_vocab]`` sums leave it."""
    k, top = check_count(k, "k"), check_count(top, "top")
    threshold = check_number(threshold, "threshold", low=-1, high=1)
    vocab_size = pair.cfg.d_vocab
    counts, total, n_positions = torch.zeros(vocab_size), torch.zeros(vocab_size, dtype=torch.float64), 0
    for _, aligned, base in position_logprobs(pair, texts, batch_size):
        diff = aligned - base  # [positions, d_vocab]
        counts += torch.bincount(diff.topk(k, dim=-1).indices.flatten(), minlength=vocab_size).float().cpu()
        total += diff.sum(0).double().cpu()
        n_positions += len(diff)
    counted = int((counts > 0).sum())
    order = torch.sort(-counts, stable=True).indices[:counted].tolist()  # most counted first, then by id
    head = order[:top]
    unembed = pair.aligned.W_U.T[head]  # [top, d_model]: the tokens' output directions
    topics = tuple(tuple(head[i] for i in group) for group in group_by_cosine(unembed, threshold))
    vocab = pair.tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return DiffMining(k, counts, (total / n_positions).float(), n_positions, tuple(head), topics,
                      tuple(str(t) for t in vocab), threshold,
                      Provenance.of_pair(pair, list(texts), k=k, top=top, threshold=threshold))
