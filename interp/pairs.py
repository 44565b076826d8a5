"""One name for every pair a notebook or the report studies, and the prompts each kind answers a question with.

* ``organisms:dpo`` (``sft``, ``rl``): the toy world's base against one aligned organism (:mod:`interp.organisms`);
* ``real:smollm2-safety`` (``real:smollm2-safety:sft``): a real pretrained base against the stage the project's
  recipe aligned from it (:mod:`interp.realpairs`; DPO unless a stage is named);
* ``real:<folder>`` (``real:<folder>:sft``): a real pair already built in that folder, by any recipe
  (``benchmarks/real.py --set ...`` builds variants; the folder's ``card.json`` names its base and recipe).

A notebook names its pair in its first code cell, ``PAIR = pairs.chosen("organisms:dpo")``: ``$INTERP_PAIR``
(which ``interp figures --pair`` sets) wins over the default. :func:`figures` is where its figures go
(``figures/real/<pair>/`` for a real pair) and :func:`judge` is how its replies are read as refusals.

:func:`prompts` maps the organisms' split names, which the notebooks use, to each kind's data: for a real pair, the
harmful and harmless splits are the field's prompt sets (train: the train split of the sets its recipe drew its
training prompts from; held out: HarmBench + StrongREJECT test and Alpaca test), ``bait`` (harmless requests
that look harmful) is the over-refusal set, and ``jailbreak`` is the held-out harmful requests in real jailbreak
templates (:data:`JAILBREAK_TEMPLATES`).

>>> parse("real:smollm2-safety")
Spec(kind='real', name='smollm2-safety', stage='dpo')
>>> parse("organisms:sft").label
'organisms:sft'
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KINDS = ("organisms", "real")
HELD_OUT = {"harmful_held_out": "harmful_test", "harmless_held_out": "harmless_test", "bait": "edgy"}
"""The organisms' held-out splits as the real pairs' evaluation splits (:data:`interp.realpairs.evaluate.EVAL_SPLITS`,
which their targets are measured on)."""
_SPLIT_OF = {real: split for split, real in HELD_OUT.items()}
"""A real pair's evaluation split by the organisms' name for it (its card and replies are keyed by the former)."""
VALIDATION = {"harmful_validation": ("harmbench", "validation"), "harmless_validation": ("alpaca", "validation")}
PAIR_ENV = "INTERP_PAIR"
PROMPTS_ENV = "INTERP_PROMPTS_PER_SET"
JAILBREAK = "jailbreak"
JAILBREAK_TEMPLATES = ("in_the_wild", 1500)
"""A real pair's ``jailbreak`` split: its held-out harmful requests (the same draw as ``harmful_held_out``), each
in one of Shen et al.'s in-the-wild templates (PyRIT's copy) of at most 1,500 characters (the shorter 40%: a
wrapped request stays a few hundred tokens, so its replies fit a CPU's budget)."""


@dataclass(frozen=True)
class Spec:
    kind: str
    name: str
    """The real pair's name (or the folder it is built in); for the organisms, the aligned variant."""
    stage: str

    @property
    def folder(self) -> Path | None:
        """The folder of a real pair given by where it is built (None for one given by name)."""
        return Path(self.name) if self.kind == "real" and _is_folder(self.name) else None

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
        if _is_folder(name):
            name = str(Path(name).expanduser().resolve())  # the same folder from a notebook's own working directory
            if not (Path(name) / "card.json").is_file():
                raise ValueError(f"{spec!r}: {name} holds no built real pair (no card.json)")
        elif name not in realpairs.PAIRS:
            raise ValueError(f"no real pair {name!r} in {spec!r}; the real pairs are {sorted(realpairs.PAIRS)}")
        if stage not in realpairs.STAGES:
            raise ValueError(f"{spec!r}: a real pair's aligned stage is one of {realpairs.STAGES}")
        return Spec("real", name, stage)
    raise ValueError(f"{spec!r} names no pair: write organisms:<{'|'.join(ALIGNED_VARIANTS)}> or "
                     f"real:<{'|'.join(sorted(realpairs.PAIRS))}>[:sft]")


def _is_folder(name: str) -> bool:
    return "/" in name or name.startswith((".", "~"))


def is_spec(text: str) -> bool:
    return text.partition(":")[0] in KINDS and ":" in text


def family(spec: str, stages) -> dict[str, str]:
    """The pair's siblings by name: for each aligned stage (the organisms' ``sft``, ``dpo``, ``rl``; a real pair's
    ``sft``, ``dpo``), the pair of that stage against the same base.

    >>> family("real:smollm2-safety", ("sft", "dpo"))
    {'sft': 'real:smollm2-safety:sft', 'dpo': 'real:smollm2-safety'}
    """
    s = parse(spec)
    return {stage: parse(f"{s.kind}:{stage}" if s.kind == "organisms" else f"real:{s.name}:{stage}").label
            for stage in stages}


def chosen(default: str) -> str:
    """The pair a notebook studies: ``$INTERP_PAIR`` when set, else ``default``; checked, as its label."""
    return parse(os.environ.get(PAIR_ENV) or default).label


def is_real(spec: str) -> bool:
    """Whether ``spec`` names a real pair (not the organisms)."""
    return parse(spec).kind == "real"


def prompts_per_set(spec: str, default: int) -> int | None:
    """How many prompts of each split a notebook draws on this pair: None (every one) on the organisms; ``default``
    on a real pair, or ``$INTERP_PROMPTS_PER_SET`` where it is set (the real tier's tests draw a few)."""
    if not is_real(spec):
        return None
    return int(os.environ.get(PROMPTS_ENV) or default)


def figures(spec: str) -> Path:
    """Where a notebook on this pair saves its figures: the figures folder for the organisms, ``real/<pair>/`` in it
    for a real pair by name, ``real/<folder>/`` for one given by where it is built (a recipe variant), so no pair's
    figures overwrite another's."""
    from interp.plotting import figures_dir

    s = parse(spec)
    if s.kind != "real":
        return figures_dir()
    return figures_dir() / "real" / (s.name if s.folder is None else s.folder.name)


def judge(spec: str) -> Callable[[str], bool]:
    """Whether a reply is a refusal, read the way this kind's replies are written: the organisms' refusal openers, or
    the real-text judge (Arditi et al.'s substrings and the project's, :mod:`interp.realpairs.judge`)."""
    if parse(spec).kind == "organisms":
        from interp.metrics import is_refusal

        return is_refusal
    from interp.realpairs.judge import is_refusal

    return is_refusal


def refusal_tokens(spec: str, pair, harmful) -> list[str]:
    """The first reply tokens whose log-odds measure refusal on this pair: the organisms' (``sorry``); on a real pair
    those its aligned model prefers over the base on ``harmful`` (:func:`interp.metrics.derive_refusal_tokens`), or,
    where it prefers none (a barely trained pair), the first tokens of Arditi et al.'s refusal substrings, said so."""
    if parse(spec).kind == "organisms":
        from interp.organisms import REFUSAL_TOKENS

        return list(REFUSAL_TOKENS)
    from interp.metrics import NoRefusalTokens, derive_refusal_tokens
    from interp.realpairs.judge import ARDITI_SUBSTRINGS

    try:
        return list(derive_refusal_tokens(pair, harmful))
    except NoRefusalTokens as e:
        first = [pair.tokenizer(s, add_special_tokens=False).input_ids[0] for s in ARDITI_SUBSTRINGS]
        tokens = pair.tokenizer.convert_ids_to_tokens(list(dict.fromkeys(first)))
        print(f"interp: {e}; reading refusal from the first tokens of Arditi et al.'s refusal substrings: {tokens}")
        return tokens


def refusal_direction(spec: str, pair, harmful, harmless, *, n: int | None = None):
    """The refusal direction of ``pair``'s aligned model as notebook 05 selects it, from the difference in means of the
    ``harmful`` and ``harmless`` train prompts (:func:`interp.directions.find_refusal_direction`, kept on disk: the
    notebooks that use the direction after 05, 07 and 09, read its search). On the organisms every candidate is
    scored on a quarter of the train prompts held back, refusal read from ``sorry``. On a real pair the candidates are
    ranked, then scored on Arditi et al.'s validation sizes (32 HarmBench and 32 Alpaca validation prompts, at most
    ``n`` of each), refusal read from the tokens the pair prefers on ``n`` harmful validation prompts
    (:func:`refusal_tokens`). Its refusal tokens are the direction's ``refusal_tokens``."""
    from interp import directions

    settings = dict(progress=False, remember=True)
    if parse(spec).kind == "organisms":
        tokens = refusal_tokens(spec, pair, harmful)  # ["sorry"], whatever the prompts
        return directions.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=tokens,
                                                 exhaustive=True, **settings)
    tokens = refusal_tokens(spec, pair, prompts(spec, "harmful_validation", n=n))
    most = directions.PAPER_VALIDATION if n is None else min(n, directions.PAPER_VALIDATION)
    harmful_val, harmless_val = (prompts(spec, f"{label}_validation", n=most) for label in ("harmful", "harmless"))
    return directions.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=tokens,
                                             harmful_val=harmful_val, harmless_val=harmless_val, **settings)


