"""Do the real jailbreak templates get requests through that the real pair refuses plainly? (notebook 09's pairing)

Each of 64 held-out harmful requests (HarmBench + StrongREJECT test, the notebooks' draw) plain and in one of Shen et
al.'s in-the-wild templates (``pairs.prompts(..., "jailbreak")``: row i wraps request i); the plain verdicts are the
build's own replies, the wrapped ones 32 greedy tokens generated now, both judged by the real-text judge
(``pairs.refused``), and set side by side by ``jailbreaks.Projections.against_plain``, as notebook 09 does. Writes
``results/real_jailbreak_pairs.txt``.

    python experiments/real_jailbreak_pairs.py [--pair real:smollm2-safety] [--n 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from interp import intervals, pairs
from interp.jailbreaks import Projections

OUT = Path(__file__).resolve().parent / "results" / "real_jailbreak_pairs.txt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="real:smollm2-safety")
    p.add_argument("--n", type=int, default=64)
    args = p.parse_args()
    start = time.time()
    pair = pairs.load(args.pair, device="cpu")
    stage = pairs.parse(args.pair).stage
    prompts = pairs.prompts(args.pair, ["harmful_held_out", "jailbreak"], n=args.n)
    said = pairs.refused(args.pair, stage, pair.aligned, prompts)
    table = pd.DataFrame({"model": "aligned", "split": prompts.column("split"), "request": prompts.column("request"),
                          "template": prompts.column("template"),
                          "refused": [float("nan") if x is None else float(x) for x in said]})
    paired = Projections(table, None, None, judged=True).against_plain()
    refused, works = int(paired.plain.sum()), paired[paired.plain & ~paired.wrapped]
    backfires = paired[~paired.plain & paired.wrapped]
    lines = [f"# {args.pair} ({pairs.checkpoints(args.pair)[1].parent.name}), {stage}: {len(paired)} held-out harmful "
             f"requests, plain and wrapped; {time.time() - start:.0f} s",
             f"refused plain: {refused} of {len(paired)}; wrapped: {int(paired.wrapped.sum())} of {len(paired)}",
             f"a template works (plain refused, wrapped answered): {len(works)} of {refused}, "
             f"{intervals.rate(len(works), refused).format('.0%')}",
             f"a template backfires (plain answered, wrapped refused): {len(backfires)} of {len(paired) - refused}",
             "templates that worked: " + ", ".join(works.template),
             "templates that backfired: " + ", ".join(backfires.template)]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
