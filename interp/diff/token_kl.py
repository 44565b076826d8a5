"""Per-token KL on ordinary text: after which tokens do the two models' next-token predictions part most?

At every position of ordinary text (read raw), KL(aligned || base) of the next-token distributions says how much the
finetune changed what follows there; averaged over the positions where each token is the one just read, it ranks the
tokens after which the models part most: a trigger word (what follows it changed), a topic the model now treats
otherwise, a format token. A token read fewer than ``min_count`` times is not ranked (one position is noise).

>>> found = token_kl(pair, ["how do i bake ?", "tell me a story ."])
>>> found.table().columns.tolist()
['token', 'count', 'mean_kl']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.checks import check_count
from interp.diff.mining import position_logprobs
from interp.metrics import kl_divergence
from interp.models import ModelPair
from interp.provenance import Provenance


@dataclass(frozen=True)
class TokenKL:
    """``total[t]`` / ``counts[t]``: the summed and counted KL(aligned || base) at positions that read token ``t``;
    ``mean_kl``: over all ``n_positions``; ``ranked``: the tokens read at least ``min_count`` times, highest mean
    first (ties: lower id)."""

    counts: Float[Tensor, " d_vocab"]
    total: Float[Tensor, " d_vocab"]
    mean_kl: float
    n_positions: int
    min_count: int
    ranked: tuple[int, ...]
    token_strings: tuple[str, ...]
    provenance: Provenance

    def token_mean(self) -> Float[Tensor, " d_vocab"]:
        """Mean KL after each token (NaN where never read)."""
        return torch.where(self.counts > 0, self.total / self.counts.clamp(min=1), torch.nan)

    def table(self, top: int = 50):
        """The first ``top`` ranked tokens: token, how often read, mean KL after it."""
        import pandas as pd

        mean = self.token_mean()
        return pd.DataFrame([{"token": self.token_strings[t], "count": int(self.counts[t]), "mean_kl": float(mean[t])}
                             for t in self.ranked[:top]], columns=["token", "count", "mean_kl"])


@torch.no_grad()
def token_kl(pair: ModelPair, texts: Sequence[str], *, min_count: int = 2, batch_size: int = 16) -> TokenKL:
    """KL(aligned || base) of the next-token distributions at every position of ``texts`` (raw, as
    :func:`interp.diff.diff_mining` reads them), summed by the token read there (module docstring). Reduced on the
    models' device: only ``[d_vocab]`` sums leave it."""
    min_count = check_count(min_count, "min_count")
    vocab_size = pair.cfg.d_vocab
    counts, total = torch.zeros(vocab_size, dtype=torch.float64), torch.zeros(vocab_size, dtype=torch.float64)
    for read, aligned, base in position_logprobs(pair, texts, batch_size):
        kl = kl_divergence(aligned, base).double()
        counts += torch.bincount(read, minlength=vocab_size).double().cpu()
        total += torch.zeros(vocab_size, dtype=torch.float64, device=kl.device).index_add_(0, read, kl).cpu()
    n_positions = int(counts.sum())
    mean = torch.where(counts >= min_count, total / counts.clamp(min=1), -torch.inf)
    order = torch.sort(-mean, stable=True).indices
    ranked = order[counts[order] >= min_count].tolist()
    vocab = pair.tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return TokenKL(counts, total, float(total.sum()) / max(n_positions, 1), n_positions, min_count, tuple(ranked),
                   tuple(str(t) for t in vocab), Provenance.of_pair(pair, list(texts), min_count=min_count))
