"""Does a latent cause the behaviour change? Take it out of the aligned model and put it into the base.

A latent's part in the difference between the models at one token is its code times its difference
vector, ``delta_j = f_j * (d_aligned - d_base)`` (a difference-SAE: ``f_j * d_j``), with the codes read from
both models' clean residual streams at the dictionary's site. :func:`latent_effects` runs every prompt
through the aligned model with ``delta_j`` subtracted there at every token, and through the base with it
added, and reads the refusal score at the answer position (:func:`interp.metrics.refusal_score`): one row
per latent, and one for all of them together.

Taking a latent's contribution out at one site leaves every later layer free to rebuild it from what the
base already represented (harmfulness), so :func:`latent_effects` also projects the latent's difference
vector out of the aligned model at every layer, the ablation the refusal direction is judged by
(:class:`interp.interventions.AblateDirection`, Arditi et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.data import PromptSet
from interp.dictionary.diffing import LatentScaling, latent_scaling
from interp.dictionary.result import Dictionary
from interp.dictionary.tokens import PairedTokens
from interp.intervals import Interval, bootstrap
from interp.interventions import AblateDirection
from interp.metrics import last_logits, refusal_score, refusal_scores, token_ids
from interp.models import ModelPair
from interp.prompts import length_batches, pad_batch, pad_id, tokenize
from interp.provenance import Provenance

ALL = "all"
COLUMNS = ["latent", "ablated", "added", "ablation_share", "addition_share", "refused_after_ablation", "active",
           "direction_ablation_share"]


class NoRefusalGap(ValueError):
    """Both models give the prompts the same refusal score: there is nothing for a latent to explain."""


def _run(model, input_ids: Tensor, mask: Tensor, hook: str, edit=None) -> tuple[Tensor, Tensor]:
    """Last-position logits of one padded batch, and the activation at ``hook`` (after ``edit``, if any)."""
    seen = {}

    def at_site(x: Tensor, hook) -> Tensor:
        out = x if edit is None else edit(x)
        seen["x"] = out
        return out

    logits = last_logits(model, input_ids, mask, [(hook, at_site)])
    return logits, seen["x"].float().cpu()


def _clean_batches(pair: ModelPair, d: Dictionary, ids: list[list[int]], batch_size: int):
    """Per left-padded batch (prompts grouped by length, :func:`interp.prompts.length_batches`): the prompts'
    indices, the tokens, mask, both models' last-position logits and the codes ``[batch, pos, n_latents]`` at every
    real token but the first (zero elsewhere), from clean runs."""
    for batch in length_batches([len(row) for row in ids], batch_size):
        rows = [ids[i] for i in batch]
        input_ids, mask = pad_batch(rows, pad_id(pair.tokenizer), "left")
        real = mask.bool().clone()
        real[torch.arange(len(rows)), mask.shape[1] - torch.tensor([len(r) for r in rows])] = False  # first token
        base_logits, x_base = _run(pair.base, input_ids, mask, d.hook)
        aligned_logits, x_aligned = _run(pair.aligned, input_ids, mask, d.hook)
        yield batch, input_ids, mask, base_logits, aligned_logits, d.codes(x_base, x_aligned) * real[..., None]


@torch.no_grad()
def most_active(pair: ModelPair, d: Dictionary, prompts: PromptSet | Sequence[str], top: int = 64, *,
                batch_size: int = 64, prompt_format: str | None = None) -> list[int]:
    """The ``top`` latents with the largest summed ``|delta_j|`` (code times difference-vector norm) over the
    prompts' tokens, largest first."""
    ids = tokenize(pair.tokenizer, prompts, prompt_format or pair.prompt_format, n_ctx=pair.n_ctx)
    mass = torch.zeros(d.n_latents)
    for *_, codes in _clean_batches(pair, d, ids, batch_size):
        mass += codes.sum((0, 1))
    mass *= d.difference_vectors().norm(dim=-1)
    return [int(j) for j in mass.argsort(descending=True)[:top] if mass[j] > 0]


