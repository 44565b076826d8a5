"""Harmfulness and refusal as two directions, in both models of a pair: why a wrapper gets a harmful request through,
and why a harmless request that mentions a harmful word is refused.

Zhao et al. (2025) read a **harmfulness** direction at the end of the instruction (the difference in means,
harmful minus harmless, at the request's last token) apart from the **refusal** direction at the tokens after it
(Arditi et al. 2024). Here both are differences in means of one model's ``resid_pre`` at one layer
(:func:`two_directions`); every prompt of every split is projected on both, in both models (:func:`project`), in
units of the plain requests (-1 the harmless mean, +1 the harmful mean, in each model), and:

* each **jailbreak** prompt is *resisted* (the model refuses it: its reply judged a refusal, or without replies its
  refusal score past 0), or it got through, by *suppression* (harmfulness still on the harmful side) or *disguise*
  (harmfulness lowered past the midpoint); the class comes from behaviour, never from the refusal projection alone;
* each **bait** prompt the aligned model refuses is refused with harmfulness on the harmful side (*harmfulness
  fires*) or without it (*refusal alone*);
* causally (:func:`patch_harmfulness`): the harmfulness projection of one set of prompts, set to the mean of another
  at the last instruction token (:class:`~interp.interventions.SetProjection`), and the refusal score read.

Rows are told apart by a ``split`` column: ``"jailbreak"`` and ``"bait"`` rows are wrapped requests and bait, every
other row is plain (its ``label`` says harmful or harmless).

>>> two = two_directions(model, harmful, harmless, layer=1)
>>> two.harmfulness.shape, two.cosine.shape  # [d_model], [layer]
(torch.Size([32]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_activations
from interp.checks import check_layer
from interp.data import PromptSet
from interp.directions import candidate_directions, suffix_length
from interp.interventions import SetProjection
from interp.metrics import refusal_score, refusal_scores, token_ids, unembed
from interp.prompts import prompt_format_of
from interp.provenance import Provenance, model_name

JAILBREAK, BAIT = "jailbreak", "bait"
SPECIAL_SPLITS = (JAILBREAK, BAIT)
JAILBREAK_CLASSES = ("resisted", "suppression", "disguise")
BAIT_CLASSES = ("harmfulness fires", "refusal alone")


def last_instruction_position(tokenizer, prompt_format: str = "chat") -> int:
    """The negative position of the request's last token under the prompt format (just before the tokens the
    format puts after the user's text)."""
    return -1 - suffix_length(tokenizer, prompt_format)


def splits_of(prompts: PromptSet) -> tuple:
    """Each row's split: the ``split`` column, or the label where there is none."""
    return prompts.column("split") if "split" in prompts.extra else tuple(prompts.labels)


def plain_rows(prompts: PromptSet, label: str) -> list[int]:
    """The indices of the plain rows of one label (neither jailbreak nor bait), in order."""
    return [i for i, (lab, s) in enumerate(zip(prompts.labels, splits_of(prompts), strict=True))
            if lab == label and s not in SPECIAL_SPLITS]


def plain(prompts: PromptSet, label: str) -> PromptSet:
    """The plain rows of one label: neither jailbreak nor bait (there must be some)."""
    rows = plain_rows(prompts, label)
    if not rows:
        raise ValueError(f"the prompts have no plain {label} rows (rows whose split is neither {JAILBREAK!r} nor "
                         f"{BAIT!r})")
    return prompts.select(rows)


def check_splits(prompts: PromptSet, source: str = "the prompts") -> None:
    """Jailbreak rows need plain harmful rows to be compared with, bait rows plain harmless ones."""
    splits = set(splits_of(prompts))
    for special, label in ((JAILBREAK, "harmful"), (BAIT, "harmless")):
        if special in splits and not plain_rows(prompts, label):
            raise ValueError(f"{source} has {special} rows but no plain {label} rows to contrast them with; add "
                             f"{label} requests without a wrapper (rows whose split is not {special!r} or {BAIT!r})")


