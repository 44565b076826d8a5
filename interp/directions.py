"""The refusal direction (Arditi et al. 2024), for any model and any pair.

The pipeline:

1. **Candidates** (:func:`candidate_directions`): the difference between the mean residual
   stream (``blocks.{l}.hook_resid_pre``) on harmful and on harmless prompts, at every layer and
   every post-instruction position (the tokens the prompt format puts after the user's text).
2. **Selection** (:func:`score_candidates`, :func:`find_refusal_direction`): on held-back
   validation prompts, each candidate gets a *bypass* score (mean refusal score on harmful
   prompts with the direction ablated), an *induce* score (mean refusal score on harmless
   prompts with the vector added at its layer) and the *KL* of the next-token distribution on
   harmless prompts under ablation. Among candidates that induce refusal (score > 0), keep the
   answer distribution (KL < 0.1) and lie below ``0.8 * n_layers``, the lowest bypass score wins.
   The whole score table is kept on the result.
3. **Interventions**: :meth:`RefusalDirection.ablation` projects the direction out at every
   layer and position; :meth:`RefusalDirection.addition` adds the difference-in-means vector at
   the direction's layer; :func:`interp.weight_edit.orthogonalize` writes a Hugging Face
   checkpoint whose weights can no longer write the direction, which behaves like the ablation.
4. **Across the pair**: :func:`candidate_cosines` compares the two models' candidates layer by
   layer; :func:`direction_at` takes the other model's difference in means at the same site, and
   :func:`refusal_effects` measures any direction's ablation and addition on any model.

Refusal is judged from the first answer token (:func:`interp.metrics.refusal_score` > 0), or, by
:func:`refusal_effects` on request, from generated replies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.cache import collect_activations, resid_pre_hooks
from interp.checks import check_layer, check_vector
from interp.data import PromptSet
from interp.interventions import AblateDirection, AddVector, generate
from interp.metrics import answer_logits, kl_divergence, refusal_score, token_ids
from interp.prompts import format_prompts, prompt_format_of, tokenize_for
from interp.provenance import Provenance, model_name

if TYPE_CHECKING:
    import pandas as pd

MIN_PER_CLASS = 8
KL_THRESHOLD = 0.1
MAX_LAYER_FRACTION = 0.8
MIN_RELATIVE_NORM = 1e-3
"""A candidate shorter than this fraction of the activations' norm at its site carries no information."""
PAPER_VALIDATION = 32
"""Prompts per class Arditi et al. select a direction on (their ``n_val``): the report's search holds back at most
this many (``max_val``)."""
RANK_PROMPTS = 4
"""Harmful validation prompts the default search estimates every candidate's bypass score on, to rank them."""
RANK_MARGIN = 1.0
"""The default search stops once the next candidate's estimate is this far (log-odds) above the best passing score."""
MAX_SCORED = 16
"""The default search scores at most this many candidates exactly."""


def post_instruction_positions(tokenizer, prompt_format: str = "chat") -> list[int]:
    """Negative positions of the tokens the prompt format puts after the user's text.

    Found by rendering a sentinel request and tokenizing the text after it; ``[-1]`` when the
    format adds nothing after the text (``"raw"``).
    """
    return list(range(-max(suffix_length(tokenizer, prompt_format), 1), 0))


def suffix_length(tokenizer, prompt_format: str = "chat") -> int:
    """How many tokens the prompt format puts after the user's text (0 for ``"raw"``)."""
    sentinel = "interp-sentinel-request"
    text = format_prompts(tokenizer, [sentinel], prompt_format)[0]
    suffix = text[text.rindex(sentinel) + len(sentinel):]
    return len(tokenizer(suffix, add_special_tokens=False).input_ids) if suffix.strip() else 0


def prompt_texts(prompts: PromptSet | Sequence[str], what: str, minimum: int = MIN_PER_CLASS) -> list[str]:
    """The prompts' texts, checked: at least ``minimum`` of them, each a non-empty string (``what`` names them)."""
    texts = list(prompts.prompts if isinstance(prompts, PromptSet) else prompts)
    if len(texts) < minimum:
        raise ValueError(f"need at least {minimum} {what} prompts, got {len(texts)}")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"the {what} prompts must be non-empty strings")
    return texts


