"""Does the refusal direction survive a change of seed? Build the zoo from several seeds, then run
the refusal-direction search on both aligned organisms of each build.

The README's zoo card reports this for seeds 0-9 (about 5 minutes per seed on one CPU core): only
seeds 0 and 3 give both organisms a direction that passes the filters. Builds already complete
under ``--out`` are reused, so an interrupted sweep picks up where it stopped.

    python benchmarks/seeds.py [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from interp import directions, organisms
from interp.data import PromptSet
from interp.organisms import zoo

REFUSAL = ["sorry"]


def check(zoo_dir: Path, harmful: PromptSet, harmless: PromptSet) -> dict[str, str]:
    """One row per aligned organism: the selected direction and its effects on the train prompts."""
    rows = {}
    for variant in ("sft", "dpo"):
        pair = organisms.load_pair(variant, zoo_dir=zoo_dir, device="cpu")
        found = directions.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=REFUSAL,
                                                  progress=False)
        effects = directions.refusal_effects(pair.aligned, found, harmful, harmless, REFUSAL)
        kl = found.selected.kl
        rows[variant] = (f"L{found.layer} {'pass' if found.passed_filters else 'FAIL'} KL {kl:6.3f} "
                         f"ablate {effects['ablate']['harmful']:4.0%} add {effects['add']['harmless']:4.0%}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "interp-seeds",
                   help="one zoo per seed is built (or reused) in OUT/seed-N")
    args = p.parse_args()

    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    print("# refusal direction per seed: selected layer, filters, harmless KL under ablation, harmful refusal "
          "ablated, harmless refusal added (train prompts)")
    print(f"{'seed':>4}  {'sft':<44}  dpo")
    for seed in args.seeds:
        zoo_dir = zoo.build(args.out / f"seed-{seed}", config=zoo.BuildConfig(seed=seed))
        rows = check(zoo_dir, harmful, harmless)
        print(f"{seed:>4}  {rows['sft']:<44}  {rows['dpo']}", flush=True)


if __name__ == "__main__":
    main()
