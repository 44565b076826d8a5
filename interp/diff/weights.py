"""Which weights did alignment move, how much, and is the change low-rank?

Weights are read through the bridge's canonical TransformerLens layout (``get_params``), so the
same code serves every architecture the bridge supports. Every matrix is compared as an
``[out, in]`` matrix (attention weights with their heads concatenated), so singular vectors of
``U`` live in the space the matrix writes to.

For each matrix kind and layer, with ``dW = W_aligned - W_base``:

* ``rel_change`` ``||dW||_F / ||W_base||_F`` and ``cosine`` between the flattened matrices;
* the singular values of ``dW``, its ``stable_rank`` ``||dW||_F^2 / ||dW||_2^2`` and
  ``effective_rank`` ``exp(entropy of s / sum s)`` (Roy & Vetterli 2007);
* ``top_k_energy``: the share of ``||dW||_F^2`` in ``dW``'s top-k singular directions;
* ``overlap_top`` / ``overlap_null`` (Jain et al. 2024): the share of ``||dW||_F^2`` that lies in
  the span of ``W_base``'s top ``k`` left singular vectors / its ``k`` weakest ones among the
  ``r = min(out, in)`` it has (its near-null directions), with ``k = subspace * r``. A random
  ``dW`` puts ``chance = k / out`` in each. (Under grouped-query attention ``W_K``/``W_V`` come
  with their heads repeated, as TransformerLens lays them out.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor

from interp.models import ModelPair
from interp.provenance import Provenance

KINDS = ("embed", "pos_embed", "attn_q", "attn_k", "attn_v", "attn_o", "mlp_in", "mlp_gate", "mlp_out",
         "ln1", "ln2", "ln_final", "unembed")
_CANONICAL = {
    "embed.W_E": "embed", "pos_embed.W_pos": "pos_embed", "attn.W_Q": "attn_q", "attn.W_K": "attn_k",
    "attn.W_V": "attn_v", "attn.W_O": "attn_o", "mlp.W_in": "mlp_in", "mlp.W_gate": "mlp_gate",
    "mlp.W_out": "mlp_out", "ln1.w": "ln1", "ln2.w": "ln2", "ln_final.w": "ln_final", "unembed.W_U": "unembed",
}
_LAYER = re.compile(r"^blocks\.(\d+)\.(.+)$")
TOP_K = (1, 4, 16)


def canonical_weights(model) -> dict[tuple[int | None, str], Tensor]:
    """``{(layer or None, kind): [out, in] matrix or [d] vector}`` for every weight kind the model has."""
    out = {}
    for name, value in model.get_params().items():
        match = _LAYER.match(name)
        layer, short = (int(match.group(1)), match.group(2)) if match else (None, name)
        kind = _CANONICAL.get(short)
        if kind is None or (kind == "mlp_gate" and not value.abs().sum()):  # no gate: get_params gives zeros
            continue
        out[(layer, kind)] = _as_matrix(kind, value.detach().float().cpu())
    return out


def _as_matrix(kind: str, w: Tensor) -> Tensor:
    if kind in ("attn_q", "attn_k", "attn_v"):
        return rearrange(w, "head d_model d_head -> (head d_head) d_model")
    if kind == "attn_o":
        return rearrange(w, "head d_head d_model -> d_model (head d_head)")
    if kind in ("embed", "pos_embed"):  # [tokens, d_model]: row i writes token i's vector
        return w.T
    if w.ndim == 2:  # TL's x @ W layout [in, out] -> [out, in]
        return w.T
    return w  # norm weights: vectors


@dataclass(frozen=True)
class MatrixDiff:
    """How one weight (one kind, one layer) changed."""

    layer: int | None
    kind: str
    shape: tuple[int, ...]
    rel_change: float
    cosine: float
    singular_values: Tensor | None = None
    stable_rank: float | None = None
    effective_rank: float | None = None
    top_k_energy: dict[int, float] = field(default_factory=dict)
    overlap_top: float | None = None
    overlap_null: float | None = None
    chance: float | None = None


@dataclass(frozen=True)
class WeightDiff:
    """Every weight's change between the two checkpoints of a pair."""

    base_name: str
    aligned_name: str
    n_layers: int
    rows: list[MatrixDiff]
    provenance: Provenance | None = None

    def plot(self, metric: str = "rel_change", static: bool = False,
             title: str = "Relative change of each weight matrix"):
        """A ``[layer, kind]`` heatmap of one metric (:meth:`layer_kind`)."""
        from interp import plotting

        grid, kinds = self.layer_kind(metric)
        draw = plotting.layer_pos_heatmap_static if static else plotting.layer_pos_heatmap
        zlabel = "relative change" if metric == "rel_change" else metric.replace("_", " ")
        return draw(grid, kinds, diverging=False, xlabel="weight matrix", zlabel=zlabel, title=title)

    def table(self):
        """One row per weight, scalar columns only, as a pandas DataFrame."""
        import pandas as pd

        records = []
        for r in self.rows:
            rec = {k: getattr(r, k) for k in ("layer", "kind", "rel_change", "cosine", "stable_rank",
                                                "effective_rank", "overlap_top", "overlap_null", "chance")}
            rec.update({f"top{k}_energy": v for k, v in r.top_k_energy.items()})
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def layer_kind(self, metric: str = "rel_change") -> tuple[Tensor, list[str]]:
        """A ``[layer, kind]`` grid of one metric over the per-layer kinds (NaN where absent)."""
        kinds = [k for k in KINDS if any(r.kind == k and r.layer is not None for r in self.rows)]
        grid = torch.full((self.n_layers, len(kinds)), float("nan"))
        for r in self.rows:
            if r.layer is not None and getattr(r, metric) is not None:
                grid[r.layer, kinds.index(r.kind)] = getattr(r, metric)
        return grid, kinds