@dataclass(frozen=True, eq=False)
class LatentEffects:
    """Refusal scores with each latent taken out of the aligned model and put into the base; see the module docstring.

    ``table`` has one row per latent (and one, ``"all"``, for all of them together), sorted by how much of
    the pair's refusal gap the ablation closes.
    """

    table: object
    """A DataFrame: ``ablated`` / ``added`` (mean refusal score after), ``ablation_share`` / ``addition_share`` (the
    share of the gap ``aligned - base`` removed / restored), ``refused_after_ablation`` (share of prompts still
    refused), ``direction_ablation_share`` (the share removed by projecting the latent's difference vector out of
    the aligned model at every layer; single latents only), ``active`` (share of prompts where the latent fires at
    some token), ``cosine`` (its difference
    vector with the direction, when given), ``relative_norm`` and ``tag`` (crosscoders)."""
    base_score: float
    aligned_score: float
    provenance: Provenance
    scores: dict = field(default_factory=dict)
    """Per-prompt refusal scores in prompt order: ``"base"`` and ``"aligned"`` (clean runs), and for each row of the
    table ``(latent, "ablated")``, ``(latent, "added")`` and, for single latents, ``(latent, "direction")``."""

    @property
    def gap(self) -> float:
        return self.aligned_score - self.base_score

    def share_interval(self, latent: int | str, effect: str = "addition") -> Interval:
        """A latent's share of the refusal gap (``"addition"``: restored in the base; ``"ablation"``: closed by
        ablating it at the site; ``"direction"``: by ablating its direction at every layer) with a 95% bootstrap
        interval over prompts, the gap resampled with them."""
        key = {"addition": "added", "ablation": "ablated", "direction": "direction"}.get(effect)
        if key is None:
            raise ValueError(f"effect must be 'addition', 'ablation' or 'direction', not {effect!r}")
        if (latent, key) not in self.scores:
            raise KeyError(f"no per-prompt scores for latent {latent!r} ({effect})")
        if key == "added":
            def share(base, aligned, edited):
                return (edited.mean() - base.mean()) / (aligned.mean() - base.mean())
        else:
            def share(base, aligned, edited):
                return (aligned.mean() - edited.mean()) / (aligned.mean() - base.mean())
        return bootstrap(share, self.scores["base"], self.scores["aligned"], self.scores[latent, key])

    def plot(self, n: int = 8, static: bool = False, title: str = "Latents: refusal restored and removed"):
        """The ``n`` latents that restore the most refusal when added to the base: the share of the refusal gap each
        edit moves (added to the base, ablated at the site, its direction ablated at every layer)."""
        from interp import plotting

        rows = self.table[self.table.index != ALL].sort_values("addition_share", ascending=False).head(n)
        columns = {"added to the base": "addition_share", "ablated at the site": "ablation_share",
                   "direction ablated, every layer": "direction_ablation_share"}
        values = {name: {str(j): float(rows.loc[j, c]) for j in rows.index} for name, c in columns.items()}
        draw = plotting.grouped_bars_static if static else plotting.grouped_bars
        return draw(values, title=title, xlabel="latent", ylabel="share of the refusal gap")

    def restoring(self, min_share: float = 0.2) -> list[int]:
        """The single latents that, added to the base, restore at least ``min_share`` of the refusal gap, most first."""
        rows = self.table[(self.table.index != ALL) & (self.table.addition_share >= min_share)]
        return [int(i) for i in rows.sort_values("addition_share", ascending=False).index]


