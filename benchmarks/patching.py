"""interp.patching against transformer_lens.patching: same model, prompts and metric, in one run.

For each sweep and each number of prompt pairs, times TransformerLens's function (one whole
forward pass per patched cell) and ours (batched, recomputing only the layers and positions a
patch can change), and prints the time ratio, the largest absolute difference between the two
results, and the *limit*: TransformerLens's arithmetic over the least arithmetic an exact sweep
needs (every cell from its layer and position on; the final norm and unembedding of the
positions the metric reads), the share that recomputing less alone can save. Then times
attribution patching (every sweep's estimate from one forward and one backward) against
TransformerLens's exact per-head-per-position sweep, with the correlation of the two.

Models: an organism (harmful prompts clean, harmless ones corrupted, of one token length;
metric: mean refusal log-odds) or ``smollm2`` (SmolLM2-135M-Instruct; one pair of 18-token
questions, France against Spain; metric: logit of " Paris" minus " Madrid"). On SmolLM2 a
TransformerLens sweep takes minutes, so ``--tl-layers K`` times it over the first K layers only
(every cell costs it one whole forward pass, whatever its layer) and scales by the cell count,
and the results are compared on those layers.

Goals on a 2-core CPU: organisms, 1 prompt pair, >= 10x for resid_pre and the head sweeps, 8
pairs >= 3x; SmolLM2, 1 pair, resid_pre >= 10x and heads by position >= 20x; attribution >= 50x
faster than exact head-by-position.

    python benchmarks/patching.py [--model sft|dpo|smollm2] [--pairs 1 8] [--repeats 3] [--only resid_pre ...]
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's sweeps draw progress bars; the table is the output

import argparse
import itertools
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import torch
import transformer_lens.patching as tl_patching
from timing import timed

from interp import load_model, organisms, realmodels
from interp import patching as ours
from interp.patching.engine import Costs, reads_last_only
from interp.patching.exact import SITES

EVERY = ("block_every", "attn_head_all_pos_every", "attn_head_by_pos_every")
GOALS = {
    "organism": {(1, "resid_pre"): 10.0, (1, "attn_head_out_by_pos"): 10.0, (1, "attn_head_out_all_pos"): 10.0,
                 (8, "resid_pre"): 3.0, (8, "attn_head_out_by_pos"): 3.0, (8, "attn_head_out_all_pos"): 3.0},
    "smollm2": {(1, "resid_pre"): 10.0, (1, "attn_head_out_by_pos"): 20.0},
}
ATTRIBUTION_GOAL = 50.0
SMOLLM2_PAIR = ("Question: What is the capital city of France? Answer in one word.\nAnswer:",
                "Question: What is the capital city of Spain? Answer in one word.\nAnswer:")


def goal_note(model_kind: str, kind: str, n_pairs: int, ratio: float) -> str:
    goal = GOALS[model_kind].get((n_pairs, kind))
    if goal is None:
        return ""
    return f"goal >= {goal:g}x: {'met' if ratio >= goal else 'MISSED'}"


def limit_ratio(model, kind: str, batch: int, n_pos: int, last_only: bool) -> float:
    """TransformerLens's arithmetic for a sweep over the least an exact sweep needs (``Costs`` units, no overhead)."""
    costs = replace(Costs.of_model(model, batch, n_pos, last_only), overhead=0.0)
    n = costs.n_layers
    site = SITES[kind]
    cells = list(itertools.product(*(range(n) for n in site.sizes(model, n_pos)[1:])))
    least = sum(costs.of(layer, site.start(site.select(*cell)), 1, n - layer) for layer in range(n) for cell in cells)
    return len(cells) * n * replace(costs, last_only=False).of(0, 0, 1, n) / least


def inputs(model_name: str, device: str):
    """The model, every available (clean, corrupted) pair of one length, and the metric."""
    if model_name == "smollm2":
        model = load_model(realmodels.smollm2(), device=device, prompt_format="raw")
        clean, corrupted = (torch.tensor(model.tokenizer(list(texts)).input_ids) for texts in zip(SMOLLM2_PAIR))
        paris, madrid = (model.tokenizer(word, add_special_tokens=False).input_ids[0] for word in (" Paris", " Madrid"))
        return model, clean, corrupted, lambda logits: (logits[:, -1, paris] - logits[:, -1, madrid]).mean()
    model = organisms.load_pair(model_name, device=device).aligned
    harmful, harmless = organisms.prompts("harmful_train"), organisms.prompts("harmless_train")
    clean, corrupted = ours.equal_length_pairs(model, [x.text for x in harmful], [x.text for x in harmless])
    refusal = ours.refusal_metric(model.tokenizer, ["sorry"])
    return model, clean, corrupted, lambda logits: refusal(logits).mean()