def goes_on_refusing(spec: str, openings, replies) -> list[bool]:
    """Whether each reply, which begins with the opening it was put in the model's mouth
    (``interventions.generate(..., prefill=openings, keep_prefill=True)``), refuses in what it wrote after it: on the
    organisms, a continuation that opens as a refusal or says ``sorry`` or ``can not help`` anywhere; on a real pair,
    a refusal substring that ends past the opening (:func:`interp.realpairs.judge.refuses_after`)."""
    openings = [openings] * len(replies) if isinstance(openings, str) else list(openings)
    if len(openings) != len(replies):
        raise ValueError(f"{len(openings)} openings for {len(replies)} replies: give one, or one per reply")
    if parse(spec).kind == "organisms":
        from interp.metrics import is_refusal

        return [is_refusal(r[len(o):].strip(), substrings=["can not help", "sorry"])
                for o, r in zip(openings, replies, strict=True)]
    from interp.realpairs.judge import refuses_after

    return [refuses_after(r, len(o)) for o, r in zip(openings, replies, strict=True)]


def card(spec: str) -> dict:
    """A real pair's build card: its base, recipe, timings, and the behaviour measured when it was built."""
    s = parse(spec)
    if s.kind != "real":
        raise ValueError(f"{spec} is not a real pair: the organisms' card is organisms.read_zoo_card()")
    return json.loads((_built(s) / "card.json").read_text())


