"""interp.patching against transformer_lens.patching: same model, prompts and metric, in one run.

For each sweep and each number of prompt pairs (harmful prompts clean, harmless ones
corrupted, of one token length, on an organism), times TransformerLens's function (one
forward pass per patched cell) and ours (batched, starting at the patched layer), and prints
the time ratio and the largest absolute difference between the two results. Then times
attribution patching (every sweep's estimate from one forward and one backward) against
TransformerLens's exact per-head-per-position sweep, with the correlation of the two.

Goals on a 2-core CPU with the organisms: with 1 prompt pair >= 10x for the resid_pre sweep and
the head sweeps, with 8 pairs >= 3x; attribution >= 50x faster than exact head-by-position.

    python benchmarks/patching.py [--pairs 1 8] [--variant sft] [--repeats 3] [--only resid_pre ...]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import transformer_lens.patching as tl_patching
from timing import timed

from interp import organisms
from interp import patching as ours

EVERY = ("block_every", "attn_head_all_pos_every", "attn_head_by_pos_every")
GOALS = {1: 10.0, 8: 3.0}
GOAL_SWEEPS = ("resid_pre", "attn_head_out_by_pos", "attn_head_out_all_pos")
ATTRIBUTION_GOAL = 50.0


def goal_note(kind: str, n_pairs: int, ratio: float) -> str:
    goal = GOALS.get(n_pairs)
    if goal is None or kind not in GOAL_SWEEPS:
        return ""
    return f"goal >= {goal:g}x: {'met' if ratio >= goal else 'MISSED'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, nargs="+", default=[1, 8], help="numbers of prompt pairs")
    p.add_argument("--variant", default="sft")
    p.add_argument("--repeats", type=int, default=3, help="timings per function (median kept)")
    p.add_argument("--only", nargs="*", help="sweeps to run (suffixes of get_act_patch_*)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    pair = organisms.load_pair(args.variant, device=args.device)
    model = pair.aligned
    harmful, harmless = organisms.prompts("harmful_train"), organisms.prompts("harmless_train")
    clean_all, corrupted_all = ours.equal_length_pairs(model, [x.text for x in harmful], [x.text for x in harmless])
    refusal = ours.refusal_metric(model.tokenizer, ["sorry"])

    def metric(logits):
        return refusal(logits).mean()

    kinds = args.only or [*ours.SITES, *EVERY]
    print(f"# {args.variant} organism on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads;"
          f" prompts of {clean_all.shape[1]} tokens; metric: mean refusal log-odds")
    print(f"{'pairs':>5}  {'function':<46} {'TransformerLens':>15} {'interp':>9} {'ratio':>7}  {'max|diff|':>9}")
    for n_pairs in args.pairs:
        if n_pairs > clean_all.shape[0]:
            raise SystemExit(f"only {clean_all.shape[0]} prompt pairs of one length are available")
        clean, corrupted = clean_all[:n_pairs].to(args.device), corrupted_all[:n_pairs].to(args.device)
        with torch.no_grad():
            _, cache = model.run_with_cache(clean)
        exact_head = None
        for kind in kinds:
            name = f"get_act_patch_{kind}"
            inputs = (model, corrupted, cache, metric)
            tl_time, expected = timed(partial(getattr(tl_patching, name), *inputs), 1)
            our_time, got = timed(partial(getattr(ours, name), *inputs, progress=False), args.repeats)
            ratio = tl_time / our_time
            diff = (got.cpu() - expected.cpu()).abs().max().item()
            print(f"{n_pairs:>5}  {name:<46} {tl_time:>14.3f}s {our_time:>8.3f}s {ratio:>6.1f}x  {diff:>9.1e}  "
                  f"{goal_note(kind, n_pairs, ratio)}", flush=True)
            if kind == "attn_head_out_by_pos":
                exact_head = (tl_time, expected.cpu())
        if exact_head is None:
            continue
        attribution_time, estimate = timed(
            partial(ours.attribute, model, corrupted, cache, metric, ["attn_head_out_by_pos"]), args.repeats
        )
        ratio = exact_head[0] / attribution_time
        approx = estimate["attn_head_out_by_pos"].flatten()
        r = torch.corrcoef(torch.stack([approx, exact_head[1].flatten()]))[0, 1].item()
        print(f"{n_pairs:>5}  {'attribute (vs exact attn_head_out_by_pos)':<46} {exact_head[0]:>14.3f}s "
              f"{attribution_time:>8.3f}s {ratio:>6.1f}x  r={r:.3f}    "
              f"goal >= {ATTRIBUTION_GOAL:g}x: {'met' if ratio >= ATTRIBUTION_GOAL else 'MISSED'}", flush=True)


if __name__ == "__main__":
    main()
