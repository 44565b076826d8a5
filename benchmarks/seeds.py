"""How often does the recipe meet the organisms' targets? Build the zoo from several seeds (unchecked, so
every seed is measured) and measure the targets of each build (:mod:`interp.organisms.targets`):
behaviour of base, sft and dpo, and in both aligned organisms a refusal direction that passes
Arditi et al.'s filters, whose ablation and addition move train refusal as far as the targets ask.

One row per seed and organism; a last line counts the seeds whose build meets every target. Builds
already complete under ``--out`` are reused, so an interrupted sweep picks up where it stopped.
About 2 minutes per seed on a 2-core CPU.

    python benchmarks/seeds.py [--seeds 0 1 2] [--out DIR] > benchmarks/results/seeds-cpu.txt
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from importlib.metadata import version
from pathlib import Path

from interp.organisms import targets, zoo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "interp-seeds",
                   help="one zoo per seed is built (or reused) in OUT/seed-N")
    args = p.parse_args()

    libs = ", ".join(f"{lib} {version(lib)}" for lib in ("torch", "transformers", "trl"))
    print(f"# organisms' targets per seed ({platform.machine()}, {libs}); refusal: greedy generations;\n"
          "# site: layer@position of the selected direction; kl: harmless KL under its ablation;\n"
          "# ablated: harmful-train refusal with it ablated; added: harmless-train refusal with it added")
    rows, met = [], []
    for seed in args.seeds:
        zoo_dir = zoo.build(args.out / f"seed-{seed}", config=zoo.BuildConfig(seed=seed), check=False)
        measured = targets.check(zoo_dir)
        rows += measured.rows()
        met += [seed] if measured.ok else []
        print(targets.format_rows(measured.rows()).split("\n", 1)[1] if len(rows) > 3 else
              targets.format_rows(measured.rows()), flush=True)
    print(f"# {len(met)} of {len(args.seeds)} seeds meet every target: {met}")


if __name__ == "__main__":
    main()
