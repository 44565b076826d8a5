"""How long the organism zoo takes to build, against the 5-minute budget on a 2-core CPU.

Builds the default zoo into a temporary directory (nothing is reused), prints the time of each
stage from the cards and the total, and the ratio to the budget. Run it on an otherwise idle
machine: the number is a measurement, not a test.

    python benchmarks/build.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from interp.organisms import zoo

BUDGET_SECONDS = 300


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = zoo.build(Path(tmp) / "zoo", config=zoo.BuildConfig(seed=args.seed))
        total = time.perf_counter() - start
        summary = json.loads((out / zoo.ZOO_CARD).read_text())
        for variant in zoo.VARIANTS:
            card = zoo.read_card(out, variant)
            print(f"{variant:5s} {card['method']:26s} steps {card['training']['steps']:5d}  "
                  f"final loss {card['training']['final_loss']:.4f}")
        print(summary["table"])
    print(f"build {total:.1f} s (budget {BUDGET_SECONDS} s): {total / BUDGET_SECONDS:.2f}x of the budget")


if __name__ == "__main__":
    main()
