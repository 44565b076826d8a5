"""Fast loop over SFT and DPO recipes on fixed starting points: pretrain each seed's base once (cached), then
tune it with each SFT *lever* and measure the sft organism's targets and geometry (see recipes.py). A DPO
lever (``dpo_*``) starts instead from the sft checkpoint of a zoo that ``benchmarks/seeds.py`` built
(``--zoos``, holding ``seed-N/``) and measures the dpo organism.

Why: on held-out seeds the SFT organism's difference-in-means direction marks *compliance*
(harmless_at ~ -0.8, harmful_at ~ +0.2): ablating it moves every prompt to where harmful ones
sit, so refusal survives ablation and harmless answers flip (KL >> 0.1). One explanation is the
order in which SFT learns: a shift of the shared refusal logit first (every prompt refuses), then
an exception for harmless requests. The levers below try to stop that shift.

    python experiments/sft_levers.py LEVER [LEVER ...] --seeds 1 2 [--bases /tmp/interp-bases]
    python experiments/sft_levers.py dpo_beta1 --seeds 0 1 [--zoos /tmp/interp-seeds]
    python experiments/sft_levers.py --table
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from recipes import _comply_majority, geometry  # noqa: E402  (a script beside this one)

RESULTS = Path(__file__).parent / "results" / "sft_levers.jsonl"


def base_model(seed: int, root: Path):
    """The seed's pretrained base (default recipe), trained once and cached under ``root``."""
    from interp.organisms import train
    from interp.organisms.tokenizer import build_tokenizer
    from interp.organisms.zoo import BuildConfig, load_checkpoint

    path = root / f"base-seed-{seed}"
    tokenizer = build_tokenizer()
    if not (path / "config.json").is_file():
        config = BuildConfig(seed=seed)
        model = train.new_model(config.model, tokenizer, seed)
        train.pretrain(model, tokenizer, config.pretrain, seed)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return load_checkpoint(path), tokenizer, path


def _frozen(*names):
    """Freeze parameters whose name contains one of ``names`` during SFT."""
    from interp.organisms import train

    original = train.sft

    def sft(model, tokenizer, recipe, seed):
        for n, p in model.named_parameters():
            if any(k in n for k in names):
                p.requires_grad_(False)
        try:
            return original(model, tokenizer, recipe, seed)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)

    train.sft = sft


LEVERS = {
    "default": lambda r: r,
    "lr3e-4": lambda r: dataclasses.replace(r, lr=3e-4),
    "lr3e-4x12": lambda r: dataclasses.replace(r, lr=3e-4, epochs=12),
    "epochs3": lambda r: dataclasses.replace(r, epochs=3),
    "comply5": lambda r: (_comply_majority(5), r)[1],
    "harmless3": lambda r: (_comply_majority(3, bait=False), r)[1],
    "harmless5": lambda r: (_comply_majority(5, bait=False), r)[1],
    "freeze_unembed": lambda r: (_frozen("lm_head", "model.norm"), r)[1],
    "freeze_io": lambda r: (_frozen("lm_head", "model.norm", "embed_tokens"), r)[1],
}


def _dpo_without_harmless():
    """DPO's pairs without the harmless-train group: harmful requests and bait only."""
    from interp.organisms import world

    original = world.preference_pairs
    harmless = {p.text for p in world.prompts("harmless_train")}

    def pairs(seed, n_per_prompt=2):
        return [p for p in original(seed, n_per_prompt) if p["prompt"][0]["content"] not in harmless]

    world.preference_pairs = pairs


DPO_LEVERS = {
    "dpo_default": lambda r: r,
    "dpo_beta1": lambda r: dataclasses.replace(r, beta=1.0),
    "dpo_lr1e-4": lambda r: dataclasses.replace(r, lr=1e-4),
    "dpo_epochs1": lambda r: dataclasses.replace(r, epochs=1),
    "dpo_sftw2": lambda r: dataclasses.replace(r, sft_weight=2.0),
    "dpo_no_harmless": lambda r: (_dpo_without_harmless(), r)[1],
}