def real_pair(spec: str):
    """The :class:`interp.realpairs.RealPair` a real pair was built as (by name, or by the name on a folder's card,
    with the recipe the card says it was built by): its base, recipe and the phrase that says what the base is
    (``about``)."""
    from dataclasses import replace

    from interp import realpairs
    from interp.realpairs.build import SafetyRecipe

    s = parse(spec)
    name = card(spec)["name"] if s.folder is not None else s.name
    if name not in realpairs.PAIRS:
        raise ValueError(f"{spec}: {name!r} is none of the real pairs {sorted(realpairs.PAIRS)}")
    if s.folder is None:
        return realpairs.PAIRS[name]
    return replace(realpairs.PAIRS[name], recipe=SafetyRecipe(**card(spec)["recipe"]))


def refusal_rates(spec: str) -> dict[str, dict[str, float]]:
    """``{model: {split: refusal rate}}`` for the base and every aligned stage of the pair's family, on the organisms'
    split names: the organisms measured now on their saved checkpoints (:func:`interp.organisms.refusal_rates`); a
    real pair as its build measured it on the held-out splits (plain Hugging Face ``generate``, 32 greedy tokens, the
    real-text judge; :func:`build_replies` holds the replies)."""
    s = parse(spec)
    if s.kind == "organisms":
        from interp import organisms

        return organisms.refusal_rates(judge="generation")
    measured = card(spec).get("behaviour")
    if not measured:
        raise ValueError(f"{spec}: its card holds no measured behaviour (the pair was built without measuring it)")
    return {stage: {_SPLIT_OF[split]: m["refusal"] for split, m in by_split.items()} for stage, by_split in
            measured.items()}


def has_build_replies(spec: str) -> bool:
    """Whether a real pair's build kept its replies (``behaviour.json``; a build measured by the recipe does, the test
    suite's miniature pair does not)."""
    s = parse(spec)
    return s.kind == "real" and (_built(s) / "behaviour.json").is_file()


def build_replies(spec: str) -> dict[str, dict[str, list[dict]]]:
    """A real pair's replies as its build measured them: ``{stage: {split: [{prompt, category, reply, refused}]}}``
    on the organisms' split names (``behaviour.json`` beside its card)."""
    s = parse(spec)
    if s.kind != "real":
        raise ValueError(f"{spec} is not a real pair: the organisms' replies are measured now, not stored")
    replies = json.loads((_built(s) / "behaviour.json").read_text())
    return {stage: {_SPLIT_OF[split]: rows for split, rows in by_split.items()} for stage, by_split in replies.items()}


