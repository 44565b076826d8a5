"""Issue 20: a BatchTopK crosscoder and a difference-SAE on every aligned organism of each zoo, at two layers.

Notebook 08 asserts its claims on one organism (dpo) at one layer (4 of 6) on the seed-0 and seed-2 zoos, with one
dictionary training seed; this runs the same recipe (``organisms.dictionary_texts()``, 1024 latents, k = 16, 2000
steps) on sft, dpo and rl at layer 4 with training seeds 0 and 1, and on dpo at the refusal direction's usual layer
(2), and prints one row per (zoo, organism, layer, training seed, dictionary):

* the fit on held-back tokens (variance explained), the shares of crosscoder latents per tag, the highest relative norm;
* the latent that restores the most of the refusal gap when added to the base (held-out harmful requests): that
  share, what ablating it from the aligned model at the site closes, what projecting its direction out at every
  layer closes, its cosine with the refusal direction (difference in means at this layer), its latent-scaling
  ratios; how many latents restore >= 20%, and whether all of those pass latent scaling;
* what ablating all the checked latents together at the site closes.

    python experiments/dictionary_diffing.py ZOO [ZOO ...] > experiments/results/dictionary_diffing.txt
    python experiments/dictionary_diffing.py --append --only dpo:4:0 ZOO >> experiments/results/dictionary_diffing.txt
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from interp import dictionary, directions, organisms
from interp.dictionary import DictionaryConfig

RUNS = [(variant, 4, seed) for variant in organisms.ALIGNED_VARIANTS for seed in (0, 1)] + [("dpo", 2, 0)]
"""(organism, layer, dictionary training seed)."""


def measure(zoo_dir: Path, variant: str, layer: int, seed: int) -> list[dict]:
    config = DictionaryConfig(n_latents=1024, k=16, steps=2000, seed=seed)
    pair = organisms.load_pair(variant, zoo_dir=zoo_dir, device="cpu")
    texts = organisms.dictionary_texts()
    tokens = dictionary.paired_tokens(pair, texts, layer, prompt_format="raw", progress=False)
    train = organisms.prompt_set(["harmful_train", "harmless_train"])
    refusal = directions.direction_at(pair.aligned, train.where(label="harmful"), train.where(label="harmless"),
                                      layer=layer, position=-1).direction
    held_out = organisms.prompt_set("harmful_held_out")
    zoo_seed = json.loads((zoo_dir / "zoo.json").read_text())["seed"]
    rows = []
    for kind in ("crosscoder", "diff_sae"):
        started = time.perf_counter()
        d = dictionary.fit(pair, texts, layer, kind, config, prompt_format="raw", tokens=tokens, progress=False)
        check = dictionary.check_latents(pair, d, held_out, organisms.REFUSAL_TOKENS, tokens=tokens, direction=refusal)
        table, restoring = check.table, check.restoring
        best = table.drop(index="all").sort_values("addition_share", ascending=False).iloc[0]
        row = {"seed": zoo_seed, "organism": variant, "layer": layer, "training_seed": seed, "dictionary": kind,
               "fve": d.stats["fve"],
               "checked": len(table) - 1, "gap": round(check.effects.gap, 2), "best": int(best.name),
               "added": round(best.addition_share, 3), "ablated": round(best.ablation_share, 3),
               "direction_ablated": round(best.direction_ablation_share, 3), "cosine": round(best.cosine, 3),
               "restoring": len(restoring), "all_ablated": round(table.loc["all"].ablation_share, 3),
               "seconds": round(time.perf_counter() - started, 1)}
        if kind == "crosscoder":
            tags = d.tags()
            row.update({"shared": round(tags.count("shared") / d.n_latents, 3),
                        "aligned_only": tags.count("aligned-only"),
                        "max_relative_norm": round(d.relative_norms().max().item(), 3),
                        "nu_error": round(best.nu_error, 3), "nu_reconstruction": round(best.nu_reconstruction, 3),
                        "restoring_pass_scaling": bool(restoring) and check.restoring_pass_scaling})
        rows.append(row)
    return rows


def line(row: dict) -> str:
    fve = "/".join(f"{v:.3f}" for v in row["fve"].values())
    extra = (f" shared {row['shared']:.0%} aligned-only {row['aligned_only']} max-rel {row['max_relative_norm']:.2f}"
             f" nu {row['nu_error']:+.2f}/{row['nu_reconstruction']:+.2f} restoring-pass-scaling "
             f"{row['restoring_pass_scaling']}" if row["dictionary"] == "crosscoder" else "")
    return (f"seed {row['seed']} {row['organism']:<3} L{row['layer']} t{row['training_seed']} {row['dictionary']:<10} "
            f"fve {fve} | best {row['best']:>4}: added {row['added']:.2f} ablated {row['ablated']:.2f} direction "
            f"{row['direction_ablated']:.2f} cos {row['cosine']:.2f} | restoring>=0.2: {row['restoring']} of "
            f"{row['checked']} | all ablated {row['all_ablated']:.2f}{extra}")


def main(zoos: list[str], runs: list[tuple[str, int, int]], append: bool) -> None:
    torch.set_num_threads(2)
    results = Path(__file__).parent / "results" / "dictionary_diffing.jsonl"
    with results.open("a" if append else "w") as out:
        for zoo in zoos:
            for variant, layer, seed in runs:
                for row in measure(Path(zoo), variant, layer, seed):
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(line(row), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("zoos", nargs="+")
    parser.add_argument("--only", action="append", metavar="ORGANISM:LAYER:SEED", help="run only these (repeatable)")
    parser.add_argument("--append", action="store_true", help="add to the results instead of rewriting them")
    args = parser.parse_args()
    chosen = RUNS if not args.only else [(v, int(layer), int(seed)) for v, layer, seed in
                                         (spec.split(":") for spec in args.only)]
    main(args.zoos, chosen, args.append)