@torch.no_grad()
def mean_activations(
    model, prompts: Sequence[str], positions: Sequence[int], *, batch_size: int = 32
) -> Float[Tensor, "pos layer d_model"]:
    """Mean ``resid_pre`` of every layer at each of ``positions``, over ``prompts``."""
    hooks = resid_pre_hooks(model.cfg.n_layers)
    acts = collect_activations(model, list(prompts), hooks, positions=list(positions), batch_size=batch_size,
                               progress=False)
    return torch.stack([acts[h].float().mean(0) for h in hooks], 1)  # [pos, layer, d]


def candidate_directions(
    model, harmful: PromptSet | Sequence[str], harmless: PromptSet | Sequence[str], *,
    positions: Sequence[int] | None = None, batch_size: int = 32,
) -> Float[Tensor, "pos layer d_model"]:
    """Difference in means, harmful minus harmless, of ``resid_pre`` at every layer and position.

    ``positions`` default to the post-instruction positions of the model's prompt format.
    """
    return _means(model, harmful, harmless, positions, batch_size)[0]


def _means(model, harmful, harmless, positions, batch_size) -> tuple[Tensor, Tensor]:
    """``(harmful - harmless means [pos, layer, d_model], informative [pos, layer])``.

    A candidate is informative unless it is shorter than ``MIN_RELATIVE_NORM`` of the
    activations' norm at its site, or it sits at layer 0 on a position that holds the same token
    in every prompt (there the stream is that token's embedding, plus at most a position
    embedding: the difference can only reflect prompt lengths).
    """
    harmful, harmless = prompt_texts(harmful, "harmful"), prompt_texts(harmless, "harmless")
    if positions is None:
        positions = post_instruction_positions(model.tokenizer, prompt_format_of(model))
    mean_harmful = mean_activations(model, harmful, positions, batch_size=batch_size)
    mean_harmless = mean_activations(model, harmless, positions, batch_size=batch_size)
    diff = mean_harmful - mean_harmless
    scale = (mean_harmful.norm(dim=-1) + mean_harmless.norm(dim=-1)) / 2
    informative = diff.norm(dim=-1) > MIN_RELATIVE_NORM * scale.clamp(min=1e-12)
    ids = tokenize_for(model, harmful + harmless)
    for p, pos in enumerate(positions):
        if len({row[pos] for row in ids}) == 1:
            informative[p, 0] = False
    return diff, informative


def _kl(reference: Tensor, logits: Tensor) -> float:
    """Mean KL(reference || logits) over prompts, of next-token distributions."""
    return kl_divergence(reference.float().log_softmax(-1), logits.float().log_softmax(-1)).mean().item()


@dataclass(frozen=True, eq=False)
class RefusalDirection:
    """A refusal direction: where it was read, the unit vector, and (if searched for) the score table."""

    layer: int
    position: int
    vector: Float[Tensor, " d_model"]
    """The difference in means itself (harmful minus harmless), added by :meth:`addition`."""
    refusal_tokens: tuple[str, ...] = ()
    scores: pd.DataFrame | None = None
    """Every candidate: position, layer, norm, bypass/induce score and rate, KL, passed, why."""
    passed_filters: bool = True
    """False when no candidate passed the filters and the best unfiltered one was taken."""
    source: str = ""
    """The model the direction was read from."""
    provenance: Provenance | None = None

    @property
    def selected(self):
        """The score-table row (a pandas Series) of this direction's candidate; ``None`` without a table."""
        if self.scores is None:
            return None
        return self.scores.query("layer == @self.layer and position == @self.position").iloc[0]

    def explain(self, n: int = 3) -> str:
        """Why the search chose this direction: it passed every filter, or which filters the best candidates fail."""
        if self.scores is None:
            return "not searched for: no score table"
        if self.passed_filters:
            return f"passes every filter (lowest bypass score of {int(self.scores.passed.sum())} that do)"
        best = self.scores.dropna(subset=["bypass_score"]).sort_values("bypass_score").head(n)
        lines = [f"layer {int(r.layer)}, position {int(r.position)}: {r.why}" for r in best.itertuples()]
        return ("no candidate passes every filter; the lowest bypass scores fail because\n  " + "\n  ".join(lines)
                + f"\nchosen instead: layer {self.layer}, position {self.position} ({self.selected.why})")

    def plot(self, static: bool = False, title: str = "Candidate directions: bypass and induce scores"):
        """Bypass and induce scores of every candidate per layer (:func:`plot_scores`)."""
        return plot_scores({"": self}, static=static, title=title)

    @property
    def direction(self) -> Float[Tensor, " d_model"]:
        """The unit vector."""
        return self.vector / self.vector.norm()

    def ablation(self) -> AblateDirection:
        """Project the direction out of the residual stream at every layer and position."""
        return AblateDirection(self.direction)

    def addition(self, scale: float = 1.0, layer: int | None = None) -> AddVector:
        """Add ``scale`` times the difference-in-means vector at every position of its layer."""
        return AddVector(self.vector, self.layer if layer is None else layer, scale=scale)

    def __repr__(self) -> str:
        return (f"RefusalDirection(layer={self.layer}, position={self.position}, norm={self.vector.norm():.3g}, "
                f"source={self.source!r}, passed_filters={self.passed_filters})")


