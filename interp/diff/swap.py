"""Which layers' weight changes carry the aligned behaviour? Swap or interpolate them, and measure.

A *group* is a set of the aligned model's parameters: one whole layer (``"layer 3"``), a run of
layers (``"layers 0-4"``), one component of a layer (``"layer 3 attn"``, ``"layer 3 mlp"``), or one component kind
across every layer (``"attn"``, ``"mlp"``, ``"norms"``), or one end of the model (``"embed"``,
``"unembed"`` with the final norm, or ``"embeddings"`` for both, which models with tied
embeddings need). With ``alpha`` the
group's weights become ``(1 - alpha) * W_aligned + alpha * W_base``: ``alpha = 0`` is the
aligned model, ``alpha = 1`` takes the group from the base. Everything happens in memory, as a
:class:`~interp.interventions.ReplaceWeights` intervention: the pair is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.checks import check_layer
from interp.data import PromptSet
from interp.interventions import ReplaceWeights, generate_with_answer_logits
from interp.metrics import NoRefusalTokens, derive_refusal_tokens, refusal_score, refusal_scores, token_ids
from interp.models import ModelPair
from interp.provenance import Provenance

COMPONENTS = ("attn", "mlp", "norms")
_NORMS = ("ln1", "ln2")
_TOP_LEVEL = {
    "embed": ("embed", "pos_embed"),
    "unembed": ("unembed", "ln_final"),
    "embeddings": ("embed", "pos_embed", "unembed", "ln_final"),  # both ends together: fine when tied
}


def _component_modules(model, layer: int, component: str) -> list[torch.nn.Module]:
    block = model.blocks[layer]
    names = _NORMS if component == "norms" else (component,)
    return [getattr(block, n) for n in names if hasattr(block, n)]


def group_modules(model, group: str) -> list[torch.nn.Module]:
    """The bridge modules whose parameters make up ``group`` (see the module docstring)."""
    n_layers = model.cfg.n_layers
    words = group.split()
    if words[0] == "layers" and len(words) == 2:
        first, _, last = words[1].partition("-")
        if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
            raise ValueError(f"bad group {group!r}: expected 'layers A-B' with A <= B")
        check_layer(model, int(last))
        return [model.blocks[layer] for layer in range(int(first), int(last) + 1)]
    if words[0] == "layer" and len(words) in (2, 3):
        try:
            layer = int(words[1])
        except ValueError:
            raise ValueError(f"bad group {group!r}: expected 'layer N' or 'layer N attn|mlp|norms'") from None
        check_layer(model, layer)
        if len(words) == 2:
            return [model.blocks[layer]]
        if words[2] not in COMPONENTS:
            raise ValueError(f"bad component {words[2]!r} in {group!r}; choose one of {COMPONENTS}")
        return _component_modules(model, layer, words[2])
    if group in COMPONENTS:
        return [m for layer in range(n_layers) for m in _component_modules(model, layer, group)]
    if group in _TOP_LEVEL:
        if group != "embeddings" and _tied(model):
            raise ValueError(
                f"this model ties its embedding and unembedding, so {group!r} cannot be swapped on its own; "
                "swap 'embeddings' (both ends) instead"
            )
        return [getattr(model, n) for n in _TOP_LEVEL[group] if hasattr(model, n)]
    raise ValueError(f"unknown group {group!r}; use 'layer N', 'layers A-B', 'layer N attn|mlp|norms', {COMPONENTS} or "
                     f"{tuple(_TOP_LEVEL)}")


def end_groups(model) -> list[str]:
    """The groups of the model's two ends: ``["embed", "unembed"]``, or ``["embeddings"]`` where it ties them."""
    return ["embeddings"] if _tied(model) else ["embed", "unembed"]


def _tied(model) -> bool:
    """Do the embedding and unembedding share a weight tensor?"""
    embed = {p.data_ptr() for p in model.embed.parameters()}
    return any(p.data_ptr() in embed for p in model.unembed.parameters())


def interpolated_weights(pair: ModelPair, group: str, alpha: float) -> dict[str, Tensor]:
    """Parameter overrides for the aligned model: ``group`` moved ``alpha`` of the way to the base."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    aligned_params = dict(pair.aligned.named_parameters(remove_duplicate=False))
    base_params = dict(pair.base.named_parameters(remove_duplicate=False))
    wanted = {id(p) for m in group_modules(pair.aligned, group) for p in m.parameters()}
    out = {}
    for name, w_aligned in aligned_params.items():
        if id(w_aligned) not in wanted:
            continue
        w_base = base_params.get(name)
        if w_base is None or w_base.shape != w_aligned.shape:
            raise ValueError(f"{name} has no counterpart of the same shape in the base model")
        out[name] = torch.lerp(w_aligned.detach(), w_base.detach().to(w_aligned.device, w_aligned.dtype), alpha)
    if not out:
        raise ValueError(f"group {group!r} holds no parameters in this architecture")
    return out


def swap(pair: ModelPair, group: str, alpha: float = 1.0) -> ReplaceWeights:
    """An intervention for ``pair.aligned``: ``group``'s weights interpolated toward the base."""
    return ReplaceWeights(interpolated_weights(pair, group, alpha))


