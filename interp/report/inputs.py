"""What a report needs, checked before any model is loaded: the prompts and the output path.

These read files only, so a bad prompt file or a typo in the output path fails at once,
not after minutes of loading; :func:`interp.models.check_checkpoints` does the same for the pair.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from interp import promptsets
from interp.checks import unwritable
from interp.data import PromptSet
from interp.jailbreaks import SPECIAL_SPLITS, check_splits, splits_of
from interp.probes import concept_split

LABELS = ("harmful", "harmless")
MIN_PER_LABEL = 16
"""Per label: the direction search needs 8 to fit and some to validate, the probes 8 to test."""
PROBE_TEST_MIN = 8


def read_prompts(path: str | Path) -> PromptSet:
    """The report's prompts: a JSONL or CSV file, or the field's sets by name (``harmbench+alpaca``, their test
    split; ``harmbench+alpaca:validation`` for another, see :mod:`interp.promptsets`) when no such file exists.
    Labels ``harmful`` / ``harmless`` only, enough of each."""
    if not Path(path).exists() and promptsets.is_spec(str(path).partition(":")[0]):
        spec, _, split = str(path).partition(":")
        prompts, source = promptsets.load(spec, split=split or "test"), f"the prompt sets {str(path)!r}"
    else:
        prompts, source = PromptSet.from_file(path), f"prompt file {str(path)!r}"
    unknown = sorted(set(prompts.labels) - set(LABELS))
    if unknown:
        raise ValueError(f"{source} has labels {unknown}; a report needs only "
                         f"{' and '.join(LABELS)} (rename or drop those rows)")
    check_unique(prompts, source)
    check_prompts(prompts, source=source)
    return prompts


def check_unique(prompts: PromptSet, source: str = "the prompts") -> None:
    """No prompt twice: under both labels it has no label, and under one a copy can land on both sides of the probes'
    train/test split (so the test score reads prompts the probe was fitted on)."""
    rows: dict[str, list[int]] = {}
    for i, text in enumerate(prompts.prompts):
        rows.setdefault(text, []).append(i)
    repeated = {text: where for text, where in rows.items() if len(where) > 1}
    if not repeated:
        return
    both = [text for text, where in repeated.items() if len({prompts.labels[i] for i in where}) > 1]
    text = both[0] if both else next(iter(repeated))
    raise ValueError(f"{source} holds {len(repeated)} prompt(s) more than once"
                     + (f", {len(both)} of them under both labels" if both else "")
                     + f", e.g. rows {', '.join(str(i + 1) for i in repeated[text])}: {text[:60]!r}; "
                     "keep one row per prompt")


def check_distinct_tokens(prompts: PromptSet, ids: Sequence[Sequence[int]]) -> None:
    """Different prompts must reach the model as different tokens: a chat template that drops or truncates the request
    makes them all the same, and every number would be about the template alone."""
    first: dict[tuple[int, ...], int] = {}
    same = []
    for i, row in enumerate(ids):
        j = first.setdefault(tuple(row), i)
        if j != i:
            same.append((j, i))
    if same:
        j, i = same[0]
        raise ValueError(f"{len(same)} prompt(s) reach the model as the same tokens as another, e.g. rows {j + 1} and "
                         f"{i + 1} ({prompts.prompts[j][:40]!r} and {prompts.prompts[i][:40]!r}): the prompt format (a "
                         "chat template that drops the request?) or the tokenizer (words it reads as its unknown "
                         "token?) loses what tells them apart")


def unreadable(tokenizer, prompts: PromptSet) -> str | None:
    """A note on prompts holding control characters or text the tokenizer reads as its unknown token, or None."""
    unk = tokenizer.unk_token_id  # in the request's own tokens: a template's special tokens may share its id
    unknown = [i for i, text in enumerate(prompts.prompts)
               if unk is not None and unk in tokenizer(text, add_special_tokens=False).input_ids]
    control = [i for i, text in enumerate(prompts.prompts)
               if any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in text)]
    parts = [f"{len(unknown)} prompt(s) hold text the tokenizer reads as {tokenizer.unk_token!r} (e.g. row "
             f"{unknown[0] + 1})"] if unknown else []
    parts += [f"{len(control)} prompt(s) hold control characters (e.g. row {control[0] + 1})"] if control else []
    return "note: " + "; ".join(parts) + ": the models read those parts as nothing in particular" if parts else None


def check_prompts(prompts: PromptSet, source: str = "the prompts") -> None:
    """Both labels, at least :data:`MIN_PER_LABEL` of each, and a probe split that works."""
    counts = {label: prompts.labels.count(label) for label in LABELS}
    if min(counts.values()) == 0:
        raise ValueError(f"{source} has only {[k for k, v in counts.items() if v]} prompts; "
                         f"a report compares {' and '.join(LABELS)} prompts, so it needs both")
    if min(counts.values()) < MIN_PER_LABEL:
        raise ValueError(f"{source} has {counts} prompts per label; a report needs at least {MIN_PER_LABEL} of each")
    check_splits(prompts, source)
    fitting_prompts(prompts)
    probe_split(prompts)


def fitting_prompts(prompts: PromptSet) -> PromptSet:
    """The prompts directions are fitted on: the plain ones (no jailbreak or bait ``split``) not marked ``held_out``."""
    splits = splits_of(prompts)
    held = prompts.column("held_out") if "held_out" in prompts.extra else (False,) * len(prompts)
    kept = prompts.select([not h and s not in SPECIAL_SPLITS for h, s in zip(held, splits, strict=True)])
    counts = {label: kept.labels.count(label) for label in LABELS}
    if min(counts.values()) < MIN_PER_LABEL:
        raise ValueError(f"the prompts not held out have {counts} per label; the direction search needs at least "
                         f"{MIN_PER_LABEL} of each")
    return kept


def probe_split(prompts: PromptSet) -> tuple[Tensor, Tensor]:
    """Train/test masks for the probes: by ``concept`` when given, held-out rows always tested.

    The test share of the free groups grows until each label has :data:`PROBE_TEST_MIN` test
    prompts (or half of the groups are tested).
    """
    y = torch.tensor([label == "harmful" for label in prompts.labels])
    for fraction in (0.0, 0.25, 0.35, 0.5):
        try:
            train, test = concept_split(prompts, test_fraction=fraction)
        except ValueError:
            continue
        if min(int((y[test] == c).sum()) for c in (0, 1)) >= PROBE_TEST_MIN and \
                min(int((y[train] == c).sum()) for c in (0, 1)) >= PROBE_TEST_MIN:
            return train, test
    raise ValueError(f"cannot split the prompts for the probes with at least {PROBE_TEST_MIN} per label on each side; "
                     "give more prompts (or more concepts, or mark fewer as held_out)")


def check_out_path(out: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """The report's HTML path: its folder must exist and be writable, neither the page nor the JSON
    beside it (same name, ``.json``) may be a directory, and neither may be one of ``inputs`` (the prompt file,
    the checkpoints: those that are local paths) or lie inside one, so a report never overwrites what it reads."""
    out = Path(out).expanduser()
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report is an HTML page: give an output path ending in .html, not {str(out)!r}")
    if out.parent.exists() and not out.parent.is_dir():
        raise NotADirectoryError(f"{str(out.parent)!r}, where --out puts the report, is a file, not a folder")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the output folder {str(out.parent)!r} does not exist; create it first")
    read = [Path(p).expanduser().resolve() for p in inputs if os.path.exists(Path(p).expanduser())]  # no OSError
    for path, what in ((out, "the report page"), (json_path(out), "the report's numbers (the JSON beside the page)")):
        if path.is_dir():
            raise IsADirectoryError(f"{str(path)!r}, where {what} would go, is a directory; choose another --out")
        where = path.resolve()
        clash = next((p for p in read if where == p or p.is_dir() and where.is_relative_to(p)), None)
        if clash is not None:
            raise ValueError(f"{what} would go to {str(path)!r}, " + ("which is an input of the report"
                             if where == clash else f"inside the input folder {str(clash)!r}")
                             + ": the report never writes over what it reads; choose another --out")
    if why := unwritable(out.parent):
        raise PermissionError(f"cannot write in the output folder {str(out.parent)!r} ({why}); choose another --out")
    return out


def json_path(out: Path) -> Path:
    """Where the JSON of a report whose page is ``out`` goes."""
    return out.with_suffix(".json")