def plot_scores(found: Mapping[str, RefusalDirection], static: bool = False,
                title: str = "Candidate directions: bypass and induce scores"):
    """Bypass and induce scores per layer of several searches' candidates: one curve per search, score
    and (when there are several) position; y = 0 is where refusal flips."""
    from interp import plotting

    curves = {}
    for name, d in found.items():
        if d.scores is None:
            raise ValueError(f"direction {name!r} was not searched for: it has no score table to plot")
        for pos, rows in d.scores.groupby("position", sort=False):
            at = "" if d.scores.position.nunique() == 1 else f", position {pos}"
            for what in ("bypass", "induce"):
                label = f"{name} {what}{at}".strip()
                curves[label] = torch.tensor(rows.sort_values("layer")[f"{what}_score"].values)[None]
    draw = plotting.layer_curves_static if static else plotting.layer_curves
    return draw(curves, ylabel="refusal score (log-odds)", band=None, title=title, zero_line=True)


def direction_at(
    model, harmful: PromptSet | Sequence[str], harmless: PromptSet | Sequence[str], layer: int, position: int, *,
    batch_size: int = 32, source: str = "",
) -> RefusalDirection:
    """The difference-in-means direction of ``model`` at one site (e.g. where another model's was found)."""
    check_layer(model, layer)
    harmful, harmless = prompt_texts(harmful, "harmful"), prompt_texts(harmless, "harmless")
    vector = candidate_directions(model, harmful, harmless, positions=[position], batch_size=batch_size)[0, layer]
    provenance = Provenance.of([model], harmful + harmless, layer=layer, position=position, n_harmful=len(harmful))
    return RefusalDirection(layer, position, vector, source=source or model_name(model), provenance=provenance)


def score_candidates(
    model, candidates: Float[Tensor, "pos layer d_model"], positions: Sequence[int],
    harmful_val: Sequence[str], harmless_val: Sequence[str], refusal_tokens: Sequence[str], *,
    max_layer_fraction: float = MAX_LAYER_FRACTION, kl_threshold: float = KL_THRESHOLD, batch_size: int = 32,
    progress: bool = True, informative: Bool[Tensor, "pos layer"] | None = None,
):
    """Bypass score, induce score and KL of every candidate on validation prompts, as a DataFrame.

    Candidates at or above ``max_layer_fraction * n_layers``, and candidates that carry no
    information (``informative`` False; by default, zero norm) are listed but not run (their
    scores are NaN). The column ``why`` names the filters a candidate fails.
    """
    scorer = _Scorer(model, harmful_val, harmless_val, refusal_tokens, batch_size)
    sites = _eligible(model, candidates, positions, max_layer_fraction, informative)
    scores = {site: scorer(candidates[site], site[1], positions[site[0]])
              for site in tqdm(sites, desc="score candidates", disable=not progress)}
    return _table(model, candidates, positions, scores, max_layer_fraction, kl_threshold, informative)


