"""``interp bench``: the auditing benchmark from the command line, its cost said before any work.

    interp bench [ZOO ...] [--root DIR] [--out PREFIX] [--organisms ...] [--methods ...]
    interp bench --real [--root DIR] [--out PREFIX] [--methods ...]

The toy world's plants are built on each zoo's ``sft`` (default: the zoo of ``interp organisms build``) and kept
under ``--root`` (default: :func:`interp.bench.plants.default_root`); ``--real`` builds SmolLM2-135M-Instruct's.
Rows go to ``PREFIX.jsonl`` as each method finishes (a rerun resumes), the leaderboard to ``PREFIX.txt`` and its
figure to ``PREFIX.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

SECONDS = {"toy_plant": 6, "real_plant": 300,
           "toy": {"weight_diff": 0.1, "layer_swap": 1.5, "adl": 0.5, "diff_mining": 0.7, "amplification": 9,
                   "token_kl": 0.6, "refusal_shift": 0.3, "interrogation": 0.1},
           "real": {"weight_diff": 5, "layer_swap": 900, "adl": 30, "diff_mining": 200, "amplification": 120,
                    "token_kl": 250, "refusal_shift": 25, "interrogation": 30}}
"""Costs on a 2-core CPU (seconds): a toy plant's stage, a real plant's; each method on one organism of the toy world
and of the real model (benchmarks/results/audit-*.jsonl; the real layer swap and interrogation estimated)."""
OUT_SUFFIXES = (".jsonl", ".txt", ".png")


def _check(names: Sequence[str] | None, known: Sequence[str], what: str) -> list[str]:
    """``names`` (all of ``known`` when None), each once, in order; an unknown one is an error naming the known."""
    names = list(known) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no {what} {', '.join(map(repr, unknown))}; the {what}s are {', '.join(known)}")
    return names


def estimate(todo: Sequence[tuple[str, str]], real: bool, todo_plants: int) -> float:
    """Seconds the run will take: ``todo_plants`` organisms to build, and the ``(organism, method)`` rows not yet
    written (a method of unknown cost counted as a second on the toy world, a minute on a real model)."""
    world, unknown = ("real", 60) if real else ("toy", 1)
    return (todo_plants * SECONDS[f"{world}_plant"]
            + sum(SECONDS[world].get(m, unknown) for _, m in todo))


def _said(seconds: float) -> str:
    """
    >>> _said(18), _said(3775)
    ('18 s', '63 minutes')
    """
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} minutes"


def out_prefix(out: str | Path) -> Path:
    """The prefix of the files ``out`` names: a folder gets ``audit`` inside it; a known suffix is dropped.

    >>> str(out_prefix("lb.v2")), str(out_prefix("lb.txt"))
    ('lb.v2', 'lb')
    """
    out = Path(out)
    if out.is_dir():
        return out / "audit"
    if out.suffix in OUT_SUFFIXES:
        out = out.with_suffix("")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent} is not a folder: the leaderboard's files go there")
    return out


def _path(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


def write_leaderboard(rows: list[dict], out: Path) -> str:
    """``out``.txt (the leaderboard) and ``out``.png (its figure); the leaderboard."""
    import matplotlib.pyplot as plt

    from interp.bench import run

    table = run.leaderboard(rows)
    _path(out, ".txt").write_text(table + "\n")
    fig = run.leaderboard_figure(rows)
    fig.savefig(_path(out, ".png"), dpi=130)
    plt.close(fig)
    return table


def bench(zoos: Sequence[str | Path] = (), *, root: str | Path | None = None, out: str | Path = "audit",
          organisms: Sequence[str] | None = None, methods: Sequence[str] | None = None, real: bool = False,
          say: Callable[[str], None] = print) -> str:
    """Build (or reuse) the organisms, run ``methods`` on each, write the rows, leaderboard and figure; return the
    leaderboard. Names are checked, and the cost said, before anything is built."""
    from interp.bench import plants, realplants, run
    from interp.bench.cards import BENCH_VERSION
    from interp.bench.methods import METHODS
    from interp.gguf import cache_root

    methods = _check(methods, tuple(METHODS), "method")
    out = out_prefix(out)
    jsonl = _path(out, ".jsonl")
    done = run.done(run.read_rows(jsonl))
    if real:
        if zoos:
            raise ValueError("--real audits SmolLM2-135M-Instruct's plants: give no zoo")
        names = _check(organisms, realplants.PLANTS, "real plant")
        root = Path(root) if root is not None else cache_root() / "bench" / f"v{BENCH_VERSION}" / "smollm2"
        todo = sum(not (root / n / "card.json").exists() for n in names)
        rows_todo = [(n, m) for n in names for m in methods if ("smollm2", n, m) not in done]
        say(f"{len(names)} SmolLM2-135M-Instruct organisms ({todo} to build, about 5 minutes each), {len(methods)} "
            f"methods on each ({len(rows_todo)} rows to write): about {_said(estimate(rows_todo, True, todo))}")
        from interp import realmodels

        control = realmodels.smollm2()
        entries = [("smollm2", n, control, realplants.build_real_plant(n, root / n)) for n in names]
        rows = run.audit_pairs(entries, jsonl, realplants.corpus(), realplants.candidates(), methods=methods, say=say)
    else:
        from interp.organisms import zoo as zoo_module

        names = _check(organisms, tuple(plants.PLANTS), "plant")
        zoos = [Path(z) for z in zoos] or [zoo_module.default_dir()]
        for zoo in zoos:
            if not (zoo / "sft").is_dir() or not (zoo / "zoo.json").is_file():
                raise ValueError(f"{zoo} is not a zoo folder (no sft/ or zoo.json): build the default one with "
                                 "'interp organisms build', another with 'interp organisms build --out DIR --seed N'")
        todo = sum(not (run.organism_folder(z, root, n) / "card.json").exists() for z in zoos for n in names)
        seeds = {z: json.loads((z / "zoo.json").read_text())["seed"] for z in zoos}
        rows_todo = [(n, m) for z in zoos for n in names for m in methods if (seeds[z], n, m) not in done]
        say(f"{len(zoos) * len(names)} organisms ({len(zoos)} zoo{'s' * (len(zoos) > 1)} x {len(names)} plants; "
            f"{todo} to build), {len(methods)} methods on each ({len(rows_todo)} rows to write): about "
            f"{_said(estimate(rows_todo, False, todo))}")
        rows = run.audit(zoos, root, jsonl, organisms=names, methods=methods, say=say)
    return write_leaderboard(rows, out)