@dataclass(frozen=True)
class SwapSweep:
    """Refusal of the aligned model with groups of weights taken (or interpolated) from the base.

    ``harmful`` and ``harmless`` are ``[group, alpha]`` mean refusal scores (log-odds);
    ``harmful_rate`` and ``harmless_rate`` the share of prompts refused (score > 0, or judged on replies: see
    :func:`swap_sweep`'s provenance). The references
    (unchanged aligned model, base model) are in ``reference``.
    """

    groups: tuple[str, ...]
    alphas: tuple[float, ...]
    refusal_tokens: tuple[str, ...]
    harmful: Tensor
    harmless: Tensor
    harmful_rate: Tensor
    harmless_rate: Tensor
    reference: dict[str, dict[str, float]]
    provenance: Provenance | None = None

    def table(self):
        import pandas as pd

        rows = [{"group": g, "alpha": a, "harmful_score": self.harmful[i, j].item(),
                 "harmless_score": self.harmless[i, j].item(), "harmful_refused": self.harmful_rate[i, j].item(),
                 "harmless_refused": self.harmless_rate[i, j].item()}
                for i, g in enumerate(self.groups) for j, a in enumerate(self.alphas)]
        return pd.DataFrame(rows)


def layer_groups(n_layers: int, components: bool = False, per: int = 1) -> list[str]:
    """``["layer 0", ...]``; every ``"layer N attn|mlp"`` with ``components``; with ``per`` > 1, runs of that many
    layers (``["layers 0-4", "layers 5-9", ...]``, the last run shorter when ``per`` does not divide ``n_layers``)."""
    if components:
        return [f"layer {layer} {c}" for layer in range(n_layers) for c in ("attn", "mlp")]
    if per > 1:
        return [f"layers {a}-{min(a + per, n_layers) - 1}" for a in range(0, n_layers, per)]
    return [f"layer {layer}" for layer in range(n_layers)]


def swap_sweep(
    pair: ModelPair,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str] | None,
    *,
    groups: Sequence[str] | None = None,
    alphas: Sequence[float] = (1.0,),
    refusal_tokens: Sequence[str] | None = None,
    judge: Callable[[str], bool] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    reference: dict[str, dict[str, float]] | None = None,
) -> SwapSweep:
    """Refusal of the aligned model on harmful and harmless prompts with each group swapped.

    ``groups`` defaults to every layer; ``refusal_tokens`` to
    :func:`interp.metrics.derive_refusal_tokens` on the harmful prompts. The refusal *score* is always the first
    answer token's (log-odds of the refusal tokens); the refusal *rate* is the share with score > 0, or, with
    ``judge``, the share of greedy replies (``max_new_tokens``, the swap in place) the judge reads as refusals, which
    a real model needs, whose refusals and compliances may open alike. ``harmless=None`` measures harmful prompts
    only (the harmless columns are NaN), where replies are costly. With ``judge``, a pair whose aligned model prefers
    no first token over the base's (nothing to derive refusal tokens from) still gets its rates; its scores are NaN.
    ``reference``: both unswapped models' measures from an earlier sweep of this pair on the same prompts and
    settings (its ``.reference``), not measured again. ``alpha = 0`` swaps nothing: it reads the aligned model's
    reference.
    """
    groups = list(groups or layer_groups(pair.cfg.n_layers))
    for group in groups:
        group_modules(pair.aligned, group)  # bad groups fail before any forward pass
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {a}")
    tokens = _refusal_tokens(pair, harmful, refusal_tokens, judged=judge is not None)
    fmt = dict(batch_size=batch_size, prompt_format=pair.prompt_format)
    sets = {"harmful": _texts(harmful), "harmless": None if harmless is None else _texts(harmless)}

    def measure(model, *interventions) -> dict[str, float]:
        out = {}
        for label, texts in sets.items():
            if texts is None:
                out[label] = out[f"{label}_rate"] = float("nan")
                continue
            if judge is None:
                scores = refusal_scores(model, texts, tokens, *interventions, **fmt)
                refused = (scores > 0).tolist()
            else:  # one prefill gives the reply and the first token's logits, the score's
                replies, logits = generate_with_answer_logits(model, texts, *interventions,
                                                              max_new_tokens=max_new_tokens, **fmt)
                scores = (refusal_score(logits, token_ids(pair.tokenizer, tokens)) if tokens else
                          torch.full((len(texts),), float("nan")))
                refused = [bool(judge(r)) for r in replies]
            out[label], out[f"{label}_rate"] = scores.mean().item(), sum(refused) / len(refused)
        return out

    reference = reference or {name: measure(model) for name, model in pair}
    shape = (len(groups), len(alphas))
    scores = {k: torch.empty(shape) for k in ("harmful", "harmless", "harmful_rate", "harmless_rate")}
    for i, group in enumerate(groups):
        for j, alpha in enumerate(alphas):
            measured = reference["aligned"] if alpha == 0 else measure(pair.aligned, swap(pair, group, alpha))
            for key, value in measured.items():
                scores[key][i, j] = value
    texts = sets["harmful"] + (sets["harmless"] or [])
    how = {"refusal_tokens": tokens} if judge is None else {
        "refusal_tokens": tokens, "judge": f"{judge.__module__}.{judge.__qualname__}", "max_new_tokens": max_new_tokens}
    provenance = Provenance.of_pair(pair, texts, n_harmful=len(sets["harmful"]), groups=groups, alphas=list(alphas),
                                    **how)
    return SwapSweep(tuple(groups), tuple(alphas), tuple(tokens), reference=reference, provenance=provenance,
                     **scores)


def _refusal_tokens(pair, harmful, given, *, judged: bool) -> list[str]:
    """The refusal tokens given, or derived from the pair; none (scores not read) where a judge reads the replies
    and there is nothing to derive them from."""
    if given:
        return list(given)
    try:
        return list(derive_refusal_tokens(pair, harmful))
    except NoRefusalTokens:
        if not judged:
            raise
        return []


def _texts(prompts) -> list[str]:
    return list(getattr(prompts, "prompts", prompts))
