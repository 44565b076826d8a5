"""Training a BatchTopK crosscoder or difference-SAE on a pair's paired token rows.

The loss is the squared reconstruction error of every source (in the dictionary's scaled units) plus
``aux_coefficient`` times the auxiliary loss of Gao et al. 2024: the latents that have not fired for
``dead_steps`` steps reconstruct what the live ones left over, through their ``aux_k`` largest codes
per token, so a dead latent gets a gradient towards something useful. Adam, with the learning rate
decayed linearly to zero over the last fifth of the steps. The inference threshold is the mean, over the second half
of training, of each batch's smallest selected score (Bussmann et al. 2024).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.dictionary.batchtopk import BatchTopK
from interp.dictionary.tokens import PairedTokens

Kind = Literal["crosscoder", "diff_sae"]
KINDS = ("crosscoder", "diff_sae")


@dataclass(frozen=True)
class DictionaryConfig:
    """How a dictionary is shaped and trained. Unknown keys are errors (it is a plain dataclass)."""

    n_latents: int = 1024
    """Dictionary size (latents shared by both models)."""
    k: int = 16
    """Latents per token on average (the batch keeps ``k * batch_size``)."""
    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    aux_coefficient: float = 1 / 32
    aux_k: int = 64
    """How many dead latents per token the auxiliary loss uses."""
    dead_steps: int = 100
    """A latent that has not fired for this many steps counts as dead (for the auxiliary loss)."""
    min_tokens_per_latent: int = 16
    """Refuse to train with fewer token rows than this times ``n_latents``."""
    seed: int = 0

    def __post_init__(self):
        for name in ("n_latents", "k", "steps", "batch_size", "aux_k", "dead_steps", "min_tokens_per_latent"):
            if getattr(self, name) < 1:
                raise ValueError(f"DictionaryConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.k > self.n_latents:
            raise ValueError(f"DictionaryConfig.k ({self.k}) must not exceed n_latents ({self.n_latents})")
        if not self.lr > 0 or self.aux_coefficient < 0:
            raise ValueError(f"DictionaryConfig needs lr > 0 and aux_coefficient >= 0, got {self.lr}, "
                             f"{self.aux_coefficient}")

    def min_tokens(self) -> int:
        return self.min_tokens_per_latent * self.n_latents

    def to_dict(self) -> dict:
        return asdict(self)


def inputs(kind: Kind, rows: Tensor) -> Tensor:
    """What a dictionary of ``kind`` reads from paired rows ``[n, 2, d_model]``: both streams, or their difference."""
    return rows if kind == "crosscoder" else (rows[:, 1] - rows[:, 0])[:, None]


def _aux_loss(d: BatchTopK, pre: Tensor, error: Tensor, dead: Tensor, aux_k: int) -> Tensor:
    """How well the dead latents' ``aux_k`` largest codes per token reconstruct the live ones' error (scaled units)."""
    pre_dead = pre[:, dead]
    top = pre_dead.topk(min(aux_k, pre_dead.shape[1]), dim=1)
    codes = torch.zeros_like(pre_dead).scatter(1, top.indices, top.values)
    recon = torch.einsum("bl,lsd->bsd", codes, d.W_dec[dead])
    return (error - recon).pow(2).sum((1, 2)).mean() / error.pow(2).sum((1, 2)).mean().clamp_min(1e-8)


def train(tokens: PairedTokens, kind: Kind, config: DictionaryConfig, *,
          progress: bool = True) -> tuple[BatchTopK, dict]:
    """A trained :class:`BatchTopK` of ``kind`` on ``tokens``, and its training log (losses, seconds)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if len(tokens) < config.min_tokens():
        raise ValueError(f"{len(tokens)} token rows are too few for {config.n_latents} latents (need at least "
                         f"{config.min_tokens()}: {config.min_tokens_per_latent} per latent); give more text or "
                         f"fewer latents")
    if config.batch_size > len(tokens):
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(tokens)} token rows; give more text "
                         "or a smaller batch_size")
    torch.manual_seed(config.seed)
    sample = inputs(kind, next(tokens.chunks(16384, 16384)))
    scale = float(sample.pow(2).sum(-1).mean().div(tokens.d_model).sqrt())
    d = BatchTopK(sample.shape[1], tokens.d_model, config.n_latents, config.k, seed=config.seed, scale=scale)
    with torch.no_grad():
        d.b_dec.copy_(sample.mean(0) / scale)
    optimizer = torch.optim.Adam(d.parameters(), lr=config.lr)
    decay_from = int(0.8 * config.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step < decay_from else max(
        0.0, (config.steps - step) / (config.steps - decay_from)))
    since_fired = torch.zeros(config.n_latents, dtype=torch.long)
    log, started, threshold = {"step": [], "loss": [], "aux": []}, time.perf_counter(), []
    batches = tokens.batches(config.batch_size, config.seed)
    for step in tqdm(range(config.steps), desc=f"train {kind}", disable=not progress, leave=False):
        x = inputs(kind, next(batches)) / scale
        pre = d.pre_codes(x)
        keep, score = d.select(pre, batch_topk=True)
        x_hat = d.decode_scaled(pre * keep)
        loss = (x - x_hat).pow(2).sum((1, 2)).mean()
        fired = keep.any(0)
        since_fired = torch.where(fired, 0, since_fired + 1)
        dead = since_fired >= config.dead_steps
        aux = _aux_loss(d, pre, (x - x_hat).detach(), dead, config.aux_k) if dead.any() else loss.new_zeros(())
        optimizer.zero_grad(set_to_none=True)
        (loss + config.aux_coefficient * aux).backward()
        optimizer.step()
        schedule.step()
        if kind == "diff_sae":  # an SAE's decoder rows stay unit norm, so codes carry the magnitude
            with torch.no_grad():
                d.W_dec /= d.W_dec.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
        if keep.any():
            threshold.append(score[keep].min().item())
        if step % 50 == 0 or step == config.steps - 1:
            log["step"].append(step)
            log["loss"].append(loss.item())
            log["aux"].append(aux.item())
    with torch.no_grad():
        # The smallest selected score, averaged over the second half of training (the codes have settled).
        d.threshold.fill_(sum(threshold[len(threshold) // 2 :]) / max(1, len(threshold) - len(threshold) // 2))
    log["seconds"] = round(time.perf_counter() - started, 1)
    return d.eval(), log
