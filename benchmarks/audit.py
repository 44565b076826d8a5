"""The auditing benchmark (issue 32): planted organisms with cards on some zoos, every method of
:data:`interp.bench.methods.METHODS` on each, graded without a judge; a leaderboard and its figure.

Each zoo's ``sft`` organism is the control; the organisms (:mod:`interp.bench.plants`) are built under ``--root``
(seconds each) and kept. Rows go to ``benchmarks/results/audit-cpu.jsonl`` as each finishes (a rerun resumes);
the leaderboard to ``audit-cpu.txt`` and ``audit-cpu.png``. Cost on this 2-core CPU: 3-6 s to plant an organism
and 9 s on average to run the five methods on it, about 2.5 minutes a zoo (8 organisms).

    python benchmarks/audit.py /tmp/claims7/seed-1 /tmp/claims7/seed-2 ...   # zoos built by benchmarks/claims.py
    python benchmarks/audit.py --txt-only                                   # the leaderboard from the rows
    python benchmarks/audit.py --real --methods weight_diff adl diff_mining amplification
        # SmolLM2-135M-Instruct's 3 organisms: about 5 minutes each to plant, 11 to audit -> audit-real-cpu.*
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.bench import plants, realplants, run
from interp.bench.methods import METHODS

RESULTS = Path(__file__).parent / "results" / "audit-cpu"
REAL_RESULTS = Path(__file__).parent / "results" / "audit-real-cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zoos", nargs="*", type=Path, help="zoo folders (each with sft/ and zoo.json)")
    p.add_argument("--root", type=Path, default=Path("/tmp/bench"), help="where the planted organisms are kept")
    p.add_argument("--organisms", nargs="+", default=list(plants.PLANTS), choices=list(plants.PLANTS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--txt-only", action="store_true", help="only rewrite the leaderboard from the rows")
    p.add_argument("--real", action="store_true", help="SmolLM2-135M-Instruct's plants (interp.bench.realplants)")
    args = p.parse_args()
    if args.real:
        return real(args)
    for zoo in args.zoos:
        if not (zoo / "sft").is_dir() or not (zoo / "zoo.json").is_file():
            p.error(f"{zoo} is not a zoo folder (no sft/ or zoo.json): build one with benchmarks/claims.py")
    jsonl = RESULTS.with_suffix(".jsonl")
    rows = run.read_rows(jsonl) if args.txt_only else run.audit(args.zoos, args.root, jsonl,
                                                                 organisms=args.organisms, methods=args.methods)
    table = run.leaderboard(rows)
    RESULTS.with_suffix(".txt").write_text(table + "\n")
    run.leaderboard_figure(rows).savefig(RESULTS.with_suffix(".png"), dpi=130)
    print(table)


def real(args) -> None:
    from interp import realmodels

    jsonl = REAL_RESULTS.with_suffix(".jsonl")
    if not args.txt_only:
        control, root = realmodels.smollm2(), args.root / "smollm2"
        print(f"building {len(realplants.PLANTS)} organisms on SmolLM2-135M-Instruct (about 5 minutes each), then "
              f"{len(args.methods)} methods on each (diff mining about 3 minutes, amplification 8, layer swap more)")
        entries = [("smollm2", name, control, realplants.build_real_plant(name, root / name))
                   for name in realplants.PLANTS]
        run.audit_pairs(entries, jsonl, realplants.corpus(), realplants.candidates(), methods=args.methods)
    rows = run.read_rows(jsonl)
    table = run.leaderboard(rows)
    REAL_RESULTS.with_suffix(".txt").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
