"""Every notebook claim on many seeds' builds: the claims table (issue 29, item 1).

Builds a checked zoo from each seed (one attempt: a seed whose build misses the organisms' targets is recorded as
such, not replaced by the next seed), runs every notebook on each accepted build with the claim helper recording
and not raising (``$INTERP_CLAIMS_RECORD_ONLY``), and writes one row per claim and seed to ``--jsonl`` and the
table to ``--txt``. Seeds 0-9 are the seeds the recipe was tuned on; seeds from 10 on never were (and never may
be: tune on 0-9 only). Resumable: a seed's rows are written when it finishes, and a seed already in the JSONL is
skipped; zoos are kept under ``--zoos`` and reused. About 3 minutes per build and 6 per notebook run here.

    python benchmarks/claims.py --seeds 0 2 10 11 12 13 14 15          # build, run, write the table
    python benchmarks/claims.py --seeds 10 11 --build-only             # only the zoos (and failed builds' rows)
    python benchmarks/claims.py --txt-only                             # rewrite the .txt from the .jsonl
    python benchmarks/claims.py --rejudge       # after moving a threshold: the recorded statistics, judged again
    python benchmarks/claims.py --rerun 01_behaviour_and_tokens   # one notebook changed: its rows on every seed, anew
    python benchmarks/claims.py --rerun 05_refusal_direction --seeds 10 11   # ...on these accepted seeds only
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections import Counter
from datetime import date
from importlib.metadata import version
from pathlib import Path

import nbformat

from interp import claims
from interp.figures import NotebookError, run_notebook
from interp.organisms import zoo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TUNED_SEEDS = range(10)
"""The seeds the recipe was tuned on; the claims must also hold on seeds never tuned on (10 and above)."""
BUILD_CLAIM = "build meets the organisms' targets"
DEFAULT_SEEDS = [0, 1, 2, 10, 11, 12, 13, 14, 15]


def build(seed: int, zoos: Path) -> tuple[Path | None, list[dict]]:
    """The checked zoo of ``seed`` (reused when built), or None and the failure's row."""
    try:
        return zoo.build(zoos / f"seed-{seed}", config=zoo.BuildConfig(seed=seed), attempts=1), []
    except zoo.TargetsMissed as e:
        return None, [row(seed, False, claim=BUILD_CLAIM, holds=False, error=str(e))]


def row(seed: int, accepted: bool, **fields) -> dict:
    base = {"seed": seed, "tuned": seed in TUNED_SEEDS, "accepted": accepted, "notebook": None, "claim": None,
            "subject": None, "kind": None, "statistic": None, "op": None, "threshold": None, "holds": None}
    return {**base, **fields}