@dataclass(frozen=True, eq=False)
class TwoDirections:
    """The harmfulness and refusal directions of one model at one layer (differences in means, model units)."""

    layer: int
    harm_position: int
    refusal_position: int
    harmfulness: Float[Tensor, " d_model"]
    refusal: Float[Tensor, " d_model"]
    cosine: Float[Tensor, " layer"]
    """Cosine between the two differences in means at every layer (each at its own position)."""
    source: str
    provenance: Provenance

    def plot(self, static: bool = False, title: str = "Harmfulness vs refusal direction, per layer"):
        from interp import plotting

        draw = plotting.layer_curves_static if static else plotting.layer_curves
        return draw({self.source: self.cosine[None]}, ylabel="cosine", band=None, title=title)


def two_directions(model, harmful: PromptSet | Sequence[str], harmless: PromptSet | Sequence[str], *, layer: int,
                   refusal_position: int = -1, batch_size: int = 32) -> TwoDirections:
    """Harmfulness (at the request's last token) and refusal (at ``refusal_position``, a post-instruction token)
    differences in means of ``model``, harmful minus harmless, at ``layer``; their cosine at every layer."""
    check_layer(model, layer)
    harm_position = last_instruction_position(model.tokenizer, prompt_format_of(model))
    means = candidate_directions(model, harmful, harmless, positions=[harm_position, refusal_position],
                                 batch_size=batch_size)  # [2, layer, d_model]
    cosine = torch.nn.functional.cosine_similarity(means[0], means[1], dim=-1)
    provenance = Provenance.of([model], list(getattr(harmful, "prompts", harmful)) +
                               list(getattr(harmless, "prompts", harmless)), layer=layer,
                               harm_position=harm_position, refusal_position=refusal_position)
    return TwoDirections(layer, harm_position, refusal_position, means[0, layer], means[1, layer], cosine,
                         model_name(model), provenance)


def _units(x: Tensor, harmful: Tensor, harmless: Tensor) -> Tensor:
    """Projections rescaled so the plain harmless mean is -1 and the plain harmful mean +1."""
    mid, half = (harmful.mean() + harmless.mean()) / 2, (harmful.mean() - harmless.mean()) / 2
    return (x - mid) / half


@dataclass(frozen=True, eq=False)
class Projections:
    """Every prompt's projection on both directions in both models, in units of the plain requests, and its refusal
    score (log-odds at the answer position). ``table``: one row per (model, prompt); ``harmfulness`` and ``refusal``
    in those units, ``harmfulness_raw`` and ``refusal_raw`` the plain projections on the unit directions (the
    residual stream's own scale, which the units hide)."""

    table: object
    directions: TwoDirections
    provenance: Provenance
    judged: bool = False
    """Whether ``refused`` is a verdict on replies (given to :func:`project`) rather than ``refusal_score > 0``."""

    def by_split(self):
        """Mean projections and the shares on the harmful side (past 0), per model and split (``refused``: of the
        rows with a verdict)."""
        t = self.table.assign(harmful_side=self.table.harmfulness > 0, refusal_side=self.table.refusal > 0)
        raw = [c for c in ("harmfulness_raw", "refusal_raw") if c in t]
        return t.groupby(["model", "split"], sort=False)[
            ["harmfulness", "refusal", *raw, "harmful_side", "refusal_side", "refused"]].mean()

    def classify(self, model: str = "aligned"):
        """Jailbreak rows as resisted / suppression / disguise; bait rows ``model`` refuses by which direction fires.

        A jailbreak is *resisted* when the model refuses it (``refused``: the judged reply, or without replies the
        refusal score past 0: its likeliest first token is a refusal), whatever its refusal projection; otherwise its
        harmfulness projection tells suppression (past 0) from disguise. A DataFrame with a ``class`` column, one row
        per jailbreak or refused bait prompt."""
        t = self.table[self.table.model == model]
        held = t.refused == 1
        jail = t[t.split == JAILBREAK].assign(**{"class": lambda r: [
            "resisted" if kept else "suppression" if harm > 0 else "disguise"
            for harm, kept in zip(r.harmfulness, held.loc[r.index], strict=True)]})
        bait = t[(t.split == BAIT) & (t.refused == 1)].assign(**{"class": lambda r: [
            "harmfulness fires" if harm > 0 else "refusal alone" for harm in r.harmfulness]})
        import pandas as pd

        return pd.concat([jail, bait])

    def counts(self, model: str = "aligned"):
        """How many prompts of each class (:meth:`classify`), per split."""
        classes = self.classify(model)
        return classes.groupby(["split", "class"]).size().rename("prompts")

    def against_plain(self, model: str = "aligned", plain: str = "harmful_held_out"):
        """Each wrapped request's verdict beside its plain request's (rows of split ``plain`` with the same
        ``request``), judged rows only: a DataFrame with ``request``, ``template``, ``plain`` and ``wrapped`` (bool:
        refused). A template *works* where the plain request is refused and the wrapped one is not."""
        t = self.table[self.table.model == model]
        wrapped = t[t.split == JAILBREAK][["request", "template", "refused"]]
        alone = t[t.split == plain][["request", "refused"]]
        both = wrapped.merge(alone, on="request", suffixes=("_wrapped", "_plain")).dropna()
        return both.assign(plain=both.refused_plain == 1, wrapped=both.refused_wrapped == 1)[
            ["request", "template", "plain", "wrapped"]]

    def plot(self, model: str = "aligned", static: bool = False, title: str = ""):
        """Harmfulness against refusal projection, one point per prompt of ``model``, one series per split."""
        from interp import plotting
        from interp.plotting.theme import pretty

        t = self.table[self.table.model == model]
        splits = list(dict.fromkeys(t.split))
        draw = plotting.scatter_static if static else plotting.scatter
        return draw({pretty(s): t[t.split == s].harmfulness.to_numpy() for s in splits},
                    {pretty(s): t[t.split == s].refusal.to_numpy() for s in splits}, marks=[0.0],
                    title=title or f"Prompts on the two directions ({model})",
                    xlabel="harmfulness projection (−1 harmless, +1 harmful)",
                    ylabel="refusal projection (−1 harmless, +1 harmful)")


