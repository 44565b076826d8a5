"""The BatchTopK dictionary: one module for the crosscoder and the difference-SAE.

A dictionary reads ``n_sources`` residual streams of ``d_model`` each (the crosscoder: base and
aligned; the difference-SAE: one stream, aligned minus base) into ``n_latents`` shared latents and
writes each source back with its own decoder (Lindsey et al. 2024; Bussmann et al. 2024):

    pre     = relu(sum_s x_s @ W_enc[s] + b_enc)                 [batch, n_latents]
    score   = pre * sum_s |W_dec[:, s]|                          the code, weighted by decoder norm
    f       = pre where score is among the batch's k * batch largest (training)
              pre where score > threshold                        (inference: per token, batch-free)
    x_hat_s = f @ W_dec[:, s] + b_dec[s]

Selecting on ``pre * decoder norm`` is the code-normalisation choice of Minder et al. 2025: a latent
cannot buy its way into the top k with a tiny decoder and a large code. ``threshold`` is learnt
during training (the mean of each batch's smallest selected score), so that encoding one token at a
time after training keeps about ``k`` latents per token without needing a batch.

Activations are divided by one scalar ``scale`` for all sources (so mean ``|x|^2 = d_model``); the
methods below take and return activations in the model's own units.

>>> d = BatchTopK(n_sources=2, d_model=8, n_latents=32, k=4, seed=0)
>>> x = torch.randn(16, 2, 8)          # [batch, source, d_model]
>>> f = d.encode(x, batch_topk=True)   # exactly k * batch codes are non-zero
>>> int((f > 0).sum())
64
>>> d.decode(f).shape
torch.Size([16, 2, 8])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


def batch_topk_mask(scores: Float[Tensor, "batch n_latents"], k: int) -> Tensor:
    """A boolean mask of the ``k * batch`` largest entries of ``scores`` over the whole batch, positive ones only
    (among tied entries at the cut, which are kept is unspecified)."""
    flat = scores.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(min(k * scores.shape[0], flat.numel()), sorted=False).indices] = True
    return keep.view_as(scores) & (scores > 0)


class BatchTopK(nn.Module):
    """A BatchTopK dictionary over ``n_sources`` streams; see the module docstring."""

    def __init__(self, n_sources: int, d_model: int, n_latents: int, k: int, *, seed: int = 0,
                 scale: float = 1.0):
        super().__init__()
        if n_sources < 1 or d_model < 1 or n_latents < 1:
            raise ValueError(f"n_sources, d_model and n_latents must be >= 1, got {n_sources}, {d_model}, {n_latents}")
        if not 1 <= k <= n_latents:
            raise ValueError(f"k must be in 1..n_latents ({n_latents}), got {k}")
        self.n_sources, self.d_model, self.n_latents, self.k = n_sources, d_model, n_latents, k
        generator = torch.Generator().manual_seed(seed)
        # Every latent starts shared: one random unit direction written alike to every source (norm 1 over all of
        # them together), the encoder its transpose. Training has to pull a latent's sources apart for it to be
        # model-specific; started independent, a latent's decoders stay half random on a CPU's training budget.
        w_dec = torch.randn(n_latents, 1, d_model, generator=generator).expand(n_latents, n_sources, d_model).clone()
        w_dec /= w_dec.flatten(1).norm(dim=1)[:, None, None]
        self.W_dec = nn.Parameter(w_dec)                                       # [n_latents, source, d_model]
        self.W_enc = nn.Parameter(w_dec.permute(1, 2, 0).clone())              # [source, d_model, n_latents]
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(n_sources, d_model))
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def decoder_norms(self) -> Float[Tensor, "n_latents source"]:
        """Each latent's decoder norm per source (in the dictionary's own, scaled units)."""
        return self.W_dec.norm(dim=-1)

    def pre_codes(self, x_scaled: Float[Tensor, "batch source d_model"]) -> Float[Tensor, "batch n_latents"]:
        """The codes before selection, ``relu(sum_s x_s W_enc[s] + b_enc)``, of activations already divided by
        :attr:`scale` (as training reads them)."""
        return torch.relu(torch.einsum("bsd,sdl->bl", x_scaled, self.W_enc) + self.b_enc)

    def select(self, pre: Tensor, *, batch_topk: bool) -> tuple[Tensor, Tensor]:
        """Which codes to keep (a boolean mask) and the scores they were chosen by, ``pre * decoder norm``."""
        score = pre.detach() * self.decoder_norms().detach().sum(-1)
        return (batch_topk_mask(score, self.k) if batch_topk else score > self.threshold), score

    def decode_scaled(self, f: Float[Tensor, "batch n_latents"]) -> Float[Tensor, "batch source d_model"]:
        """``x_hat_s = f W_dec[:, s] + b_dec[s]`` in the scaled units training works in."""
        return torch.einsum("bl,lsd->bsd", f, self.W_dec) + self.b_dec

    def encode(self, x: Float[Tensor, "batch source d_model"], *, batch_topk: bool = False) -> Tensor:
        """The sparse codes ``f`` ``[batch, n_latents]``: by batch top-k, or (default) by the learnt threshold."""
        pre = self.pre_codes(self._check(x) / self.scale)
        return pre * self.select(pre, batch_topk=batch_topk)[0]

    def decode(self, f: Float[Tensor, "batch n_latents"]) -> Float[Tensor, "batch source d_model"]:
        """``x_hat_s = f W_dec[:, s] + b_dec[s]``, in the model's units."""
        return self.decode_scaled(f) * self.scale

    def forward(self, x: Float[Tensor, "batch source d_model"]) -> Tensor:
        return self.decode(self.encode(x))

    def latent_vectors(self) -> Float[Tensor, "n_latents source d_model"]:
        """Each latent's decoder vectors in the model's units (what one unit of code adds to each source)."""
        return self.W_dec.detach() * self.scale

    def _check(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.n_sources, self.d_model):
            raise ValueError(f"expected activations [batch, {self.n_sources}, {self.d_model}], got {list(x.shape)}")
        return x

