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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.checks import check_count, check_number
from interp.models import ModelPair
from interp.prompts import pad_batch, pad_id
from interp.provenance import Provenance


@dataclass(frozen=True)
class DiffMining:
    """``counts[t]``: at how many of ``n_positions`` text positions token ``t`` was among the ``k`` most promoted
    (aligned minus base log-probability); ``mean_diff[t]``: its mean promotion over all positions. ``topics`` groups
    the ``top`` most counted tokens (ids, in rank order) by unembedding cosine >= ``threshold``."""

    k: int
    counts: Tensor
    mean_diff: Tensor
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


@torch.no_grad()
def diff_mining(
    pair: ModelPair, texts: Sequence[str], *, k: int = 20, top: int = 50, threshold: float = 0.3,
    batch_size: int = 16,
) -> DiffMining:
    """Count, over every position of ``texts`` (read raw, BOS first), how often each token is among the ``k`` most
    promoted by the aligned model over the base; rank the tokens counted at least once and group the ``top`` first
    into topics (:func:`group_by_cosine` of the aligned model's unembedding columns)."""
    k, top = check_count(k, "k"), check_count(top, "top")
    threshold = check_number(threshold, "threshold", low=-1, high=1)
    ids = [row for row in pair.tokenizer(list(texts)).input_ids if len(row) > 1]
    if not ids:
        raise ValueError("diff mining needs texts of at least one token after BOS")
    counts = mean = None
    n_positions = 0
    for start in range(0, len(ids), check_count(batch_size, "batch_size")):
        tokens, mask = pad_batch(ids[start:start + batch_size], pad_id(pair.tokenizer), "right")
        logprobs = {m: model(tokens.to(pair.cfg.device), attention_mask=mask.to(pair.cfg.device)).float()
                    .log_softmax(-1).cpu() for m, model in pair}
        diff = (logprobs["aligned"] - logprobs["base"])[mask.bool()]  # [positions, d_vocab]
        promoted = torch.zeros_like(diff).scatter_(-1, diff.topk(k, dim=-1).indices, 1.0).sum(0)
        counts = promoted if counts is None else counts + promoted
        mean = diff.sum(0) if mean is None else mean + diff.sum(0)
        n_positions += len(diff)
    order = sorted((t for t in range(len(counts)) if counts[t] > 0), key=lambda t: (-float(counts[t]), t))
    head = order[:top]
    unembed = pair.aligned.W_U.T[head]  # [top, d_model]: the tokens' output directions
    topics = tuple(tuple(head[i] for i in group) for group in group_by_cosine(unembed, threshold))
    vocab = pair.tokenizer.convert_ids_to_tokens(list(range(len(counts))))
    return DiffMining(k, counts, mean / n_positions, n_positions, tuple(head), topics,
                      tuple(str(t) for t in vocab), threshold,
                      Provenance.of_pair(pair, list(texts), k=k, top=top, threshold=threshold))