def dictionary_texts(spec: str, tokenizer) -> list[str]:
    """Text to train a sparse dictionary (:mod:`interp.dictionary`) on the pair, its special tokens written out
    (``prompt_format="raw"``). The organisms': :func:`interp.organisms.dictionary_texts` (pretraining-like documents
    and aligned chats). A real pair's: the chats its build trained on, rendered whole by ``tokenizer``'s chat
    template (:func:`interp.prompts.format_conversations`): every SFT chat (harmful requests refused in the model's
    own style, Alpaca requests answered) and both replies of every DPO pair (the one preferred and the one it was
    preferred over). No web text ships offline, so where Minder et al. (2025) mix web text with chat data, a real
    pair's dictionary reads chat data alone."""
    s = parse(spec)
    if s.kind == "organisms":
        from interp import organisms

        return organisms.dictionary_texts()
    from interp.prompts import format_conversations

    data = json.loads((_built(s) / "data.json").read_text())
    chats = [(e["prompt"][0]["content"], e["completion"][0]["content"]) for e in data["sft"]]
    chats += [(e["prompt"][0]["content"], e[reply][0]["content"]) for e in data["dpo"] for reply in ("chosen",
                                                                                                   "rejected")]
    return format_conversations(tokenizer, [q for q, _ in chats], [a for _, a in chats])


def built_refused(spec: str, model: str, split: str, prompts) -> list[bool]:
    """The build's verdict on each of ``prompts`` for ``model`` (``"base"`` or a stage): whether its reply, generated
    and judged when the pair was built, refused. ``split`` is a held-out split by the organisms' name, and every
    prompt must be one of its prompts (as :func:`prompts` draws them)."""
    replies = build_replies(spec)
    if model not in replies:
        raise ValueError(f"{spec}: its build replied as {sorted(replies)}, not {model!r}")
    if split not in replies[model]:
        raise ValueError(f"{spec}: its build replied on {sorted(replies[model])}, not {split!r}")
    verdicts = {row["prompt"]: bool(row["refused"]) for row in replies[model][split]}
    texts = list(getattr(prompts, "prompts", prompts))
    missing = [t for t in texts if t not in verdicts]
    if missing:
        raise ValueError(f"{len(missing)} of {len(texts)} prompts are not in {spec}'s {split} replies, e.g. "
                         f"{missing[0][:60]!r}")
    return [verdicts[t] for t in texts]


def refused(spec: str, who: str, model, prompts, *, generate: Sequence[str] = (JAILBREAK,),
            max_new_tokens: int = 32, batch_size: int = 16) -> list[bool | None]:
    """Each row's verdict for ``who`` (``"base"`` or a stage, ``model`` being that model) on a real pair, by the rows'
    ``split`` column: the build's (:func:`built_refused`) on the held-out splits it replied on; for the splits in
    ``generate``, ``max_new_tokens`` greedy tokens generated now (:func:`interp.interventions.generate`, the build's
    own settings) and judged (:func:`judge`); None (not judged) on every other split."""
    from interp.interventions import generate as replies_to

    splits = prompts.column("split")
    verdicts: list[bool | None] = [None] * len(prompts)
    for split in dict.fromkeys(splits):
        rows = [i for i, s in enumerate(splits) if s == split]
        part = prompts.select(rows)
        if split in generate:
            said = [judge(spec)(r) for r in replies_to(model, part, max_new_tokens=max_new_tokens,
                                                       batch_size=batch_size)]
        elif split in HELD_OUT:
            said = built_refused(spec, who, split, part)
        else:
            continue
        for i, v in zip(rows, said, strict=True):
            verdicts[i] = v
    return verdicts


def _built(s: Spec) -> Path:
    from interp import realpairs

    return s.folder if s.folder is not None else realpairs.build(s.name)


def checkpoints(spec: str) -> tuple[Path, Path]:
    """The (base, aligned) checkpoint directories, built first (announced) when they are not."""
    s = parse(spec)
    if s.kind == "organisms":
        from interp import organisms
        from interp.organisms.zoo import checkpoint_dir

        zoo = organisms._built(None, True)
        return checkpoint_dir("base", zoo), checkpoint_dir(s.stage, zoo)
    if s.folder is not None:
        return Path(card(spec)["base"]), s.folder / s.stage
    from interp import realpairs

    return realpairs.checkpoints(s.name, s.stage)