@contextmanager
def first_layers(model, k: int | None):
    """TransformerLens's sweeps read ``model.cfg.n_layers``: make them sweep the first ``k`` layers only."""
    n = model.cfg.n_layers
    model.cfg.n_layers = k or n
    try:
        yield
    finally:
        model.cfg.n_layers = n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sft", help="an aligned organism (sft, dpo) or smollm2")
    p.add_argument("--pairs", type=int, nargs="+", help="numbers of prompt pairs (default: 1 8; smollm2: 1)")
    p.add_argument("--repeats", type=int, default=3, help="timings per function (median kept)")
    p.add_argument("--only", nargs="*", help="sweeps to run (suffixes of get_act_patch_*)")
    p.add_argument("--tl-layers", type=int, help="time TransformerLens on the first K layers, scaled by cell count "
                   "(default: all; smollm2: 2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    real = args.model == "smollm2"
    model_kind = "smollm2" if real else "organism"
    pairs = args.pairs or ([1] if real else [1, 8])
    tl_layers = args.tl_layers or (2 if real else None)

    model, clean_all, corrupted_all, metric = inputs(args.model, args.device)
    kinds = args.only or ([*ours.SITES] if real else [*ours.SITES, *EVERY])
    print(f"# {args.model} on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; prompts of "
          f"{clean_all.shape[1]} tokens; TransformerLens timed on "
          f"{f'the first {tl_layers} layers, scaled' if tl_layers else 'every layer'}")
    print(f"{'pairs':>5}  {'function':<46} {'TransformerLens':>15} {'interp':>9} {'ratio':>7} {'limit':>7}  "
          f"{'max|diff|':>9}")
    for n_pairs in pairs:
        if n_pairs > clean_all.shape[0]:
            raise SystemExit(f"only {clean_all.shape[0]} prompt pairs of one length are available")
        clean, corrupted = clean_all[:n_pairs].to(args.device), corrupted_all[:n_pairs].to(args.device)
        with torch.no_grad():
            _, cache = model.run_with_cache(clean)
            last_only = reads_last_only({"metric": metric}, model(corrupted))
        exact_head = None
        for kind in kinds:
            name = f"get_act_patch_{kind}"
            inputs_ = (model, corrupted, cache, metric)
            with first_layers(model, tl_layers):
                tl_time, expected = timed(partial(getattr(tl_patching, name), *inputs_), 1)
            our_time, got = timed(partial(getattr(ours, name), *inputs_, progress=False), args.repeats)
            if tl_layers:
                tl_time *= model.cfg.n_layers / tl_layers
                got = got[:, :tl_layers] if kind in EVERY else got[:tl_layers]
            ratio = tl_time / our_time
            diff = (got.cpu() - expected.cpu()).abs().max().item()
            limit = "" if kind in EVERY else f"{limit_ratio(model, kind, n_pairs, clean.shape[1], last_only):.1f}x"
            print(f"{n_pairs:>5}  {name:<46} {tl_time:>14.3f}s {our_time:>8.3f}s {ratio:>6.1f}x {limit:>7}  "
                  f"{diff:>9.1e}  {goal_note(model_kind, kind, n_pairs, ratio)}", flush=True)
            if kind == "attn_head_out_by_pos":
                exact_head = (tl_time, expected.cpu())
        if exact_head is None:
            continue
        attribution_time, estimate = timed(
            partial(ours.attribute, model, corrupted, cache, metric, ["attn_head_out_by_pos"]), args.repeats
        )
        ratio = exact_head[0] / attribution_time
        approx = estimate["attn_head_out_by_pos"][: exact_head[1].shape[0]].flatten()
        r = torch.corrcoef(torch.stack([approx, exact_head[1].flatten()]))[0, 1].item()
        print(f"{n_pairs:>5}  {'attribute (vs exact attn_head_out_by_pos)':<46} {exact_head[0]:>14.3f}s "
              f"{attribution_time:>8.3f}s {ratio:>6.1f}x  r={r:.3f}    "
              f"goal >= {ATTRIBUTION_GOAL:g}x: {'met' if ratio >= ATTRIBUTION_GOAL else 'MISSED'}", flush=True)


if __name__ == "__main__":
    main()
