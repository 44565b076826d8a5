"""The refusal-direction search on a real model: the default (ranked) search against the exhaustive one, same run.

On SmolLM2-135M-Instruct (chat format, its system prompt included), with the organism world's
train prompts as the report uses them (harmful and harmless, a quarter of each held back for
validation) and "I" as the refusal's first token: times ``find_refusal_direction`` with its
defaults (every candidate's bypass score estimated on a few validation prompts, then scored
exactly in that order, a heuristic stop) and, with ``--exhaustive``, scoring every
candidate, and prints both times, their ratio, how many candidates each scored exactly, and
whether they select the same candidate. Goal on a 2-core CPU: the default search <= 120 s.

    python benchmarks/directions.py [--exhaustive] [--organism sft|dpo]
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

from interp import directions, load_model, organisms, realmodels

GOAL_SECONDS = 120.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exhaustive", action="store_true", help="also run the exhaustive search (minutes)")
    p.add_argument("--organism", help="search an aligned organism instead of SmolLM2")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    if args.organism:
        model, tokens = organisms.load_pair(args.organism, device=args.device).aligned, ["sorry"]
    else:
        model, tokens = load_model(realmodels.smollm2(), device=args.device), ["I"]
    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    n_candidates = len(directions.post_instruction_positions(model.tokenizer)) * model.cfg.n_layers
    print(f"# {args.organism or 'SmolLM2-135M-Instruct'} on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(harmful)} harmful and {len(harmless)} harmless prompts; "
          f"{n_candidates} candidates")
    runs = {"default": {}, **({"exhaustive": {"exhaustive": True}} if args.exhaustive else {})}
    found = {}
    for name, options in runs.items():
        seconds, found[name] = timed(lambda options=options: directions.find_refusal_direction(
            model, harmful, harmless, refusal_tokens=tokens, progress=False, **options), 1)
        table = found[name].scores
        print(f"{name:<10} {seconds:>8.1f} s  scored exactly {int(table.bypass_score.notna().sum()):>3}  "
              f"selected layer {found[name].layer}, position {found[name].position}  "
              f"(bypass {found[name].selected.bypass_score:.2f}, passed filters: {found[name].passed_filters})"
              + (f"  goal <= {GOAL_SECONDS:g} s: {'met' if seconds <= GOAL_SECONDS else 'MISSED'}"
                 if name == "default" and not args.organism else ""), flush=True)
        runs[name] = seconds
    if args.exhaustive:
        same = (found["default"].layer, found["default"].position) == (found["exhaustive"].layer,
                                                                       found["exhaustive"].position)
        print(f"exhaustive / default: {runs['exhaustive'] / runs['default']:.1f}x; same candidate: {same}")


if __name__ == "__main__":
    main()