def load(spec: str, **kw):
    """The pair as a :class:`~interp.models.ModelPair` (keyword arguments go to :func:`interp.models.load_pair`;
    ``matmul`` defaults to :func:`matmul`'s)."""
    from interp.models import load_pair

    return load_pair(*checkpoints(spec), **{"matmul": matmul(spec), **kw})


def matmul(spec: str) -> str | None:
    """The linear products' dtype a pair is studied with: the organisms float32 (exact; bfloat16 would not speed up
    their 128-wide products), a real pair ``"auto"``: bfloat16 where the device multiplies it natively (2-2.5x faster
    on this project's CPU, :mod:`interp.matmul`), unless ``$INTERP_MATMUL`` says otherwise."""
    return "auto" if is_real(spec) else None


def load_family(spec: str, stages, **kw) -> dict:
    """The pair's :func:`family` loaded, ``{stage: ModelPair}``, sharing one base model
    (:func:`interp.models.load_family`; keyword arguments go to it).

    >>> family = load_family("organisms:dpo", ("sft", "dpo"), device="cpu")
    >>> family["sft"].base is family["dpo"].base
    True
    """
    from interp.models import load_family as load

    specs = family(spec, stages)
    paths = {stage: checkpoints(s) for stage, s in specs.items()}
    bases = {base for base, _ in paths.values()}
    if len(bases) != 1:
        raise ValueError(f"the stages of {spec} have different bases: {sorted(map(str, bases))}")
    aligned = {stage: aligned for stage, (_, aligned) in paths.items()}
    return load(bases.pop(), aligned, **{"matmul": matmul(spec), **kw})


def prompts(spec: str, splits: str | list[str], n: int | None = None):
    """The prompts of the organisms' ``splits`` in this pair's data, as one :class:`~interp.data.PromptSet` with
    ``split`` and ``held_out`` columns (held out: every split but the two train ones); with ``n``, at most ``n`` of
    each split, drawn at random (:meth:`~interp.data.PromptSet.sample`)."""
    s = parse(spec)
    splits = [splits] if isinstance(splits, str) else list(splits)
    from interp.data import PromptSet

    if s.kind == "organisms":
        from interp import organisms

        parts = [organisms.prompt_set(name).sample(n) for name in splits]
        return PromptSet.concat(parts) if len(parts) > 1 else parts[0]
    from interp import promptsets, realpairs
    from interp.realpairs.build import SafetyRecipe
    from interp.realpairs.evaluate import EVAL_SPLITS

    recipe = realpairs.PAIRS[s.name].recipe if s.folder is None else SafetyRecipe(**card(spec)["recipe"])
    evaluated = {e.name: (e.sets, e.split) for e in EVAL_SPLITS}
    known = {**{split: evaluated[e] for split, e in HELD_OUT.items()}, **VALIDATION,
             "harmful_train": (recipe.harmful_sets, "train"), "harmless_train": (recipe.harmless_sets, "train")}
    unknown = [x for x in splits if x not in known and x != JAILBREAK]
    if unknown:
        raise ValueError(f"a real pair has no split {unknown}; its splits are {sorted([*known, JAILBREAK])}")
    parts = []
    for name in splits:
        sets, split = known["harmful_held_out" if name == JAILBREAK else name]
        part = promptsets.load(sets, split=split).sample(n)
        if name == JAILBREAK:  # the held-out harmful requests drawn, each in a template: row i wraps request i
            part = promptsets.wrap(part, promptsets.jailbreak_templates(*JAILBREAK_TEMPLATES))
        columns = {**part.extra, "split": [name] * len(part), "held_out": [not name.endswith("_train")] * len(part)}
        parts.append(PromptSet(part.prompts, part.labels, columns, name=name))
    if JAILBREAK in splits:  # plain rows: no template, their own text the request
        parts = [p if "template" in p.extra else
                 PromptSet(p.prompts, p.labels, {**p.extra, "template": [""] * len(p), "request": list(p.prompts)},
                           name=p.name) for p in parts]
    return PromptSet.concat(parts) if len(parts) > 1 else parts[0]
