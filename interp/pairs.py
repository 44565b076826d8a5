"""One name for every pair a notebook or the report studies, and the prompts each kind answers a question with.

* ``organisms:dpo`` (``sft``, ``rl``): the toy world's base against one aligned organism (:mod:`interp.organisms`);
* ``real:smollm2-safety`` (``real:smollm2-safety:sft``): a real pretrained base against the stage the project's
  recipe aligned from it (:mod:`interp.realpairs`; DPO unless a stage is named).

:func:`prompts` maps the organisms' split names, which the notebooks use, to each kind's data: for a real pair, the
harmful and harmless splits are the field's prompt sets (train: the train split of the sets its recipe drew its
training prompts from; held out: HarmBench + StrongREJECT test and Alpaca test), and ``bait`` (harmless requests
that look harmful) is the over-refusal set.

>>> parse("real:smollm2-safety")
Spec(kind='real', name='smollm2-safety', stage='dpo')
>>> parse("organisms:sft").label
'organisms:sft'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KINDS = ("organisms", "real")
HELD_OUT = {"harmful_held_out": "harmful_test", "harmless_held_out": "harmless_test", "bait": "edgy"}
"""The organisms' held-out splits as the real pairs' evaluation splits (:data:`interp.realpairs.evaluate.EVAL_SPLITS`,
which their targets are measured on)."""
VALIDATION = {"harmful_validation": ("harmbench", "validation"), "harmless_validation": ("alpaca", "validation")}


@dataclass(frozen=True)
class Spec:
    kind: str
    name: str
    """The real pair's name; for the organisms, the aligned variant."""
    stage: str

    @property
    def label(self) -> str:
        if self.kind == "organisms":
            return f"organisms:{self.stage}"
        return f"real:{self.name}" + ("" if self.stage == "dpo" else f":{self.stage}")


def parse(spec: str) -> Spec:
    """``organisms:dpo``, ``real:smollm2-safety`` or ``real:smollm2-safety:sft``; anything else is one clear line."""
    from interp import realpairs
    from interp.organisms import ALIGNED_VARIANTS

    kind, _, rest = spec.partition(":")
    if kind == "organisms" and rest in ALIGNED_VARIANTS:
        return Spec("organisms", rest, rest)
    if kind == "real":
        name, _, stage = rest.partition(":")
        stage = stage or "dpo"
        if name not in realpairs.PAIRS:
            raise ValueError(f"no real pair {name!r} in {spec!r}; the real pairs are {sorted(realpairs.PAIRS)}")
        if stage not in realpairs.STAGES:
            raise ValueError(f"{spec!r}: a real pair's aligned stage is one of {realpairs.STAGES}")
        return Spec("real", name, stage)
    raise ValueError(f"{spec!r} names no pair: write organisms:<{'|'.join(ALIGNED_VARIANTS)}> or "
                     f"real:<{'|'.join(sorted(realpairs.PAIRS))}>[:sft]")


def is_spec(text: str) -> bool:
    return text.partition(":")[0] in KINDS and ":" in text


def checkpoints(spec: str) -> tuple[Path, Path]:
    """The (base, aligned) checkpoint directories, built first (announced) when they are not."""
    s = parse(spec)
    if s.kind == "organisms":
        from interp import organisms
        from interp.organisms.zoo import checkpoint_dir

        zoo = organisms._built(None, True)
        return checkpoint_dir("base", zoo), checkpoint_dir(s.stage, zoo)
    from interp import realpairs

    return realpairs.checkpoints(s.name, s.stage)


def load(spec: str, **kw):
    """The pair as a :class:`~interp.models.ModelPair` (keyword arguments go to :func:`interp.models.load_pair`)."""
    from interp.models import load_pair

    return load_pair(*checkpoints(spec), **kw)


def prompts(spec: str, splits: str | list[str]):
    """The prompts of the organisms' ``splits`` in this pair's data, as one :class:`~interp.data.PromptSet`."""
    s = parse(spec)
    splits = [splits] if isinstance(splits, str) else list(splits)
    if s.kind == "organisms":
        from interp import organisms

        return organisms.prompt_set(splits)
    from interp import promptsets, realpairs
    from interp.data import PromptSet
    from interp.realpairs.evaluate import EVAL_SPLITS

    recipe = realpairs.PAIRS[s.name].recipe
    evaluated = {e.name: (e.sets, e.split) for e in EVAL_SPLITS}
    known = {**{split: evaluated[e] for split, e in HELD_OUT.items()}, **VALIDATION,
             "harmful_train": (recipe.harmful_sets, "train"), "harmless_train": (recipe.harmless_sets, "train")}
    unknown = [x for x in splits if x not in known]
    if unknown:
        raise ValueError(f"a real pair has no split {unknown}; its splits are {sorted(known)}")
    parts = []
    for name in splits:
        sets, split = known[name]
        part = promptsets.load(sets, split=split)
        parts.append(PromptSet(part.prompts, part.labels, {**part.extra, "split": [name] * len(part)}, name=name))
    return PromptSet.concat(parts) if len(parts) > 1 else parts[0]
