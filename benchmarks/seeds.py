"""How often does the recipe meet the organisms' targets? Build the zoo from several seeds (unchecked, so
every seed is measured) and measure the targets of each build (:mod:`interp.organisms.targets`):
behaviour of base, sft, dpo and rl, in every aligned organism a refusal direction that passes
Arditi et al.'s filters, whose ablation and addition move train refusal as far as the targets ask,
and the reward model's accuracy (one comment line per seed).

One row per seed and organism; a last line counts the seeds whose build meets every target. Builds
already complete under ``--out`` are reused, so an interrupted sweep picks up where it stopped.
About 2.5 minutes per seed on a 2-core CPU. ``--jsonl`` also writes the rows (every split's refusal
rate included); ``--summary`` turns such a file into the README's table of medians and ranges.

    python benchmarks/seeds.py [--seeds 0 1 2] [--out DIR] [--jsonl ROWS] > benchmarks/results/seeds-cpu.txt
    python benchmarks/seeds.py --summary benchmarks/results/seeds-cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from importlib.metadata import version
from pathlib import Path

from interp.organisms import targets, world, zoo


def summary(rows: list[dict], default_seed: int = 0) -> str:
    """A markdown table: each organism's refusal per split, as the median and range over the seeds, and the
    default seed's build.

    >>> rows = [{"seed": s, "organism": "sft", "refusal_bait": r} for s, r in ((0, 0.5), (1, 0.25), (2, 1.0))]
    >>> print(summary(rows))
    | split | sft: median (range) over seeds 0-2 | sft, seed 0 |
    |---|---:|---:|
    | bait | 50% (25%-100%) | 50% |
    """
    organisms = list(dict.fromkeys(r["organism"] for r in rows))
    splits = [s for s in world.SPLITS if f"refusal_{s}" in rows[0]]
    seeds = sorted({r["seed"] for r in rows})
    span = f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else f"seeds {seeds}"
    head = ["split"] + [c for o in organisms for c in (f"{o}: median (range) over {span}", f"{o}, seed {default_seed}")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for split in splits:
        cells = [split.replace("_", " ")]
        for o in organisms:
            rates = [r[f"refusal_{split}"] for r in rows if r["organism"] == o]
            default = [r[f"refusal_{split}"] for r in rows if r["organism"] == o and r["seed"] == default_seed]
            cells.append(f"{statistics.median(rates):.0%} ({min(rates):.0%}-{max(rates):.0%})"
                         if min(rates) != max(rates) else f"{rates[0]:.0%} (all)")
            cells.append(f"{default[0]:.0%}" if default else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recorded(zoo_dir: Path) -> targets.TargetCheck:
    """The targets a checked build measured and wrote into its ``zoo.json``."""
    card = zoo.read_zoo_card(zoo_dir)
    if not card.get("targets"):
        raise ValueError(f"{zoo_dir} was built unchecked: its zoo.json holds no targets")
    fields = set(targets.OrganismCheck.__dataclass_fields__) - {"refusal", "misses"}
    checks = tuple(targets.OrganismCheck(**{k: v for k, v in row.items() if k in fields},
                                         refusal={s: row[f"refusal_{s}"] for s in world.SPLITS},
                                         misses=tuple(m for m in row["misses"].split("; ") if m))
                   for row in card["targets"])
    return targets.TargetCheck(card["seed"], checks, card["reward_targets"],
                               tuple(targets.reward_misses(card["reward_targets"])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "interp-seeds",
                   help="one zoo per seed is built (or reused) in OUT/seed-N")
    p.add_argument("--jsonl", type=Path, help="also write the rows here, one JSON object per line")
    p.add_argument("--summary", type=Path, metavar="ROWS", help="print the median/range table of a --jsonl file")
    p.add_argument("--default-seed", type=int, default=0,
                   help="the seed the default build is made from, beside the ranges (worlds 6, 7: 1; 0 is rejected)")
    p.add_argument("--recorded", action="store_true",
                   help="read each zoo's targets from the zoo.json its checked build wrote (benchmarks/claims.py's "
                        "zoos) instead of measuring them again; seeds without a complete zoo are skipped")
    args = p.parse_args()
    if args.summary:
        print(summary([json.loads(line) for line in args.summary.read_text().splitlines()], args.default_seed))
        return

    libs = ", ".join(f"{lib} {version(lib)}" for lib in ("torch", "transformers", "trl"))
    print(f"# organisms' targets per seed ({platform.machine()}, {libs}); refusal: greedy generations;\n"
          "# site: layer@position of the selected direction; kl: harmless KL under its ablation;\n"
          "# ablated: harmful-train refusal with it ablated; added: harmless-train refusal with it added")
    rows, met = [], []
    for seed in args.seeds:
        if args.recorded:
            if not zoo.is_complete(args.out / f"seed-{seed}"):
                continue
            measured = recorded(args.out / f"seed-{seed}")
        else:
            zoo_dir = zoo.build(args.out / f"seed-{seed}", config=zoo.BuildConfig(seed=seed), check=False)
            measured = targets.check(zoo_dir)
        rows += measured.rows()
        met += [seed] if measured.ok else []
        table = targets.format_rows(measured.rows())
        print(table if len(rows) == len(measured.rows()) else table.split("\n", 1)[1], flush=True)
        print("#      reward model prefers the right reply: " + ", ".join(
            f"{split} {share:.0%}" for split, share in measured.reward_accuracy.items())
              + (f"  MISSES: {'; '.join(measured.reward_misses)}" if measured.reward_misses else ""), flush=True)
        if args.jsonl:
            args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = sorted({row["seed"] for row in rows})
    print(f"# {len(met)} of {len(seen)} seeds {'read' if args.recorded else 'built'} meet every target: {met}")


if __name__ == "__main__":
    main()