def _eligible(model, candidates, positions, max_layer_fraction, informative) -> list[tuple[int, int]]:
    """The ``(position index, layer)`` of every candidate below the layer limit that carries information."""
    if candidates.shape[0] != len(positions) or candidates.shape[1:] != (model.cfg.n_layers, model.cfg.d_model):
        raise ValueError(f"candidates must be [{len(positions)}, {model.cfg.n_layers}, {model.cfg.d_model}], "
                         f"got {list(candidates.shape)}")
    keep = candidates.norm(dim=-1) > 0 if informative is None else informative
    max_layer = max_layer_fraction * model.cfg.n_layers
    return [(p, layer) for p in range(len(positions)) for layer in range(model.cfg.n_layers)
            if layer < max_layer and bool(keep[p, layer])]


def _passes(induce_score, kl, kl_threshold: float):
    """The filters a scored candidate must pass besides the layer limit (floats, or table columns)."""
    return (induce_score > 0) & (kl < kl_threshold)


class _Scorer:
    """Scores one candidate exactly: three batched passes over the validation prompts."""

    def __init__(self, model, harmful_val, harmless_val, refusal_tokens, batch_size):
        self.model, self.harmful, self.harmless, self.batch_size = model, harmful_val, harmless_val, batch_size
        self.ids = token_ids(model.tokenizer, refusal_tokens)
        self.reference = answer_logits(model, harmless_val, batch_size=batch_size)

    def bypass(self, candidate: RefusalDirection, prompts: Sequence[str]) -> Tensor:
        """Refusal scores on ``prompts`` with the candidate ablated."""
        return refusal_score(answer_logits(self.model, prompts, candidate.ablation(), batch_size=self.batch_size),
                             self.ids)

    def __call__(self, vector: Tensor, layer: int, position: int) -> dict[str, float]:
        candidate = RefusalDirection(layer, position, vector)
        added = answer_logits(self.model, self.harmless, candidate.addition(), batch_size=self.batch_size)
        kept = answer_logits(self.model, self.harmless, candidate.ablation(), batch_size=self.batch_size)
        bypass, induce = self.bypass(candidate, self.harmful), refusal_score(added, self.ids)
        return {"bypass_score": bypass.mean().item(), "induce_score": induce.mean().item(),
                "kl": _kl(self.reference, kept), "bypass_refusal": (bypass > 0).float().mean().item(),
                "induce_refusal": (induce > 0).float().mean().item()}


def _table(model, candidates, positions, scores, max_layer_fraction, kl_threshold, informative, estimates=None):
    """Every candidate as a row: its scores (NaN where not scored), estimates and rank when given, the filters."""
    import pandas as pd

    max_layer = max_layer_fraction * model.cfg.n_layers
    rows = []
    for p, pos in enumerate(positions):
        for layer in range(model.cfg.n_layers):
            norm = candidates[p, layer].norm().item()
            row = {"position": pos, "layer": layer, "norm": norm, "bypass_score": float("nan"),
                   "induce_score": float("nan"), "kl": float("nan"), "bypass_refusal": float("nan"),
                   "induce_refusal": float("nan"),
                   "informative": bool(informative[p, layer]) if informative is not None else norm > 0}
            row.update(scores.get((p, layer), {}))
            if estimates is not None:
                row.update({name: float(values[p, layer]) for name, values in estimates.items()})
            rows.append(row)
    table = pd.DataFrame(rows)
    table["passed"] = _passes(table.induce_score, table.kl, kl_threshold) & (table.layer < max_layer)
    table["why"] = [_failures(row, max_layer, kl_threshold) for row in table.itertuples()]
    return table


def _failures(row, max_layer: float, kl_threshold: float) -> str:
    """The selection filters one candidate fails, in words ("" when it passes)."""
    if row.layer >= max_layer:
        return f"layer >= {max_layer:g} (not scored)"
    if not row.informative:
        return "carries no information (norm ~0, or one token everywhere at layer 0; not scored)"
    rank = getattr(row, "rank", float("nan"))
    if row.bypass_score != row.bypass_score and rank == rank:  # NaN: left out by the ranked search
        return (f"not scored: ranked {int(rank)} by its bypass score on a few prompts, "
                f"{row.bypass_estimate:.2f} (exhaustive=True scores every candidate)")
    failed = []
    if not row.induce_score > 0:
        failed.append(f"adding it induces no refusal (score {row.induce_score:.2f})")
    if not row.kl < kl_threshold:
        failed.append(f"ablating it moves harmless answers (KL {row.kl:.2f} >= {kl_threshold:g})")
    return "; ".join(failed)