@torch.no_grad()
def project(pair, two: TwoDirections, prompts: PromptSet, refusal_tokens: Sequence[str], *,
            refused: Mapping[str, Sequence[bool | None]] | None = None, batch_size: int = 32) -> Projections:
    """Every prompt of ``prompts`` on ``two`` (the aligned model's directions, say) in both models of ``pair``.

    ``refused``: each model's verdict on each prompt's reply (``{"base": [...], "aligned": [...]}``, None where a
    prompt was not judged); without it a prompt counts as refused when its refusal score is past 0."""
    import pandas as pd

    check_splits(prompts)
    splits = splits_of(prompts)
    is_plain = torch.tensor([s not in SPECIAL_SPLITS for s in splits])
    harmful = torch.tensor([label == "harmful" for label in prompts.labels]) & is_plain
    harmless = torch.tensor([label == "harmless" for label in prompts.labels]) & is_plain
    if not harmful.any() or not harmless.any():
        raise ValueError("the prompts need plain harmful and plain harmless rows to set the units")
    if refused is not None:
        names = [name for name, _ in pair]
        wrong = {m: len(v) for m, v in refused.items() if len(v) != len(prompts)}
        if set(refused) != set(names) or wrong:
            raise ValueError(f"refused needs one verdict per prompt ({len(prompts)}) for each of {names}; got "
                             f"{ {m: len(v) for m, v in refused.items()} }")
    templates = prompts.column("template") if "template" in prompts.extra else [""] * len(prompts)
    requests = prompts.column("request") if "request" in prompts.extra else list(prompts.prompts)
    hook = f"blocks.{two.layer}.hook_resid_pre"
    units = {"harmfulness": two.harmfulness / two.harmfulness.norm(), "refusal": two.refusal / two.refusal.norm()}
    rows = []
    for name, model in pair:
        # one pass: the two directions' positions at their layer, and the stream leaving the last block at the
        # answer position, which the final norm and unembedding turn into the refusal score
        last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        acts = collect_activations(model, prompts, [hook, last],
                                   positions=[two.harm_position, two.refusal_position, -1], batch_size=batch_size,
                                   progress=False)
        raw = {"harmfulness": acts[hook][:, 0].float() @ units["harmfulness"],
               "refusal": acts[hook][:, 1].float() @ units["refusal"]}
        values = {k: _units(v, v[harmful], v[harmless]) for k, v in raw.items()}
        logits = unembed(model, acts[last][:, 2], batch_size)
        scores = refusal_score(logits, token_ids(model.tokenizer, refusal_tokens))
        verdicts = [s > 0 for s in scores.tolist()] if refused is None else refused[name]
        rows += [{"model": name, "prompt": i, "split": splits[i], "label": prompts.labels[i],
                  "template": templates[i], "request": requests[i], "harmfulness": values["harmfulness"][i].item(),
                  "refusal": values["refusal"][i].item(), "harmfulness_raw": raw["harmfulness"][i].item(),
                  "refusal_raw": raw["refusal"][i].item(), "refusal_score": scores[i].item(),
                  "refused": float("nan") if verdicts[i] is None else float(verdicts[i])} for i in range(len(prompts))]
    provenance = Provenance.of_pair(pair, prompts, layer=two.layer, harm_position=two.harm_position,
                                    refusal_position=two.refusal_position, refusal_tokens=list(refusal_tokens),
                                    judged=refused is not None)
    return Projections(pd.DataFrame(rows), two, provenance, judged=refused is not None)


