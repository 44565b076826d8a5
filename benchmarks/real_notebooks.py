"""The notebooks on a real pair, their claims set beside the organisms' (issue 30, Deliver 3).

Runs every notebook that answers on a real pair (its metadata says so; ``interp figures --pair`` runs the same set)
on one real pair, built first when it is not, with the figures in ``figures/real/<pair>/`` and every claim recorded, not
raised (:func:`interp.claims.studying`). Writes one row per claim to ``--jsonl`` (with the build's folder name,
which names its recipe, and the notebook's seconds) and the table to ``--txt``: each claim's statistic on the real
pair beside the organisms' range over the seed table, and whether the organisms' threshold holds on the real pair.
Resumable: a notebook already recorded for this build is not run again.

    python benchmarks/real_notebooks.py --pair real:smollm2-safety
    python benchmarks/real_notebooks.py --pair real:smollm2-safety --only 05_refusal_direction --executed /tmp/run
    python benchmarks/real_notebooks.py --txt-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from interp import claims, matmul, pairs
from interp.figures import NotebookError, pair_kinds, run_notebook
from interp.plotting import FIGURES_ENV

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run(spec: str, notebooks: list[Path], figures: Path, jsonl: Path, executed: Path | None = None) -> None:
    built = pairs.checkpoints(spec)[1].parent.name  # built first when it is not
    products = matmul.name(matmul.resolve(pairs.matmul(spec), "cpu"))  # what the notebooks' pairs multiply in
    done = {(r["build"], r["notebook"], r.get("matmul", "float32")) for r in claims.read_table(jsonl)}
    os.environ.update({FIGURES_ENV: str(figures), pairs.PAIR_ENV: spec})
    for path in notebooks:
        if (built, path.stem, products) in done:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            recorded = Path(tmp) / "claims.jsonl"
            os.environ[claims.FILE_ENV] = str(recorded)
            print(f"{spec} ({built}): {path.name} ...", end=" ", file=sys.stderr, flush=True)
            start, error = time.time(), None
            try:
                run_notebook(path, executed=None if executed is None else executed / built / path.name)
            except NotebookError as e:
                error = str(e)
            seconds = round(time.time() - start, 1)
            print(f"{seconds:.0f} s" if error is None else f"FAILED: {error}", file=sys.stderr, flush=True)
            rows = claims.read_table(recorded) if error is None else [
                {"claim": f"{path.stem} runs", "holds": False, "error": error}]
        with jsonl.open("a") as f:
            f.write("".join(json.dumps({"build": built, "date": str(date.today()), "seconds": seconds,
                                        "matmul": products, **r, "notebook": path.stem}) + "\n" for r in rows))


def format_txt(rows: list[dict]) -> str:
    lines = ["# Each notebook's claims on a real pair (one build: no seed spread), beside the organisms' range over "
             "the accepted builds of the seed table (benchmarks/results/claims-cpu.txt).",
             "# holds: the organisms' threshold judged on the real pair; nothing is asserted on a real pair.", ""]
    for build, products in dict.fromkeys((r["build"], r.get("matmul", "float32")) for r in rows):
        mine = [r for r in rows if r["build"] == build and r.get("matmul", "float32") == products]
        seconds = {r["notebook"]: r["seconds"] for r in mine}
        lines.append(f"## {mine[0].get('pair') or build}: {build} ({mine[0]['date']}; linear products {products}; "
                     f"notebooks ({sum(seconds.values()):.0f} s): "
                     + ", ".join(f"{n} {s:.0f} s" for n, s in seconds.items()) + ")")
        head = f"{'claim':<66} {'subject':<8} {'kind':<9} {'test':>8} {'real':>9} {'holds':>5}   organisms (seeds)"
        lines += [head, "-" * len(head)]
        for r in mine:
            if r.get("kind") == "verdict":
                continue
            if r.get("error"):
                lines.append(f"{r['claim']:<66} FAILED: {r['error'][:120]}")
                continue
            test = f"{r['op']} {r['threshold']:g}" if r.get("op") else "-"
            ranged = claims.across_seeds(r["claim"], r["subject"])
            organisms = f"{ranged.low:.3g} to {ranged.high:.3g} ({len(ranged.seeds)})" if ranged else "-"
            holds = ("yes" if r["holds"] else "NO") if r.get("op") else ""
            lines.append(f"{r['claim']:<66.66} {r['subject'] or '':<8.8} {r['kind']:<9} {test:>8} "
                         f"{r['statistic']:>9.3g} {holds:>5}   {organisms}")
        verdicts = [r for r in mine if r.get("kind") == "verdict"]
        if verdicts:
            lines += ["", "Where its findings stand against the papers (interp.claims.verdict):"]
            lines += [f"  {r['notebook']}: {r['claim']}: {r['outcome'].upper()}, {r['because']}" for r in verdicts]
        lines.append("")
    return "\n".join(lines)


def precision_txt(rows: list[dict]) -> str:
    """Each build run with float32 and with bfloat16 products: how far each claim moved, and any judged otherwise."""
    lines = ["# One build's claims with its linear products in float32 and in bfloat16 (interp.matmul), side by side:",
             "# the claims that moved by more than 0.01 (or 1% of their size, where that is larger), and every "
             "threshold judged otherwise.",
             ""]
    for build in dict.fromkeys(r["build"] for r in rows):
        runs = {m: {(r["notebook"], r["claim"], r.get("subject")): r for r in rows
                    if r["build"] == build and r.get("matmul", "float32") == m and r.get("kind") != "verdict"
                    and not r.get("error")} for m in ("float32", "bfloat16")}
        common = [k for k in runs["float32"] if k in runs["bfloat16"]]
        if not common:
            continue
        moved = []
        for k in common:
            a, b = runs["float32"][k]["statistic"], runs["bfloat16"][k]["statistic"]
            if not (a != a and b != b) and not abs(a - b) <= 0.01 * max(1.0, abs(a)):
                moved.append((k, a, b))
        judged = [k for k in common if runs["float32"][k].get("holds") != runs["bfloat16"][k].get("holds")]
        verdicts = {m: {(r["notebook"], r["claim"]): r["outcome"] for r in rows if r["build"] == build
                        and r.get("matmul", "float32") == m and r.get("kind") == "verdict"} for m in runs}
        shared = [k for k in verdicts["float32"] if k in verdicts["bfloat16"]]
        lines += [f"## {build}: {len(common)} claims in both runs; {len(common) - len(moved)} within that; "
                  f"{len(judged)} judged otherwise; verdicts in both: {len(shared)}, outcome changed: "
                  f"{sum(verdicts['float32'][k] != verdicts['bfloat16'][k] for k in shared)}",
                  f"{'claim':<78} {'subject':<10} {'float32':>9} {'bfloat16':>9} {'judged':>8}"]
        for (notebook, claim, subject), a, b in moved:
            mark = "CHANGED" if (notebook, claim, subject) in judged else ""
            lines.append(f"{claim:<78.78} {subject or '':<10.10} {a:>9.3g} {b:>9.3g} {mark:>8}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="real:smollm2-safety")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--figures", type=Path, default=ROOT / "figures", help="a real pair's go to FIGURES/real/<pair>")
    p.add_argument("--jsonl", type=Path, default=RESULTS / "claims-real.jsonl")
    p.add_argument("--txt", type=Path, default=RESULTS / "claims-real.txt")
    p.add_argument("--txt-only", action="store_true", help="rewrite --txt (and --precision-txt) from --jsonl")
    p.add_argument("--precision-txt", type=Path, default=RESULTS / "claims-real-precision.txt",
                   help="builds run with both products' dtypes: what moved")
    p.add_argument("--executed", type=Path, help="write each executed notebook to EXECUTED/<build>/, for reading "
                                                 "what its prose rendered")
    p.add_argument("--only", nargs="+", metavar="STEM", help="run only these notebooks (e.g. 02_weights)")
    args = p.parse_args()
    spec = pairs.parse(args.pair)
    if spec.kind != "real":
        p.error(f"{args.pair} is not a real pair; the organisms' claims are benchmarks/claims.py's")
    if not args.txt_only:
        notebooks = [n for n in sorted(args.notebooks.glob("*.ipynb")) if "real" in pair_kinds(n)
                     and (args.only is None or n.stem in args.only)]
        unknown = set(args.only or ()) - {n.stem for n in notebooks}
        if unknown:
            p.error(f"--only {sorted(unknown)}: not notebooks that answer on a real pair")
        run(spec.label, notebooks, args.figures.resolve(), args.jsonl, args.executed)
    rows = claims.read_table(args.jsonl)
    args.txt.write_text(format_txt(rows))
    args.precision_txt.write_text(precision_txt(rows))
    print(args.txt.read_text())
    print(args.precision_txt.read_text())


if __name__ == "__main__":
    main()