def _ranked_search(model, candidates, positions, informative, harmful_val, harmless_val, refusal_tokens,
                   max_layer_fraction, kl_threshold, batch_size, progress, rank_prompts, margin, max_scored):
    """The score table of :func:`find_refusal_direction`'s default search.

    Every candidate's bypass score is first estimated on ``rank_prompts`` of the harmful
    validation prompts (one pass each); candidates are then scored exactly in ascending order of
    that estimate, until one scored candidate passes the filters and the next one's estimate is
    more than ``margin`` above the best passing bypass score (it would have to beat its own
    estimate by that much to be chosen), or ``max_scored`` have been scored.
    """
    if rank_prompts < 1 or margin < 0 or max_scored < 1:
        raise ValueError(f"rank_prompts and max_scored must be >= 1 and margin >= 0, got {rank_prompts}, "
                         f"{max_scored} and {margin}")
    scorer = _Scorer(model, harmful_val, harmless_val, refusal_tokens, batch_size)
    sites = _eligible(model, candidates, positions, max_layer_fraction, informative)
    subset = list(harmful_val)[:rank_prompts]
    estimate = torch.full(candidates.shape[:2], float("nan"))
    for site in tqdm(sites, desc="rank candidates", disable=not progress):
        estimate[site] = scorer.bypass(RefusalDirection(site[1], positions[site[0]], candidates[site]), subset).mean()
    order = sorted(sites, key=lambda site: estimate[site].item())
    rank = torch.full(candidates.shape[:2], float("nan"))
    for i, site in enumerate(order, 1):
        rank[site] = i
    scores: dict[tuple[int, int], dict[str, float]] = {}
    best = float("inf")  # the lowest bypass score of a scored candidate that passes
    for site in tqdm(order[:max_scored], desc="score candidates", disable=not progress):
        if estimate[site].item() > best + margin:
            break
        scores[site] = row = scorer(candidates[site], site[1], positions[site[0]])
        if _passes(row["induce_score"], row["kl"], kl_threshold):
            best = min(best, row["bypass_score"])
    estimates = {"bypass_estimate": estimate, "rank": rank}
    return _table(model, candidates, positions, scores, max_layer_fraction, kl_threshold, informative, estimates)


def _split(texts: list[str], fraction: float, rng: random.Random,
           most: int | None = None) -> tuple[list[str], list[str]]:
    order = list(range(len(texts)))
    rng.shuffle(order)
    n_val = max(1, min(round(fraction * len(texts)), most or len(texts)))
    return [texts[i] for i in sorted(order[n_val:])], [texts[i] for i in sorted(order[:n_val])]


