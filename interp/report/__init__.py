"""The audit report: from a checkpoint pair and a prompt file to one HTML page and a JSON of every number.

>>> import tempfile
>>> from interp import organisms
>>> prompts = organisms.prompt_set(["harmful_train", "harmless_train"])  # or PromptSet.from_file("mine.jsonl")
>>> report = audit(pair, prompts, refusal_prefixes=["sorry"], progress=False)
>>> [section.key for section in report.sections][:3]
['behaviour', 'token_kl', 'what_changed']
>>> html, numbers = report.write(f"{tempfile.mkdtemp()}/report.html")  # and report.json beside it
>>> html.name, numbers.name
('report.html', 'report.json')

:func:`run` is what ``interp report`` calls: it checks every input before loading a model.
Sections (:data:`~interp.report.sections.SECTIONS`) are plain functions of an
:class:`~interp.report.audit.Audit`; the page is rendered by :mod:`~interp.report.render`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from interp import directions, metrics
from interp.checks import check_count
from interp.data import PromptSet
from interp.jailbreaks import SPECIAL_SPLITS, splits_of
from interp.locks import output_lock
from interp.markers import RefusalMarkers
from interp.matmul import name as matmul_name
from interp.matmul import resolve as resolve_matmul
from interp.models import ModelPair, check_checkpoints, check_device, load_checked
from interp.prompts import check_lengths, check_vocabulary, tokenize
from interp.report import plan, render
from interp.report.inputs import (
    check_distinct_tokens,
    check_out_path,
    check_prompts,
    fitting_prompts,
    json_path,
    read_prompts,
    unreadable,
)
from interp.report.sections import SECTIONS, Audit, Section

__all__ = ["SECTIONS", "Audit", "Report", "Section", "audit", "refusal_markers", "run"]


def plain(value):
    """``value`` as JSON: tensors and arrays as lists, NaN and infinities as null, keys as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Report:
    meta: dict
    sections: list[Section]

    def to_json(self) -> dict:
        return plain({"meta": self.meta, "sections": {
            s.key: {"title": s.title, "summary": s.summary, "numbers": s.numbers} for s in self.sections}})

    def html(self) -> str:
        return render.page(f"Alignment audit: {self.meta['aligned']} vs {self.meta['base']}", self.meta, self.sections)

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write ``out`` (HTML) and the JSON beside it (same name, ``.json``).

        Both are written to temporary files first and renamed into place only when both are
        whole, so a failed write leaves neither a half page nor a stray temporary file.
        """
        out = check_out_path(out)
        texts = {out: self.html(), json_path(out): json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"}
        temporary = {path: path.with_name(f".{path.name}.tmp-{os.getpid()}") for path in texts}
        try:
            for path, text in texts.items():
                temporary[path].write_text(text, encoding="utf-8")
            for path, tmp in temporary.items():
                tmp.replace(path)
        finally:
            for tmp in temporary.values():
                tmp.unlink(missing_ok=True)
        return out, json_path(out)


def refusal_markers(
    pair: ModelPair, harmful: PromptSet, prefixes: Sequence[str] | None = None
) -> RefusalMarkers:
    """How the report recognises a refusal: the given text prefixes, or markers derived from the pair.

    Given prefixes are tokenized as they follow a formatted prompt (an unknown token is an
    error). Derived (no prefixes): :func:`interp.metrics.derive_refusal_tokens` on ``harmful``,
    one-token markers. Either way :meth:`RefusalMarkers.checked` then flags markers whose first
    token also starts the aligned model's harmless replies (see :func:`audit`).
    """
    tokenizer = pair.tokenizer
    if prefixes:
        return RefusalMarkers.from_prefixes(tokenizer, prefixes, pair.prompt_format, how="given (--refusal-prefix)")
    tokens = metrics.derive_refusal_tokens(pair, harmful)
    if not any(tokenizer.convert_tokens_to_string([t]).strip() for t in tokens):
        raise ValueError(f"the derived refusal tokens {tokens} are blank as text; give --refusal-prefix")
    return RefusalMarkers.from_tokens(tokenizer, tokens, "derived from the aligned model's answers to harmful prompts")


def check_sections(skip: Sequence[str]) -> None:
    unknown = sorted(set(skip) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown report sections {unknown}; the sections are {list(SECTIONS)}")


def gate_by_size(work: dict[str, plan.Work], skip: Sequence[str], dictionary: bool | None) -> tuple[list[str], str]:
    """``skip`` with the dictionary section added when it is estimated above :data:`plan.DICTIONARY_SECONDS` and not
    forced (``dictionary=True``), and the note the page shows about it ('' when nothing changed)."""
    skip = list(skip)
    if "dictionary" in work and "dictionary" not in skip and not dictionary:
        seconds = work["dictionary"].seconds
        if seconds > plan.DICTIONARY_SECONDS:
            skip.append("dictionary")
            return skip, (f"off: estimated {seconds / 60:.1f} min on this machine, above the "
                          f"{plan.DICTIONARY_SECONDS / 60:g} min it runs by default within; --dictionary runs it")
    return skip, ""


def _say(progress: bool, text: str, end: str = "\n") -> None:
    if progress:
        print(text, end=end, file=sys.stderr, flush=True)


def audit(
    pair: ModelPair, prompts: PromptSet, *, refusal_prefixes: Sequence[str] | None = None,
    skip: Sequence[str] = (), max_new_tokens: int = 16, progress: bool = True, source: str = "",
    work: dict[str, plan.Work] | None = None, dictionary: bool | None = None,
) -> Report:
    """Run every section of :data:`SECTIONS` not in ``skip`` on ``pair`` and ``prompts``.

    The work is planned first (:mod:`~interp.report.plan`; ``work`` is a plan already made and
    said, as :func:`run` makes it before loading): each section's estimated cost is said (with
    ``progress``) and kept in the meta beside the time it took, with the defaults the plan chose
    (how many prompts are patched) and the direction search's. The dictionary section runs only when it is
    estimated within :data:`plan.DICTIONARY_SECONDS`, unless ``dictionary`` is True (False: never).
    """
    check_sections(skip)
    check_prompts(prompts)
    if dictionary is False:
        skip = [*skip, "dictionary"]
    chosen = [key for key in SECTIONS if key not in skip]
    if work is None:
        ids = tokenize(pair.tokenizer, prompts, pair.prompt_format, n_ctx=pair.n_ctx)
        device = str(pair.metadata.get("device") or pair.cfg.device)
        products = pair.metadata.get("matmul", "float32")
        work = plan.plan(pair.aligned.original_model.config, ids, prompts.labels, chosen, max_new_tokens, device,
                         products)
        _say(progress, plan.describe(work, device, matmul=products))
    skip, too_big = gate_by_size(work, skip, dictionary)
    chosen = [key for key in chosen if key not in skip]
    markers = refusal_markers(pair, fitting_prompts(prompts).by_label("harmful"), refusal_prefixes)
    patched = work["patching"].settings["prompts"] if "patching" in work else plan.PATCH_PROMPTS
    state = Audit(pair, prompts, markers, max_new_tokens, progress, patch_prompts=patched)
    _say(progress, f"[0/{len(chosen)}] greedy replies of both models ...")
    start = time.time()
    state.reply_ids  # noqa: B018 - generated once here, read by the sections and the markers' check
    seconds = {"replies": round(time.time() - start, 1)}
    _say(progress, f"[0/{len(chosen)}] replies done in {seconds['replies']:.0f} s")
    # Plain harmless rows only: bait is labelled harmless but meant to draw refusals.
    harmless_replies = [ids for ids, label, split in zip(state.reply_ids["aligned"], prompts.labels,
                                                         splits_of(prompts), strict=True)
                        if label == "harmless" and split not in SPECIAL_SPLITS]
    state.markers = markers.checked(harmless_replies)
    sections = []
    for i, key in enumerate(chosen, 1):
        _say(progress, f"[{i}/{len(chosen)}] {key} ...")
        start = time.time()
        sections.append(SECTIONS[key](state))
        seconds[key] = round(time.time() - start, 1)
        _say(progress, f"[{i}/{len(chosen)}] {key} done in {seconds[key]:.0f} s")
    meta = {
        "base": pair.base_name, "aligned": pair.aligned_name, "prompts": source or prompts.name,
        "n_prompts": {label: prompts.labels.count(label) for label in prompts.label_names},
        "n_held_out": sum(prompts.column("held_out")) if "held_out" in prompts.extra else 0,
        "refusal_tokens": state.refusal_tokens, "refusal_prefixes": list(state.markers.prefixes),
        "refusal_markers": state.markers.describe(pair.tokenizer), "quantization": pair.metadata.get("quantization"),
        "sections": chosen, "skipped": [k for k in SECTIONS if k in skip], "seconds": seconds,
        "plan": {key: {"seconds": float(f"{w.seconds:.3g}"), "what": w.what} for key, w in work.items()},
        "defaults": {**_defaults(chosen, state.patch_prompts), **({"dictionary": too_big} if too_big else {})},
        "device": pair.metadata.get("device", ""), "dtype": pair.metadata.get("dtype", ""),
        "matmul": pair.metadata.get("matmul", "float32"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {lib: version(lib) for lib in ("interp", "torch", "transformers", "transformer-lens")},
    }
    return Report(meta, sections)


def _defaults(sections: Sequence[str], patched: int) -> dict[str, str]:
    """The choices made for the reader without being asked, for the sections that ran."""
    said = {}
    if "patching" in sections:
        said["patched prompts"] = (f"{patched} harmful prompts of one length (the most whose sweep is estimated "
                                   f"within {plan.PATCH_SECONDS:g} s, at most {plan.PATCH_PROMPTS})")
    if "direction" in sections:
        said["direction search"] = (f"validated on at most {directions.PAPER_VALIDATION} prompts per label (as Arditi "
                                    f"et al.), ranked by bypass score on {directions.RANK_PROMPTS} of them, at most "
                                    f"{directions.MAX_SCORED} candidates scored exactly (the table says which)")
    return said


def run(
    base: str, aligned: str, prompts_path: str | Path, out: str | Path, *,
    refusal_prefixes: Sequence[str] | None = None, skip: Sequence[str] = (), device: str | None = None,
    prompt_format: str = "chat", max_new_tokens: int = 16, progress: bool = True, allow_identical: bool = False,
    dictionary: bool | None = None, matmul: str | None = None, allow_nonfinite: bool = False,
) -> Report:
    """``interp report``: check the inputs, load the pair, audit it, write the HTML and the JSON.

    Every input is checked before any weights load: sections, prompt file, output paths, device,
    both checkpoints (:func:`~interp.models.check_checkpoints`, which refuses two checkpoints with
    the same weights unless ``allow_identical``), and that every prompt and its reply fit in the
    models' context. ``matmul``: ``"bfloat16"`` or ``"auto"`` takes the models' linear products in bfloat16
    (:mod:`interp.matmul`; float32 by default).
    """
    check_sections(skip)
    max_new_tokens = check_count(max_new_tokens, "max_new_tokens")
    prompts = read_prompts(prompts_path)
    out = check_out_path(out, inputs=[prompts_path, base, aligned])
    device = check_device(device)
    checked = check_checkpoints(base, aligned, prompt_format, allow_identical=allow_identical)
    products = matmul_name(resolve_matmul(matmul, device))
    ids = tokenize(checked.tokenizer, prompts, prompt_format, n_ctx=checked.n_ctx)
    check_lengths(ids, checked.n_ctx, reserve=max_new_tokens, why=f"--max-new-tokens {max_new_tokens} after them")
    check_distinct_tokens(prompts, ids)
    check_vocabulary(ids, checked.config.get_text_config().vocab_size)
    if note := unreadable(checked.tokenizer, prompts):
        _say(True, note)
    if refusal_prefixes:  # unknown tokens are an error before any weights load
        RefusalMarkers.from_prefixes(checked.tokenizer, refusal_prefixes, prompt_format)
    chosen = [key for key in SECTIONS if key not in skip and not (key == "dictionary" and dictionary is False)]
    work = plan.plan(checked.config, ids, prompts.labels, chosen, max_new_tokens, device, products)
    note = gate_by_size(work, skip, dictionary)[1]
    off = {"dictionary": note} if note else {}
    if "jailbreak" in work and not set(splits_of(prompts)) & set(SPECIAL_SPLITS):
        off["jailbreak"] = "the prompts have no jailbreak or bait rows"
    _say(progress, plan.describe(work, device, off, products))
    with output_lock(json_path(out)):  # one run per output (r.html and r.htm share r.json): pages never mix
        _say(progress, f"loading {base} and {aligned} ...", end=" ")
        start = time.time()
        pair = load_checked({"aligned": checked}, device=device, matmul=matmul,
                            allow_nonfinite=allow_nonfinite)["aligned"]  # checked above: not read twice
        _say(progress, f"done ({time.time() - start:.0f} s)")
        report = audit(pair, prompts, refusal_prefixes=refusal_prefixes, skip=skip, max_new_tokens=max_new_tokens,
                       progress=progress, source=str(prompts_path), work=work, dictionary=dictionary)
        page, numbers = report.write(out)
    _say(progress, f"wrote {page} and {numbers}")
    return report