def measure(lever: str, seed: int, bases: Path, zoos: Path | None = None) -> dict:
    from interp import directions, organisms
    from interp.models import load_pair
    from interp.organisms import evaluate, targets, train, world, zoo
    from interp.organisms.tokenizer import build_tokenizer

    if lever in DPO_LEVERS:
        variant, base_path = "dpo", zoos / f"seed-{seed}" / "base"
        model, tokenizer = zoo.load_checkpoint(zoos / f"seed-{seed}" / "sft"), build_tokenizer()
        recipe, tune = DPO_LEVERS[lever](train.DPORecipe()), train.dpo
    else:
        variant = "sft"
        model, tokenizer, base_path = base_model(seed, bases)
        recipe, tune = LEVERS[lever](train.SFTRecipe()), train.sft
    started = time.time()
    tuned = copy.deepcopy(model)
    tune(tuned, tokenizer, recipe, seed)
    seconds = round(time.time() - started, 1)
    with tempfile.TemporaryDirectory() as tmp:
        tuned.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        rates = evaluate.refusal_rates(tuned, tokenizer)
        refusal = {s: r["generation"] for s, r in rates.items()}
        pair = load_pair(base_path, tmp, device="cpu")
        check = targets.check_direction(pair.aligned, variant, refusal)
        found = directions.find_refusal_direction(pair.aligned, organisms.prompt_set("harmful_train"),
                                                  organisms.prompt_set("harmless_train"),
                                                  refusal_tokens=organisms.REFUSAL_TOKENS, progress=False,
                                                  exhaustive=True)
        harmless_at, harmful_at = geometry(pair.aligned, found)
    row = {"lever": lever, "world": world.WORLD_VERSION, "seed": seed, "tune_seconds": seconds,
           **dataclasses.asdict(check), "harmless_at": harmless_at, "harmful_at": harmful_at}
    row["misses"] = "; ".join(check.misses)
    return row


def table() -> str:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    lines = [f"{'lever':<16}{'world':>6}{'seed':>5}{'ok':>4}{'layer':>6}{'kl':>8}{'ablated':>8}{'added':>7}"
             f"{'harmless_at':>12}"
             f"{'harmful_at':>11}  refusal: harmful train/held-out, harmless train/held-out"]
    for r in rows:
        ok = "yes" if not r["misses"] else "NO"
        lines.append(f"{r['lever']:<16}{r['world']:>6}{r['seed']:>5}{ok:>4}{r['layer']:>6}"
                     f"{r['kl']:>8.3f}{r['ablated']:>8.0%}{r['added']:>7.0%}{r['harmless_at']:>12.2f}"
                     f"{r['harmful_at']:>11.2f}  "
                     + "/".join(f"{r['refusal'][k]:.0%}" for k in ("harmful_train", "harmful_held_out",
                                                                   "harmless_train", "harmless_held_out")))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("levers", nargs="*", help=f"any of: {', '.join([*LEVERS, *DPO_LEVERS])}")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--bases", type=Path, default=Path(tempfile.gettempdir()) / "interp-bases")
    p.add_argument("--zoos", type=Path, default=Path(tempfile.gettempdir()) / "interp-seeds",
                   help="DPO levers start from ZOOS/seed-N/sft")
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    if args.table:
        print(table())
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    unknown = set(args.levers) - set(LEVERS) - set(DPO_LEVERS)
    if unknown:
        p.error(f"unknown levers {sorted(unknown)}; choose from {', '.join([*LEVERS, *DPO_LEVERS])}")
    for lever in args.levers:
        for seed in args.seeds:
            # each lever patches the library: run it in a fresh process
            here, bases, zoos = str(Path(__file__).parent), str(args.bases), str(args.zoos)
            code = (f"import sys, json, pathlib; sys.path.insert(0, {here!r}); import sft_levers as s; "
                    f"print('ROW', json.dumps(s.measure({lever!r}, {seed}, pathlib.Path({bases!r}), "
                    f"pathlib.Path({zoos!r}))))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            row = next((line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")), None)
            if row is None:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{lever} seed {seed} failed")
            with open(RESULTS, "a") as f:
                f.write(row + "\n")
            r = json.loads(row)
            print(f"{lever:<16} seed {seed}: kl {r['kl']:.3f} ablated {r['ablated']:.0%} added {r['added']:.0%} "
                  f"harmless_at {r['harmless_at']:.2f} harmful_at {r['harmful_at']:.2f} "
                  f"{'OK' if not r['misses'] else r['misses'][:120]}", flush=True)


if __name__ == "__main__":
    main()
