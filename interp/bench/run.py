"""Run every method on every planted organism of some zoos, grade each, and write the leaderboard.

One row per (zoo seed, organism, method), appended to a JSONL file as each finishes, so an interrupted run resumes
where it stopped; a method that fails on an organism writes its error as the row (a result) and the run goes on.
Each organism's card is checked against its checkpoints before any method runs on it.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from interp.bench import grade, plants
from interp.bench.cards import BENCH_VERSION, check_card, load_card
from interp.bench.hypotheses import Corpus
from interp.bench.methods import METHODS
from interp.intervals import bootstrap, rate


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def organism_folder(zoo: Path, root: str | Path | None, organism: str) -> Path:
    """Where ``zoo``'s ``organism`` is kept: ``root/seed-<zoo seed>/<organism>``, or with no root under
    :func:`interp.bench.plants.default_root`."""
    if root is None:
        return plants.default_root(zoo) / organism
    return Path(root) / f"seed-{json.loads((zoo / 'zoo.json').read_text())['seed']}" / organism


def audit(zoos: Iterable[str | Path], root: str | Path | None, out: str | Path, *, organisms: Sequence[str] = tuple(
        plants.PLANTS), methods: Sequence[str] = tuple(METHODS), say: Callable[[str], None] = print) -> list[dict]:
    """The toy world's benchmark: each zoo's organisms built (or reused, in :func:`organism_folder`, against the zoo's
    ``sft`` as control) one at a time, each graded by :func:`audit_pairs`."""
    rows, corpus = read_rows(Path(out)), None
    for zoo in map(Path, zoos):
        seed = int(json.loads((zoo / "zoo.json").read_text())["seed"])
        for organism in organisms:
            if all((seed, organism, m) in done(rows) for m in methods):
                continue
            folder = plants.build_plant(zoo, organism, organism_folder(zoo, root, organism))
            corpus = corpus or plants.corpus()
            rows = audit_pairs([(seed, organism, zoo / "sft", folder)], out, corpus, plants.candidates(),
                               methods=methods, say=say)
    return rows


def done(rows: list[dict]) -> set[tuple]:
    """``(zoo seed, organism, method)`` of the rows of this benchmark version (a row of another version is redone)."""
    return {(r["zoo_seed"], r["organism"], r["method"]) for r in rows if r.get("bench_version") == BENCH_VERSION}


def audit_pairs(entries: Iterable[tuple[int | str, str, Path, Path]], out: str | Path | None, corpus: Corpus,
                candidates: Sequence[str], *, methods: Sequence[str] = tuple(METHODS),
                say: Callable[[str], None] = print) -> list[dict]:
    """For each ``(seed or label, organism name, control folder, organism folder)``: check the organism's card against
    both checkpoints (before any method runs), then run each of ``methods`` not already in ``out`` on the pair and
    append its graded row to ``out`` (JSONL; None: kept in memory only); a method that fails writes its error as the
    row."""
    from interp import load_pair

    out = None if out is None else Path(out)
    rows = [] if out is None else read_rows(out)
    written = done(rows)
    for seed, organism, control, folder in entries:
        todo = [m for m in methods if (seed, organism, m) not in written]
        if not todo:
            continue
        card = load_card(folder)
        check_card(card, control, folder)
        if card.planted and card.tokens[0] not in candidates:
            raise ValueError(f"{card.tokens[0]!r} (the plant of {organism}) is not among the candidates: the closed "
                             "set must hold every plant's word")
        pair = load_pair(control, folder, device="cpu")
        for name in todo:
            row = {"bench_version": BENCH_VERSION, "zoo_seed": seed, "organism": organism, "kind": card.kind,
                   "rung": card.rung, "method": name, "effect": card.effect.get("organism", {})}
            try:
                found = METHODS[name](pair, corpus)
                row |= found.summary() | grade.grade(found, card, candidates) | {"error": None}
            except Exception as error:  # a method's failure is a result: recorded, and the run goes on
                last = traceback.extract_tb(error.__traceback__)[-1]
                row |= {"error": f"{type(error).__name__}: {error}", "where": f"{last.filename}:{last.lineno}"}
            rows.append(row)
            if out is not None:
                with out.open("a") as f:
                    f.write(json.dumps(row, default=float) + "\n")
            say(f"{seed} {organism:18} {name:14} " + (row["error"] or f"tokens {row['tokens'][:3]} sites "
                                                                     f"{row['sites'][:2]}"))
    return rows


FIRST_WORDS, COSINE = 5, 0.5
"""A method points at a plant when the plant's word is among its first :data:`FIRST_WORDS` words, a planted site is
in the first third of its sites, or its direction has |cosine| >= :data:`COSINE` with the planted one."""


def pointed_at(row: dict) -> bool | None:
    """Did the method point at the plant (:data:`FIRST_WORDS`, :data:`COSINE`)? None where no grader applies.

    >>> pointed_at({"tokens": ["a"], "token_rank": 3, "localised": None, "cosine": None})
    True
    >>> pointed_at({"tokens": [], "token_rank": None, "localised": False, "cosine": 0.2})
    False
    """
    named = (row["token_rank"] is not None and row["token_rank"] <= FIRST_WORDS) if row.get("tokens") else None
    verdicts = [v for v in (named, row.get("localised"), None if row.get("cosine") is None else
                            row["cosine"] >= COSINE) if v is not None]
    return any(verdicts) if verdicts else None


def _count(k: int, n: int) -> str:
    """``k/n`` with Wilson's 95% interval in percent.

    >>> _count(5, 8)
    '5/8 (31-86%)'
    """
    found = rate(k, n)
    return f"{k}/{n} ({100 * found.low:.0f}-{100 * found.high:.0f}%)"


def _verdicts(rows: list[dict], method: str, organism: str) -> list[bool]:
    """:func:`pointed_at` of each graded row of one method and organism (failed rows and rows no grader applies to
    left out)."""
    mine = (r for r in rows if r["method"] == method and r["organism"] == organism and not r.get("error"))
    return [v for v in map(pointed_at, mine) if v is not None]


def detection(rows: list[dict], method: str, organism: str) -> str:
    """AUROC of the method's strength, organism against null over zoo seeds, with a bootstrap over seeds."""
    def strengths(name):
        return {r["zoo_seed"]: r["strength"] for r in rows if r["method"] == method and r["organism"] == name
                and not r.get("error") and r.get("strength") is not None and not math.isnan(r["strength"])}
    planted, nulls = strengths(organism), strengths("null")
    seeds = sorted(set(planted) & set(nulls))
    if len(seeds) < 2:
        return "-"
    scores = [planted[s] for s in seeds] + [nulls[s] for s in seeds]
    labels = [1.0] * len(seeds) + [0.0] * len(seeds)
    found = bootstrap(grade.auroc, scores, labels, groups=seeds + seeds)
    return f"{found.value:.2f} ({found.low:.2f}-{found.high:.2f})"