def find_refusal_direction(
    model,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    *,
    refusal_tokens: Sequence[str],
    harmful_val: PromptSet | Sequence[str] | None = None,
    harmless_val: PromptSet | Sequence[str] | None = None,
    val_fraction: float = 0.25,
    max_val: int | None = None,
    positions: Sequence[int] | None = None,
    max_layer_fraction: float = MAX_LAYER_FRACTION,
    kl_threshold: float = KL_THRESHOLD,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    exhaustive: bool = False,
    rank_prompts: int = RANK_PROMPTS,
    margin: float = RANK_MARGIN,
    max_scored: int = MAX_SCORED,
    remember: bool = False,
) -> RefusalDirection:
    """Search ``model`` for its refusal direction (Arditi et al. 2024) and return the selected one.

    Difference-in-means candidates come from ``harmful`` vs ``harmless``; they are scored on
    ``harmful_val`` / ``harmless_val``, by default a ``val_fraction`` of each class held back
    (drawn with ``seed``), at most ``max_val`` of each (Arditi et al. validate on 32 per class).
    ``refusal_tokens`` are the first answer tokens of a refusal (for the organisms ``["sorry"]``;
    for a pair, :func:`interp.metrics.derive_refusal_tokens`). When no
    candidate passes the filters, :func:`select` falls back to candidates that both bypass and
    induce, with ``passed_filters=False``; :meth:`RefusalDirection.explain` says why.

    Scoring a candidate exactly takes three passes over all the validation prompts, so by
    default the candidates are first ranked by their bypass score on ``rank_prompts`` harmful
    validation prompts alone (one small pass each), then scored exactly in that order until one
    passes the filters and the next estimate is more than ``margin`` (log-odds) above the best
    passing score, or ``max_scored`` have been scored (when none of those passes, :func:`select`
    falls back among them). ``exhaustive=True`` scores every candidate. Either way the table lists
    them all; a ranked search adds ``bypass_estimate`` and ``rank``, and says which were not scored.

    ``remember=True``: the result is kept on disk and a later search of the same weights, on the same tokens, with
    the same settings and code, reads it (:func:`interp.memo.remembered`; announced).
    """
    settings = dict(refusal_tokens=list(refusal_tokens), val_fraction=val_fraction, max_val=max_val,
                    positions=positions, max_layer_fraction=max_layer_fraction, kl_threshold=kl_threshold, seed=seed,
                    batch_size=batch_size, exhaustive=exhaustive, rank_prompts=rank_prompts, margin=margin,
                    max_scored=max_scored)
    if max_val is not None and max_val < 1:
        raise ValueError(f"max_val must be at least 1 (or None: a val_fraction of each class), got {max_val}")
    if remember:
        return _remembered_search(model, harmful, harmless, harmful_val, harmless_val, settings, progress)
    harmful, harmless = prompt_texts(harmful, "harmful"), prompt_texts(harmless, "harmless")
    if not refusal_tokens:
        raise ValueError("refusal_tokens is empty: give the first tokens of a refusal, e.g. ['sorry'] or "
                         "interp.metrics.derive_refusal_tokens(pair, harmful)")
    token_ids(model.tokenizer, refusal_tokens)  # fail early on tokens the tokenizer cannot encode
    given, n_harmful = harmful + harmless, len(harmful)
    rng = random.Random(seed)
    if harmful_val is None:
        harmful, harmful_val = _split(harmful, val_fraction, rng, max_val)
    if harmless_val is None:
        harmless, harmless_val = _split(harmless, val_fraction, rng, max_val)
    harmful_val, harmless_val = (prompt_texts(harmful_val, "harmful validation", 2),
                                   prompt_texts(harmless_val, "harmless validation", 2))
    if positions is None:
        positions = post_instruction_positions(model.tokenizer, prompt_format_of(model))
    candidates, informative = _means(model, harmful, harmless, positions, batch_size)
    if exhaustive:
        table = score_candidates(model, candidates, positions, harmful_val, harmless_val, refusal_tokens,
                                 max_layer_fraction=max_layer_fraction, kl_threshold=kl_threshold,
                                 batch_size=batch_size, progress=progress, informative=informative)
    else:
        table = _ranked_search(model, candidates, positions, informative, harmful_val, harmless_val, refusal_tokens,
                               max_layer_fraction, kl_threshold, batch_size, progress, rank_prompts, margin,
                               max_scored)
    baseline = refusal_score(answer_logits(model, harmful_val, batch_size=batch_size),
                             token_ids(model.tokenizer, refusal_tokens)).mean().item()
    best = select(table, baseline)
    p, layer = list(positions).index(int(best.position)), int(best.layer)
    provenance = Provenance.of([model], given, n_harmful=n_harmful, validation=[len(harmful_val), len(harmless_val)],
                               positions=list(positions), refusal_tokens=list(refusal_tokens), seed=seed,
                               kl_threshold=kl_threshold, max_layer_fraction=max_layer_fraction)
    return RefusalDirection(layer, int(best.position), candidates[p, layer].clone(), tuple(refusal_tokens), table,
                            passed_filters=bool(table.passed.any()), source=model_name(model), provenance=provenance)


def _remembered_search(model, harmful, harmless, harmful_val, harmless_val, settings: dict,
                       progress: bool) -> RefusalDirection:
    """:func:`find_refusal_direction` through :func:`interp.memo.remembered`, keyed by the model's weights and the
    dtype of its products, the prompts' tokens (format and tokenizer included), the settings and the source of the
    modules the search runs."""
    import sys
    from dataclasses import replace

    from interp import cache, interventions, matmul, memo, metrics, prompts

    given = {"harmful": harmful, "harmless": harmless, "harmful_val": harmful_val, "harmless_val": harmless_val}
    # the products' dtype too: a search run in float32 is not the one a bfloat16 model would run
    key = {"model": memo.weights_fingerprint(model), "matmul": matmul.name(matmul.of(model)), "settings": settings,
           "code": memo.source_fingerprint(sys.modules[__name__], cache, interventions, metrics, prompts),
           "tokens": {k: None if v is None else tokenize_for(model, v) for k, v in given.items()}}
    found = memo.remembered("refusal-direction", key, lambda: find_refusal_direction(
        model, harmful, harmless, harmful_val=harmful_val, harmless_val=harmless_val, progress=progress, **settings))
    # the weights were the same; the name they were loaded under may not be
    return replace(found, source=model_name(model),
                   provenance=replace(found.provenance, models=(model_name(model),)))