@torch.no_grad()
def patch_harmfulness(model, two: TwoDirections, source: PromptSet | Sequence[str], target: PromptSet | Sequence[str],
                      refusal_tokens: Sequence[str], *, every_layer: bool = False,
                      batch_size: int = 32) -> dict[str, float]:
    """Set every ``target`` prompt's harmfulness projection at the last instruction token to the mean of the
    ``source`` prompts' there, at ``two``'s layer (``every_layer``: at every layer, each to the source's mean at that
    layer), and read the refusal score. Returns means over the targets: ``{"before", "after", "source_value",
    "target_value", "refused_before", "refused_after"}`` (values at ``two``'s layer; refused: score > 0).
    Several patches over the same prompt sets: :func:`harmfulness_patches`."""
    return harmfulness_patches(model, two, {"source": source, "target": target}, [("source", "target")],
                               refusal_tokens, scopes=(every_layer,), batch_size=batch_size)["source", "target",
                                                                                           every_layer]


def harmfulness_patches(
    model, two: TwoDirections, sets: Mapping[str, PromptSet | Sequence[str]], moves: Sequence[tuple[str, str]],
    refusal_tokens: Sequence[str], *, scopes: Sequence[bool] = (False,), batch_size: int = 32,
) -> dict[tuple[str, str, bool], dict[str, float]]:
    """:func:`patch_harmfulness` for each ``(source, target)`` of ``moves`` (names of ``sets``) and each
    ``every_layer`` of ``scopes``: ``{(source, target, every_layer): result}``. Each set's projections are
    collected once, and each target's unpatched refusal scores read once, however many patches use them."""
    unknown = sorted({name for move in moves for name in move} - set(sets))
    if unknown:
        raise ValueError(f"moves name prompt sets {unknown} that are not among {sorted(sets)}")
    layers = list(range(model.cfg.n_layers)) if any(scopes) else [two.layer]
    hooks = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    unit = two.harmfulness / two.harmfulness.norm()

    def mean_projections(prompts) -> dict[int, float]:
        acts = collect_activations(model, prompts, hooks, positions=two.harm_position, batch_size=batch_size,
                                   progress=False)
        return {layer: (acts[hook].float() @ unit).mean().item() for layer, hook in zip(layers, hooks, strict=True)}

    values = {name: mean_projections(sets[name]) for name in dict.fromkeys(name for move in moves for name in move)}
    before = {target: refusal_scores(model, sets[target], refusal_tokens, batch_size=batch_size)
              for target in dict.fromkeys(target for _, target in moves)}
    out = {}
    for source, target in moves:
        for every in scopes:
            edits = [SetProjection(unit, values[source][layer], layer, positions=two.harm_position)
                     for layer in (layers if every else [two.layer])]
            after = refusal_scores(model, sets[target], refusal_tokens, *edits, batch_size=batch_size)
            out[source, target, every] = {
                "before": before[target].mean().item(), "after": after.mean().item(),
                "source_value": values[source][two.layer], "target_value": values[target][two.layer],
                "refused_before": (before[target] > 0).float().mean().item(),
                "refused_after": (after > 0).float().mean().item()}
    return out