def run_notebooks(seed: int, zoo_dir: Path, notebooks: list[Path], figures: Path | None = None) -> list[dict]:
    """Every claim of every notebook on one zoo; a notebook that fails outright is a row of its own. The figures go
    to ``figures`` (kept) or a temporary folder."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        recorded = Path(tmp) / "claims.jsonl"
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
        os.environ.update({claims.FILE_ENV: str(recorded), claims.RECORD_ONLY_ENV: "1",
                           zoo.ENV_VAR: str(zoo_dir), "INTERP_FIGURES_DIR": str(figures or tmp)})
        for path in notebooks:
            print(f"  seed {seed}: {path.name} ...", end=" ", file=sys.stderr, flush=True)
            try:
                seconds = run_notebook(path)
                error = None
            except NotebookError as e:
                seconds, error = float("nan"), str(e)
            print(f"{seconds:.0f} s" if error is None else f"FAILED: {error}", file=sys.stderr, flush=True)
            if error is not None:
                rows.append(row(seed, True, notebook=path.stem, claim=f"{path.stem} runs", holds=False, error=error))
        rows += [row(seed, True, **r) for r in claims.read_table(recorded)]
    return rows


def notebook_claims(path: Path) -> list[dict]:
    """Every ``claims.claim`` / ``claims.observe`` / ``claims.on_real`` call in a notebook, read from its source:
    ``function``, ``name``
    (a string literal, or an error), ``op``, ``threshold`` (None where it is not a constant expression) and
    ``precondition``."""
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "claims"
                    and node.func.attr in ("claim", "observe", "on_real")):
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise ValueError(f"{path.name}: a claim's name must be a string literal: {ast.unparse(node)}")
            op = node.args[2].value if len(node.args) > 3 and isinstance(node.args[2], ast.Constant) else None
            out.append({"function": node.func.attr, "name": first.value, "op": op,
                        "threshold": _constant(node.args[3]) if len(node.args) > 3 else None,
                        "precondition": any(k.arg == "precondition" and isinstance(k.value, ast.Constant)
                                            and k.value.value for k in node.keywords)})
    return out


def _constant(node: ast.expr) -> float | None:
    """The value of a constant arithmetic expression (``0.5``, ``1 / 3``), else None."""
    if all(isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop)) for n in ast.walk(node)):
        return float(eval(compile(ast.Expression(node), "<threshold>", "eval"), {"__builtins__": {}}))
    return None


def rejudge(rows: list[dict], notebooks: list[Path]) -> list[dict]:
    """The recorded statistics judged again by the notebooks' claims as they are now (kind, op and a constant
    threshold), so that a threshold moved after the sweep, or a claim turned into an observation, is read from the
    notebook rather than from the run that recorded it."""
    now = {(p.stem, c["name"]): c for p in notebooks for c in notebook_claims(p)}
    out = []
    for r in rows:
        c = now.get((r["notebook"], r["claim"]))
        if c is not None and r["statistic"] is not None:
            kind = ("observed" if c["function"] in ("observe", "on_real") else
                    "precondition" if c["precondition"] else "finding")
            op = c["op"] if kind != "observed" else None
            threshold = (c["threshold"] if c["threshold"] is not None else r["threshold"]) if op else None
            holds = True if op is None else (not math.isnan(r["statistic"]) and claims.OPS[op](r["statistic"],
                                                                                                threshold))
            r = {**r, "kind": kind, "op": op, "threshold": threshold, "holds": holds}
        out.append(r)
    return out


def worst(op: str | None, values: list[float]) -> float:
    """The least favourable statistic for a comparison (the smallest for a lower bound); NaN counts as worst."""
    if any(math.isnan(v) for v in values):
        return float("nan")
    return min(values) if op in (">", ">=") else max(values)


def summarise(rows: list[dict]) -> list[dict]:
    """One line per claim (notebook, name, subject) over the accepted seeds: the statistic per seed, the worst,
    on how many seeds it held, and whether its threshold leaves room (:func:`interp.claims.margin_ok`)."""
    accepted = sorted({r["seed"] for r in rows if r["accepted"]})
    rows = [r for r in rows if r.get("kind") != "verdict"]  # verdicts: papers(), not statistics
    keys = list(dict.fromkeys((r["notebook"], r["claim"], r["subject"]) for r in rows if r["accepted"]))
    out = []
    for key in keys:
        mine = [r for r in rows if r["accepted"] and (r["notebook"], r["claim"], r["subject"]) == key]
        first = mine[0]
        by_seed = {r["seed"]: r["statistic"] for r in mine}
        values = [v for v in by_seed.values() if v is not None]
        line = {"notebook": key[0], "claim": key[1], "subject": key[2], "kind": first["kind"], "op": first["op"],
                "threshold": first["threshold"], "by_seed": by_seed, "seeds": len(by_seed),
                "missing": [s for s in accepted if s not in by_seed],
                "held": sum(bool(r["holds"]) for r in mine)}
        if values:
            line["worst"] = worst(first["op"], values)
            line["median"] = statistics.median(values)
            line["margin_ok"] = (first["op"] is not None and not math.isnan(line["worst"])
                                 and claims.margin_ok(first["op"], line["worst"], first["threshold"]))
        out.append(line)
    return out


def format_txt(rows: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in rows})
    accepted = sorted({r["seed"] for r in rows if r["accepted"]})
    failed = [r for r in rows if not r["accepted"]]
    libs = ", ".join(f"{lib} {version(lib)}" for lib in ("torch", "transformers", "trl"))
    lines = [f"# Every notebook claim on every seed's checked build ({platform.machine()}, {libs}; {date.today()}).",
             f"# Seeds tried: {seeds}; accepted builds: {accepted} "
             f"({sum(s not in TUNED_SEEDS for s in accepted)} of them from seeds the recipe was never tuned on, "
             ">= 10).",
             "# kind: finding (asserted), precondition (the build's targets guarantee it), observed (shown, not"
             " asserted).",
             "# worst: the least favourable accepted seed; held: seeds where the claim held; room: the threshold is no"
             f" tighter than {claims.MARGIN:.0%} of the worst seed's statistic (interp.claims.margin_ok).", ""]
    for r in failed:
        said = r["error"].splitlines()
        lines.append(f"# seed {r['seed']}: build rejected: {said[0]}" + (f" ... {said[-1]}" if len(said) > 1 else ""))
    head = f"{'notebook':<24} {'claim':<58} {'subject':<18} {'kind':<12} {'test':>10} " + " ".join(
        f"{'s' + str(s):>7}" for s in accepted) + f" {'worst':>8} {'held':>6} room"
    lines += ["", head, "-" * len(head)]
    for line in summarise(rows):
        test = f"{line['op']} {line['threshold']:g}" if line["op"] else "-"
        cells = " ".join(f"{line['by_seed'][s]:>7.3g}" if line["by_seed"].get(s) is not None else f"{'-':>7}"
                         for s in accepted)
        room = "" if line["op"] is None else "-" if line["kind"] == "precondition" else (
            "yes" if line.get("margin_ok") else "NO")
        lines.append(f"{line['notebook'] or '':<24.24} {line['claim']:<58.58} {line['subject'] or '':<18.18} "
                     f"{line['kind'] or 'error':<12} {test:>10} {cells} {line.get('worst', float('nan')):>8.3g} "
                     f"{line['held']:>3}/{line['seeds']:<2} {room}")
    found = papers(rows)
    if found:
        lines += ["", "# Where the notebooks' findings stand against the papers (interp.claims.verdict), over the "
                  "accepted seeds:", ""]
        lines += [f"{notebook:<24.24} {paper}: {outcomes}" for notebook, paper, outcomes in found]
    return "\n".join(lines) + "\n"


def papers(rows: list[dict]) -> list[tuple[str, str, str]]:
    """``(notebook, "paper: finding", "agrees on 6 seeds, cannot test on 2")``: each verdict's outcomes counted over
    the accepted seeds."""
    verdicts = [r for r in rows if r.get("kind") == "verdict" and r["accepted"]]
    out = []
    for notebook, claim in dict.fromkeys((r["notebook"], r["claim"]) for r in verdicts):
        counts = Counter(r["outcome"] for r in verdicts if (r["notebook"], r["claim"]) == (notebook, claim))
        out.append((notebook, claim, ", ".join(f"{o} on {n} seed{'s' if n > 1 else ''}" for o, n in counts.items())))
    return out


def rerun(rows: list[dict], chosen: list[Path], zoos: Path, jsonl: Path, txt: Path,
          seeds: list[int] | None = None) -> list[dict]:
    """The ``chosen`` notebooks' rows replaced, seed by seed, by a new run on each accepted seed's zoo (those of
    ``seeds`` alone, when given; rebuilt from its seed when it is not kept); the table is rewritten after each seed,
    so a stopped rerun leaves every seed's rows whole (old or new)."""
    stems = {n.stem for n in chosen}
    for seed in sorted({r["seed"] for r in rows if r["accepted"] and (seeds is None or r["seed"] in seeds)}):
        print(f"seed {seed}: rerunning {', '.join(sorted(stems))} ...", file=sys.stderr, flush=True)
        zoo_dir, _ = build(seed, zoos)
        new = run_notebooks(seed, zoo_dir, chosen)
        rows = [r for r in rows if not (r["seed"] == seed and r["notebook"] in stems)] + new
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        txt.write_text(format_txt(rows))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+",
                   help=f"seeds to build and run (default {DEFAULT_SEEDS}); with --rerun, the accepted seeds to rerun "
                        "on (default: every one)")
    p.add_argument("--zoos", type=Path, default=Path(tempfile.gettempdir()) / "interp-claims",
                   help="one zoo per seed is built (or reused) in ZOOS/seed-N")
    p.add_argument("--jsonl", type=Path, default=RESULTS / "claims-cpu.jsonl")
    p.add_argument("--txt", type=Path, default=RESULTS / "claims-cpu.txt")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--build-only", action="store_true", help="build the zoos; record only failed builds")
    p.add_argument("--figures", type=Path, help="keep each seed's figures in FIGURES/seed-N")
    p.add_argument("--txt-only", action="store_true", help="rewrite --txt from --jsonl")
    p.add_argument("--rejudge", action="store_true",
                   help="judge the recorded statistics again by the notebooks' claims as they are now (after a "
                        "threshold moved or a claim became an observation), rewriting --jsonl and --txt")
    p.add_argument("--rerun", nargs="+", metavar="NOTEBOOK",
                   help="run these notebooks (by stem) again on every accepted seed's zoo (those of --seeds, when "
                        "given) and replace their rows, one seed at a time")
    args = p.parse_args()
    rows = claims.read_table(args.jsonl)
    notebooks = sorted(args.notebooks.glob("*.ipynb"))
    if not notebooks:
        p.error(f"no notebooks in {args.notebooks}")
    if args.rerun:
        chosen = [n for n in notebooks if n.stem in args.rerun]
        if len(chosen) != len(set(args.rerun)):
            unknown = sorted(set(args.rerun) - {n.stem for n in chosen})
            p.error(f"--rerun names notebooks not in {args.notebooks}: {unknown}")
        rows = rerun(rows, chosen, args.zoos, args.jsonl, args.txt, args.seeds)
    if not args.txt_only and not (args.rerun and args.seeds):
        for seed in args.seeds or DEFAULT_SEEDS:
            if any(r["seed"] == seed for r in rows):
                continue
            print(f"seed {seed}: building (checked, one attempt) ...", file=sys.stderr, flush=True)
            zoo_dir, new = build(seed, args.zoos)
            if zoo_dir is not None and not args.build_only:
                new = run_notebooks(seed, zoo_dir, notebooks, args.figures / f"seed-{seed}" if args.figures else None)
            if new:
                rows += new
                with args.jsonl.open("a") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in new))
                args.txt.write_text(format_txt(rows))
    if args.rejudge:
        rows = rejudge(rows, notebooks)
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if rows:
        args.txt.write_text(format_txt(rows))
        print(args.txt.read_text())


if __name__ == "__main__":
    main()