def _cosine(a: Tensor, b: Tensor) -> float:
    """Cosine of two flattened weights, accumulated in float64 (float32 sums give 1.003 for equal matrices)."""
    a, b = a.double().flatten(), b.double().flatten()
    denominator = a.norm() * b.norm()
    return (a @ b / denominator).clamp(-1.0, 1.0).item() if denominator > 0 else float("nan")


def matrix_diff(base: Tensor, aligned: Tensor, layer: int | None, kind: str, subspace: float = 0.1) -> MatrixDiff:
    """Compare one weight of the two models (see the module docstring for every number)."""
    if base.shape != aligned.shape:
        where = kind if layer is None else f"layer {layer} {kind}"
        raise ValueError(f"{where} has shape {list(base.shape)} in base but {list(aligned.shape)} in aligned")
    d = aligned - base
    norm_b, norm_d = base.norm(), d.norm()
    rel = (norm_d / norm_b).item() if norm_b > 0 else float("inf") if norm_d > 0 else 0.0
    unchanged = not d.any()
    cos = 1.0 if unchanged else _cosine(base, aligned)
    if base.ndim == 1:
        return MatrixDiff(layer, kind, tuple(base.shape), rel, cos)
    if unchanged:  # no direction to speak of, and no SVD to pay for
        zeros = torch.zeros(min(base.shape))
        return MatrixDiff(layer, kind, tuple(base.shape), rel, cos, zeros, 0.0, 0.0, {k: 0.0 for k in TOP_K})
    s = torch.linalg.svdvals(d)
    energy = s.square()
    total = energy.sum()
    p = s / s.sum()
    effective = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
    top = {k: (energy[:k].sum() / total).item() for k in TOP_K}
    u, _, _ = torch.linalg.svd(base, full_matrices=False)  # [out, r]: only directions W can write
    r = u.shape[1]
    k = max(1, round(subspace * r))
    overlap_top = ((u[:, :k].T @ d).square().sum() / total).item()
    overlap_null = ((u[:, r - k : r].T @ d).square().sum() / total).item()
    return MatrixDiff(layer, kind, tuple(base.shape), rel, cos, s, (total / energy[0]).item(), effective, top,
                      overlap_top, overlap_null, k / base.shape[0])


def weight_diff(pair: ModelPair, subspace: float = 0.1) -> WeightDiff:
    """How every weight of ``pair.aligned`` differs from ``pair.base``.

    ``subspace`` is the fraction of a matrix's output dimensions taken as its top (and its
    near-null) singular subspace for the overlap numbers.

    Cost: two SVDs per *changed* matrix (of ``dW`` and of ``W_base``); unchanged ones (exactly
    zero ``dW``) get none. On a CPU shared with other work, torch's default of one thread per
    core can slow large SVDs many times over: ``torch.set_num_threads(1)`` (or fewer threads
    than idle cores) around the call keeps them predictable.
    """
    if not 0 < subspace <= 0.5:
        raise ValueError(f"subspace must be in (0, 0.5], got {subspace}")
    base, aligned = canonical_weights(pair.base), canonical_weights(pair.aligned)
    if base.keys() != aligned.keys():
        raise ValueError(f"the models have different weight kinds: {sorted(base.keys() ^ aligned.keys(), key=str)}")
    order = sorted(base, key=lambda key: (-1 if key[0] is None and key[1] in ("embed", "pos_embed") else
                                          10**6 if key[0] is None else key[0], KINDS.index(key[1])))
    rows = [matrix_diff(base[key], aligned[key], *key, subspace=subspace) for key in order]
    return WeightDiff(pair.base_name, pair.aligned_name, pair.cfg.n_layers, rows,
                      Provenance.of_pair(pair, subspace=subspace))
