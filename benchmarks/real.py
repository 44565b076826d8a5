"""The real pairs' slow tier: build each pair (cached), measure base, sft and dpo on the held-out splits of the
field's prompt sets, check the targets, and append one row per stage to ``benchmarks/results/real-cpu.jsonl``
(the replies beside it, for reading and hand checks); ``--txt`` renders the table in ``real-cpu.txt``.

A recipe variant is a run with ``--set field=value`` (``--set sft_lr=2e-5``): another recipe is another cached pair.
Each row holds the whole recipe and the build's code version (the table shows the fields that differ from today's
default; ``filled_in`` names fields added to the recipe after the row was written, filled in with their defaults), so
the table keeps the recipe's history; a pair, version and recipe already in the rows is skipped (the run
resumes). About 16 minutes per build and 5 per evaluation of its three stages on 2 idle cores.

    python benchmarks/real.py [--pairs smollm2-safety] [--set sft_lr=2e-5 ...]
    python benchmarks/real.py --txt > benchmarks/results/real-cpu.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
from pathlib import Path

import torch

from interp import realpairs
from interp.realpairs.build import VERSION, SafetyRecipe, pair_dir

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "real-cpu.jsonl"
REPLIES = RESULTS / "real"


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"--set: {value!r} is not a truth value (true, false, 1 or 0)")
    return value.lower() in ("true", "1")


def _recipe(pair: realpairs.RealPair, settings: list[str]) -> tuple[SafetyRecipe, dict]:
    changes = {}
    fields = {f.name: f.type for f in dataclasses.fields(SafetyRecipe)}
    for setting in settings:
        key, _, value = setting.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {setting}: the recipe has no field {key!r}; its fields are {sorted(fields)}")
        changes[key] = {"int": int, "float": float, "str": str, "bool": _bool}[fields[key]](value)
    return dataclasses.replace(pair.recipe, **changes), changes


def run(name: str, settings: list[str]) -> None:
    pair = realpairs.PAIRS[name]
    recipe, changes = _recipe(pair, settings)
    digest = pair_dir(name, recipe).name.rsplit("-", 1)[1]
    done = [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.is_file() else []
    if any(r["pair"] == name and r["version"] == VERSION and r["recipe"] == digest for r in done):
        print(f"{name} recipe {digest}: already in {ROWS}")
        return
    torch.set_num_threads(2)
    out = realpairs.build(name, recipe=recipe)  # trains, then measures every stage into the card
    card = json.loads((out / "card.json").read_text())
    for stage, measured in card["behaviour"].items():
        row = {"pair": name, "version": VERSION, "recipe": digest, "changes": changes,
               "fields": dataclasses.asdict(recipe), "stage": stage,
               **{f"refusal_{s}": m["refusal"] for s, m in measured.items()},
               **{f"n_{s}": m["n"] for s, m in measured.items()},
               "harmful_by_category": measured["harmful_test"]["by_category"],
               "misses": card["misses"].get(stage),
               "build_s": {k: card[k] for k in ("data_s", "sft_s", "dpo_s", "eval_s")} if stage == "base" else None,
               "train": card.get(stage), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__}
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print({k: v for k, v in row.items() if k.startswith("refusal_") or k in ("stage", "misses")})
    REPLIES.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "behaviour.json", REPLIES / f"{name}-{digest}.json")


def _against_default(row: dict) -> dict:
    """The fields of a row's recipe that differ from today's default (``changes`` is against the default of its day)."""
    default = dataclasses.asdict(realpairs.PAIRS[row["pair"]].recipe)
    return {k: v for k, v in row["fields"].items() if default.get(k) != v}


def txt() -> str:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    lines = ["# benchmarks/real.py: real pairs built by the project's recipe; refusal judged by interp.realpairs.judge",
             "# harmful = HarmBench + StrongREJECT test, harmless = Alpaca test, edgy = benign-but-edgy (over-refusal)",
             f"# targets: harmful >= {realpairs.MIN_HARMFUL_REFUSAL:.0%}, harmless <= "
             f"{realpairs.MAX_HARMLESS_REFUSAL:.0%}",
             f"{'pair':16} {'recipe':11} {'stage':5} {'harmful':>8} {'harmless':>8} {'edgy':>6}  build (s)        "
             "misses / recipe changes"]
    for r in rows:
        build = "" if r["build_s"] is None else "/".join(str(round(v)) for v in r["build_s"].values())
        note = "; ".join(r["misses"] or []) if r["stage"] != "base" else json.dumps(_against_default(r))
        rates = f"{r['refusal_harmful_test']:8.1%} {r['refusal_harmless_test']:8.1%} {r['refusal_edgy']:6.1%}"
        recipe = f"{r['version']}-{r['recipe']}"
        lines.append(f"{r['pair']:16} {recipe:11} {r['stage']:5} {rates}  {build:16} {note or 'meets targets'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=sorted(realpairs.PAIRS))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--txt", action="store_true", help="print the table of the rows recorded")
    args = parser.parse_args()
    if args.txt:
        print(txt())
        return
    for name in args.pairs:
        run(name, args.set)


if __name__ == "__main__":
    main()