@torch.no_grad()
def latent_effects(pair: ModelPair, d: Dictionary, latents: Sequence[int] | None, prompts: PromptSet | Sequence[str],
                   refusal_tokens: Sequence[str], *, direction: Tensor | None = None, top: int = 64,
                   batch_size: int = 64, prompt_format: str | None = None) -> LatentEffects:
    """Ablate each of ``latents`` from the aligned model and add it to the base, on ``prompts`` (requests the
    aligned model refuses and the base does not, e.g. held-out harmful ones); see the module docstring.

    ``latents=None``: the ``top`` latents that move the aligned stream furthest from the base's on these prompts
    (the sum over their tokens of ``|delta_j|``); for a crosscoder, :meth:`Dictionary.leaning_aligned` is the
    usual choice instead.
    """
    import pandas as pd

    if latents is None:
        latents = most_active(pair, d, prompts, top, batch_size=batch_size, prompt_format=prompt_format)
    latents = [int(j) for j in latents]
    bad = [j for j in latents if not 0 <= j < d.n_latents]
    if bad:
        raise ValueError(f"latents {bad} do not exist: the dictionary has {d.n_latents}")
    refusal = token_ids(pair.tokenizer, refusal_tokens)
    ids = tokenize(pair.tokenizer, prompts, prompt_format or pair.prompt_format, n_ctx=pair.n_ctx)
    clean = list(_clean_batches(pair, d, ids, batch_size))  # the gap is checked before any edited run
    batched = torch.tensor([i for batch, *_ in clean for i in batch])
    in_order = torch.empty_like(batched)
    in_order[batched] = torch.arange(len(batched))  # batch order -> prompt order
    per_prompt = {"base": torch.cat([refusal_score(b[3], refusal) for b in clean])[in_order],
                  "aligned": torch.cat([refusal_score(b[4], refusal) for b in clean])[in_order]}
    base_score, aligned_score = per_prompt["base"].mean().item(), per_prompt["aligned"].mean().item()
    gap = aligned_score - base_score
    if abs(gap) < 1e-6:
        raise NoRefusalGap("the two models give these prompts the same refusal score, so there is no gap for a "
                           "latent to explain; give prompts the aligned model refuses and the base does not")
    vectors = d.difference_vectors()
    groups = {j: [j] for j in latents} | ({ALL: latents} if latents else {})
    scores = {(g, m): [] for g in groups for m in ("ablated", "added")}
    active = {g: [] for g in groups}
    for _, input_ids, mask, _, _, codes in clean:
        for g, members in groups.items():
            delta = torch.einsum("bpl,ld->bpd", codes[..., members], vectors[members])
            for m, model, sign in (("ablated", pair.aligned, -1), ("added", pair.base, 1)):
                logits, _ = _run(model, input_ids, mask, d.hook,
                                 lambda x, delta=delta, sign=sign: x + sign * delta.to(x.device, x.dtype))
                scores[g, m].append(refusal_score(logits, refusal))
            active[g].append((codes[..., members] > 0).any(-1).any(-1).float())
    cos = None if direction is None else torch.nn.functional.cosine_similarity(
        vectors, direction.float()[None].to(vectors.device), dim=-1)
    relative, tags = (d.relative_norms(), d.tags()) if d.kind == "crosscoder" else (None, None)
    fmt = prompt_format or pair.prompt_format
    table = []
    for g, members in groups.items():
        ablated, added = torch.cat(scores[g, "ablated"])[in_order], torch.cat(scores[g, "added"])[in_order]
        per_prompt[g, "ablated"], per_prompt[g, "added"] = ablated, added
        row = {"latent": g, "ablated": ablated.mean().item(), "added": added.mean().item(),
               "ablation_share": (aligned_score - ablated.mean().item()) / gap,
               "addition_share": (added.mean().item() - base_score) / gap,
               "refused_after_ablation": (ablated > 0).float().mean().item(),
               "active": torch.cat(active[g]).mean().item()}
        if len(members) == 1 and vectors[members[0]].norm() > 0:
            projected = refusal_scores(pair.aligned, prompts, refusal_tokens, AblateDirection(vectors[members[0]]),
                                       batch_size=batch_size, prompt_format=fmt)
            per_prompt[g, "direction"] = projected
            row["direction_ablation_share"] = (aligned_score - projected.mean().item()) / gap
        else:
            row["direction_ablation_share"] = float("nan")
        if cos is not None:
            row["cosine"] = cos[members[0]].item() if len(members) == 1 else float("nan")
        if relative is not None:
            row["relative_norm"] = relative[members[0]].item() if len(members) == 1 else float("nan")
            row["tag"] = tags[members[0]] if len(members) == 1 else ""
        table.append(row)
    frame = pd.DataFrame(table, columns=COLUMNS + (["cosine"] if cos is not None else [])
                         + (["relative_norm", "tag"] if relative is not None else []))
    frame = frame.set_index("latent").sort_values("ablation_share", ascending=False)
    provenance = Provenance.of_pair(pair, prompts, dictionary=d.kind, layer=d.layer, latents=latents,
                                    refusal_tokens=list(refusal_tokens))
    return LatentEffects(frame, base_score, aligned_score, provenance, per_prompt)


@dataclass(frozen=True, eq=False)
class LatentCheck:
    """:func:`latent_effects` on a dictionary's candidate latents, with latent scaling beside it (crosscoders)."""

    effects: LatentEffects
    scaling: LatentScaling | None
    table: object
    """The effects table with ``nu_error`` and ``nu_reconstruction`` joined (crosscoders)."""
    min_share: float

    @property
    def restoring(self) -> list[int]:
        """The latents that, added to the base, restore at least ``min_share`` of the refusal gap, most first."""
        return self.effects.restoring(self.min_share)

    @property
    def restoring_pass_scaling(self) -> bool | None:
        """Whether every restoring latent passes latent scaling (``None`` for a difference-SAE)."""
        return None if self.scaling is None else set(self.restoring) <= set(self.scaling.passed())


def check_latents(pair: ModelPair, d: Dictionary, prompts: PromptSet | Sequence[str], refusal_tokens: Sequence[str],
                  *, tokens: PairedTokens | None = None, latents: Sequence[int] | None = None,
                  direction: Tensor | None = None, min_share: float = 0.2, **kwargs) -> LatentCheck:
    """The causal check of a dictionary's candidates (default: a crosscoder's :meth:`Dictionary.leaning_aligned`, a
    difference-SAE's :func:`most_active`), with latent scaling on ``tokens`` for a crosscoder."""
    if latents is None and d.kind == "crosscoder":
        latents = d.leaning_aligned()
    effects = latent_effects(pair, d, latents, prompts, refusal_tokens, direction=direction, **kwargs)
    scaling, table = None, effects.table
    if d.kind == "crosscoder":
        if tokens is None:
            raise ValueError("latent scaling needs the token rows: give tokens=")
        scaling = latent_scaling(d, tokens, [int(j) for j in table.index if j != ALL])
        table = table.join(scaling.table())
    return LatentCheck(effects, scaling, table, min_share)