def select(table, baseline: float):
    """The chosen row of a score table: the lowest bypass score among candidates that pass every filter.

    When none passes, the first non-empty of: candidates that both induce refusal and lower it
    when ablated (bypass score below ``baseline``, the unablated harmful score), candidates that
    induce refusal, every scored candidate; lowest bypass score within it.
    """
    scored = table.dropna(subset=["bypass_score"]) if "bypass_score" in table else table
    if scored.empty:
        raise ValueError("no candidate direction could be scored: every one carries no information or lies above "
                         "the layer limit")
    induces = scored.induce_score > 0
    for pool in (scored[scored.passed], scored[induces & (scored.bypass_score < baseline)], scored[induces], scored):
        if not pool.empty:
            return pool.sort_values("bypass_score").iloc[0]


@dataclass(frozen=True, eq=False)
class RefusalEffects(Mapping):
    """Refusal rates of one model: as is, with a direction ablated, with it added.

    A read-only mapping ``{"none" | "ablate" | "add": {"harmful" | "harmless": rate}}`` (so
    ``effects["ablate"]["harmful"]`` and ``dict(effects)`` work), plus its provenance, a flat
    view for bar charts, a table and a figure.
    """

    rates: dict[str, dict[str, float]]
    model: str = ""
    direction: str = ""
    """Where the direction was read, e.g. ``"layer 4, position -1 of .../sft"``."""
    provenance: Provenance | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Prompts judged per label (``{"harmful": n, "harmless": n}``)."""

    def __getitem__(self, intervention: str) -> dict[str, float]:
        return self.rates[intervention]

    def __iter__(self):
        return iter(self.rates)

    def __len__(self) -> int:
        return len(self.rates)

    def interval(self, intervention: str, label: str):
        """The rate with its 95% interval over the prompts judged (:func:`interp.intervals.rate`)."""
        from interp.intervals import rate

        n = self.counts[label]
        return rate(round(self.rates[intervention][label] * n), n)

    def flat(self) -> dict[str, float]:
        """``{"harmful, ablate": rate, ...}``: one entry per label and intervention (a bar chart's groups)."""
        return {f"{label}, {iv}": rates[label] for iv, rates in self.rates.items() for label in rates}

    def table(self):
        """Interventions as rows, labels as columns (rates in [0, 1])."""
        import pandas as pd

        return pd.DataFrame(self.rates).T.rename_axis("intervention")

    def plot(self, static: bool = False, title: str = "Refusal under the direction"):
        """Bars of :meth:`flat` (plotly, or matplotlib when ``static``)."""
        return plot_effects({self.model or "model": self}, static=static, title=title)


def plot_effects(effects: Mapping[str, RefusalEffects], static: bool = False,
                 title: str = "Refusal under the direction"):
    """Several models' (or directions') :class:`RefusalEffects` side by side, one bar colour each."""
    from interp import plotting

    draw = plotting.refusal_bars_static if static else plotting.refusal_bars
    return draw({name: e.flat() for name, e in effects.items()}, xlabel="prompts, intervention", title=title)


def refusal_effects(
    model, direction: RefusalDirection, harmful: PromptSet | Sequence[str], harmless: PromptSet | Sequence[str],
    refusal_tokens: Sequence[str] | None = None, *, judge: Callable[[str], bool] | None = None,
    max_new_tokens: int = 32, measure: Mapping[str, Sequence[str]] | None = None,
    as_is: Mapping[str, Sequence[bool]] | None = None, scale: float = 1.0, batch_size: int = 32,
) -> RefusalEffects:
    """Refusal rate on harmful and harmless prompts: as is, under ablation, under addition.

    Judged one of two ways: by the first answer token (``refusal_tokens``: a refusal when
    :func:`~interp.metrics.refusal_score` > 0), or by the reply (``judge``: greedy replies of ``max_new_tokens``
    tokens from :func:`~interp.interventions.generate`, the intervention in place while decoding, each read by
    ``judge(text)``). The first is cheap and right where refusals open with their own token (the organisms'
    ``sorry``); the second is what a real model needs, whose refusals and compliances may open alike (``I``).
    ``direction`` may come from another model of the pair (cross-model transfer). The result
    reads like ``{"none" | "ablate" | "add": {"harmful" | "harmless": rate}}``; ``measure`` (e.g.
    ``{"ablate": ["harmful"], "add": ["harmless"]}``, as Arditi et al. measure) keeps to those, where each is costly;
    ``as_is`` (``{"harmful": [refused, ...], "harmless": [...]}``, one verdict per prompt, e.g. a real pair's build
    replies from :func:`interp.pairs.built_refused`) gives the rates with no intervention instead of measuring them.
    """
    if (refusal_tokens is None) == (judge is None):
        raise ValueError("give refusal_tokens (judged by the first answer token) or judge (judged by the reply), "
                         "not both or neither")
    check_vector(model, direction.vector, "the direction", nonzero=True)
    sets = {"harmful": prompt_texts(harmful, "harmful"), "harmless": prompt_texts(harmless, "harmless")}
    interventions = {"none": (), "ablate": (direction.ablation(),), "add": (direction.addition(scale),)}
    if measure is None:
        measure = {name: tuple(sets) for name in interventions if not (as_is is not None and name == "none")}
    measure = dict(measure)
    if as_is is not None and "none" in measure:
        raise ValueError("as_is gives the rates with no intervention: measure must not name 'none' too")
    unknown = [f"{k}: {list(v)}" for k, v in measure.items() if k not in interventions or not set(v) <= set(sets)]
    if unknown:
        raise ValueError(f"measure names {unknown}; it maps interventions {list(interventions)} to labels "
                         f"{list(sets)}")
    if judge is None:
        ids = token_ids(model.tokenizer, refusal_tokens)

        def refused(texts, ivs) -> list[bool]:
            return (refusal_score(answer_logits(model, texts, *ivs, batch_size=batch_size), ids) > 0).tolist()
        how = {"refusal_tokens": list(refusal_tokens)}
    else:
        def refused(texts, ivs) -> list[bool]:
            replies = generate(model, texts, *ivs, max_new_tokens=max_new_tokens, batch_size=batch_size)
            return [bool(judge(r)) for r in replies]
        how = {"judge": f"{judge.__module__}.{judge.__qualname__}", "max_new_tokens": max_new_tokens}
    rates = {name: {label: sum(refused(sets[label], interventions[name])) / len(sets[label]) for label in labels}
             for name, labels in measure.items()}
    if as_is is not None:
        if set(as_is) != set(sets) or any(len(as_is[k]) != len(sets[k]) for k in sets):
            raise ValueError(f"as_is needs one verdict per prompt of {list(sets)} "
                             f"({[len(v) for v in sets.values()]}), got {({k: len(v) for k, v in as_is.items()})}")
        rates["none"] = {label: sum(map(bool, as_is[label])) / len(sets[label]) for label in sets}
        how["as_is"] = "given"
    site = f"layer {direction.layer}, position {direction.position}" + (
        f" of {direction.source}" if direction.source else "")
    return RefusalEffects(rates, model_name(model), site, Provenance.of(
        [model], sets["harmful"] + sets["harmless"], direction=site, scale=scale, **how,
        n_harmful=len(sets["harmful"])), counts={label: len(texts) for label, texts in sets.items()})


def candidate_cosines(base_candidates: Tensor, aligned_candidates: Tensor) -> Float[Tensor, "pos layer"]:
    """Cosine between two models' candidate directions at each position and layer (NaN where one is zero)."""
    if base_candidates.shape != aligned_candidates.shape:
        raise ValueError(f"candidate shapes differ: {list(base_candidates.shape)} vs {list(aligned_candidates.shape)}")
    norms = base_candidates.norm(dim=-1) * aligned_candidates.norm(dim=-1)
    dots = (base_candidates * aligned_candidates).sum(-1)
    return torch.where(norms > 0, dots / norms.clamp(min=1e-30), torch.nan)
