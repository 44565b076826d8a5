"""The auditing benchmark (issue 32) as recorded in benchmarks/results/: ``interp bench`` (interp.bench.command) on the
8 builds of the claims table and on SmolLM2-135M-Instruct, rows and leaderboards written under results/.

Each zoo's ``sft`` organism is the control; the organisms (:mod:`interp.bench.plants`) are built under ``--root``
(seconds each) and kept. Rows go to ``benchmarks/results/audit-cpu.jsonl`` as each finishes (a rerun resumes);
the leaderboard to ``audit-cpu.txt`` and ``audit-cpu.png``. Cost on this 2-core CPU: about 6 s to plant an organism
(12 s for the spread rung) and 13 s to run the eight methods on it, about 3.5 minutes a zoo (10 organisms).

    python benchmarks/audit.py /tmp/claims7/seed-1 /tmp/claims7/seed-2 ...   # zoos built by benchmarks/claims.py
    python benchmarks/audit.py --txt-only                                   # the leaderboard from the rows
    python benchmarks/audit.py --real --methods weight_diff adl diff_mining amplification
        # SmolLM2-135M-Instruct's 5 organisms: about 5 minutes each to plant -> audit-real-cpu.*
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.bench import command, run

RESULTS = Path(__file__).parent / "results" / "audit-cpu"
REAL_RESULTS = Path(__file__).parent / "results" / "audit-real-cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zoos", nargs="*", type=Path, help="zoo folders (each with sft/ and zoo.json)")
    p.add_argument("--root", type=Path, default=Path("/tmp/bench"), help="where the planted organisms are kept")
    p.add_argument("--organisms", nargs="+")
    p.add_argument("--methods", nargs="+")
    p.add_argument("--txt-only", action="store_true", help="only rewrite the leaderboard from the rows")
    p.add_argument("--real", action="store_true", help="SmolLM2-135M-Instruct's plants (interp.bench.realplants)")
    args = p.parse_args()
    out = REAL_RESULTS if args.real else RESULTS
    if args.txt_only:
        print(command.write_leaderboard(run.read_rows(out.with_suffix(".jsonl")), out))
        return
    try:
        print(command.bench(args.zoos, root=args.root / "smollm2" if args.real else args.root, out=out,
                            organisms=args.organisms, methods=args.methods, real=args.real))
    except ValueError as error:  # a bad name or folder, said before anything runs
        p.error(str(error))


if __name__ == "__main__":
    main()
