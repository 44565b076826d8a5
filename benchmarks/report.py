"""``interp report`` on a real pair: each section's estimated cost (printed before loading) beside its actual time.

By default the pair is SmolLM2-135M-Instruct and a copy of it with rank-one changes to two matrices
(``interp.realmodels.rank_one_copy``); the prompts are the organism world's report splits
(``interp organisms prompts``), in SmolLM2's chat format with its system prompt; refusals
are recognised by the prefixes "I'm sorry" and "I cannot". ``--pair real:smollm2-safety --prompts harmbench+alpaca``
audits a real pair built by the project's recipe (its cached build; built first when missing) on the field's prompt
sets, its refusals recognised by the openers its recipe taught. Prints per section the estimate, the time taken and
their ratio, then the totals. Goal on a 2-core CPU: the whole report <= 10 minutes.

    python benchmarks/report.py [--out DIR] [--skip SECTION ...] [--pair real:smollm2-safety --prompts harmbench+alpaca]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from interp import matmul, pairs, realmodels, report
from interp.cli import main as interp_main
from interp.realpairs.build import REFUSAL_OPENERS

EDITS = ("model.layers.7.mlp.down_proj.weight", "model.layers.20.self_attn.o_proj.weight")
GOAL_SECONDS = 600.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for the report (default: a temporary one)")
    p.add_argument("--skip", nargs="*", default=[], help="sections to leave out")
    p.add_argument("--pair", help="a pair by name (real:smollm2-safety) instead of SmolLM2 and its rank-one copy")
    p.add_argument("--prompts", default="harmbench+alpaca", help="with --pair: prompt sets or a file")
    p.add_argument("--matmul", default="auto", choices=["float32", "bfloat16", "auto"],
                   help="the models' linear products (default auto: bfloat16 where the CPU has it, as notebooks on a "
                   "real pair run)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp())
    if args.pair:
        base, aligned = pairs.checkpoints(args.pair)
        prompts, what = args.prompts, f"{args.pair} on {args.prompts}"
        prefixes = list(dict.fromkeys(opener.split(",")[0] for opener in REFUSAL_OPENERS))
    else:
        base = realmodels.smollm2()
        aligned = out / "smollm2-rank-one"
        if not aligned.exists():
            realmodels.rank_one_copy(base, aligned, EDITS)
        prompts, what = out / "prompts.jsonl", "SmolLM2-135M-Instruct vs a rank-one copy"
        interp_main(["organisms", "prompts", "--out", str(prompts)])
        prefixes = ["I'm sorry", "I cannot"]
    print(f"# {what} on cpu, torch {torch.__version__}, {torch.get_num_threads()} threads, linear products "
          f"{matmul.name(matmul.resolve(args.matmul, 'cpu'))}", flush=True)
    start = time.perf_counter()
    done = report.run(str(base), str(aligned), prompts, out / "report.html", refusal_prefixes=prefixes,
                      skip=args.skip, device="cpu", matmul=args.matmul)
    wall = time.perf_counter() - start
    plan = done.meta["plan"]
    print(f"{'section':<16} {'estimate':>9} {'actual':>9} {'ratio':>7}")
    for key, seconds in done.meta["seconds"].items():
        estimate = plan[key]["seconds"]
        ratio = f"{seconds / estimate:>6.2f}x" if estimate else f"{'-':>7}"  # behaviour: read with the replies
        print(f"{key:<16} {estimate:>8.0f}s {seconds:>8.0f}s {ratio}")
    estimated = sum(plan[key]["seconds"] for key in done.meta["seconds"])
    print(f"{'sections':<16} {estimated:>8.0f}s {sum(done.meta['seconds'].values()):>8.0f}s")
    print(f"whole run (loading included): {wall:.0f} s; goal <= {GOAL_SECONDS:g} s: "
          f"{'met' if wall <= GOAL_SECONDS else 'MISSED'}")
    print(json.dumps({"defaults": done.meta["defaults"]}))


if __name__ == "__main__":
    main()