def _organisms(rows: list[dict]) -> list[str]:
    """The planted organisms of the rows (not the nulls), in the order they first appear."""
    return list(dict.fromkeys(r["organism"] for r in rows if r["kind"] != "null"))


def leaderboard(rows: list[dict]) -> str:
    """Two tables, methods x organisms: how often a method pointed at the plant (:func:`_found`, of the seeds where a
    grader applies; ``x`` where a method failed), and detection AUROC against the null organisms (95% over seeds)."""
    rows = [r for r in rows if r.get("bench_version") == BENCH_VERSION]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)] + sorted(
        {r["method"] for r in rows} - set(METHODS))
    organisms = _organisms(rows)
    seeds = sorted({r["zoo_seed"] for r in rows}, key=lambda s: (isinstance(s, str), s))
    width = 20
    head = f"{'method':14}" + "".join(f"{o:>{width}}" for o in organisms)
    lines = [f"# interp.bench version {BENCH_VERSION}: {len(seeds)} controls ({', '.join(map(str, seeds))}), each "
             "organism against its control",
             f"## pointed at the plant (its word in the first {FIRST_WORDS} words, a planted site in the first third "
             f"of the sites, or |cosine| >= {COSINE} with the planted direction), seeds of those graded; x: the "
             "method failed", head]
    for m in methods:
        cells = []
        for o in organisms:
            failed = sum(bool(r.get("error")) for r in rows if r["method"] == m and r["organism"] == o)
            verdicts = _verdicts(rows, m, o)
            cell = _count(sum(verdicts), len(verdicts)) if verdicts else "-"
            cells.append(cell + (f" x{failed}" if failed else ""))
        lines.append(f"{m:14}" + "".join(f"{c:>{width}}" for c in cells))
    lines += ["## the plant's word first among the closed set of candidate words (the plants' candidates(): words "
              "and distractors), ordered by the method's words, with 95% (Wilson); then how often in the first 3", head]
    for m in methods:
        ranks = {o: [r["identified"] for r in rows if r["method"] == m and r["organism"] == o and not r.get("error")
                     and r.get("tokens") is not None and r.get("precision@10") is not None] for o in organisms}
        lines.append(f"{m:14}" + "".join(
            (_count(sum(k == 1 for k in v), len(v)) + f" {sum(k is not None and k <= 3 for k in v)}").rjust(width)
            if v else "-".rjust(width) for v in ranks.values()))
    lines += ["## detection AUROC of the method's strength (read without the card), organism vs null, 95% over seeds",
              head]
    lines += [f"{m:14}" + "".join(f"{detection(rows, m, o):>{width}}" for o in organisms) for m in methods]
    return "\n".join(lines)


def leaderboard_figure(rows: list[dict]):
    """A matplotlib heatmap, methods x organisms: the share of graded seeds where the method pointed at the plant."""
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("bench_version") == BENCH_VERSION and not r.get("error")]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    organisms = _organisms(rows)
    grid, labels = [], []
    for m in methods:
        verdicts = [_verdicts(rows, m, o) for o in organisms]
        grid.append([sum(v) / len(v) if v else math.nan for v in verdicts])
        labels.append([f"{sum(v)}/{len(v)}" if v else "-" for v in verdicts])
    fig, ax = plt.subplots(figsize=(1.2 * len(organisms) + 2.5, 0.55 * len(methods) + 1.6))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            ax.text(j, i, text, ha="center", va="center", color="white" if (grid[i][j] or 0) < 0.6 else "black")
    ax.set_xticks(range(len(organisms)), organisms, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    ax.set_title("Which method points at the planted change (share of zoo seeds)")
    fig.colorbar(image, ax=ax, label="share of seeds")
    fig.tight_layout()
    return fig
