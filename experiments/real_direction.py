"""Arditi et al.'s pipeline, and Kissane et al.'s question, on the real pair smollm2-safety (base SmolLM2-135M-Instruct,
aligned: the project's safety SFT + DPO of it), with the field's prompts; writes experiments/results/real_direction.txt
and .json.

Arditi et al. (2024): difference-in-means candidates at the post-instruction positions of every layer, from harmful
and harmless train prompts; scored on validation prompts (HarmBench validation, Alpaca validation); the filters as
the paper defines them (ablation must not move harmless next-token distributions by KL > 0.1, addition must induce
refusal, the layer within the first 80%); then, judged on generated text, ablation on held-out harmful requests
(HarmBench test) and addition on held-out harmless ones (Alpaca test). Kissane et al. (2024): does the aligned
model's direction exist in the base (cosine of the two models' candidates at the selected site) and steer it (the
aligned direction added to the base)?

    python experiments/real_direction.py [--stage dpo] [--n 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from interp import directions, load_pair, promptsets, realpairs
from interp.interventions import generate
from interp.metrics import derive_refusal_tokens
from interp.realpairs.judge import refusal_rate

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="dpo")
    p.add_argument("--n", type=int, default=64, help="train prompts per class for the candidates")
    args = p.parse_args()
    torch.set_num_threads(2)
    clock = time.perf_counter()
    base_dir, aligned_dir = realpairs.checkpoints("smollm2-safety", args.stage)
    pair = load_pair(base_dir, aligned_dir, device="cpu")
    harmful = promptsets.load("strongreject+advbench", split="train").prompts[:args.n]
    harmless = promptsets.load("alpaca", split="train").prompts[:args.n]
    harmful_val = promptsets.load("harmbench", split="validation").prompts
    harmless_val = promptsets.load("alpaca", split="validation").prompts[:len(harmful_val)]
    harmful_test = promptsets.load("harmbench", split="test").prompts
    harmless_test = promptsets.load("alpaca", split="test").prompts
    tokens = derive_refusal_tokens(pair, harmful_val)
    found = directions.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=tokens,
                                              harmful_val=harmful_val, harmless_val=harmless_val, progress=False)
    row = found.scores.loc[(found.scores.layer == found.layer) & (found.scores.position == found.position)].iloc[0]
    out = {"stage": args.stage, "refusal_tokens": tokens, "layer": found.layer, "position": found.position,
           "n_layers": pair.aligned.cfg.n_layers, "passed_filters": found.passed_filters,
           "bypass_score": float(row.bypass_score), "induce_score": float(row.induce_score), "kl": float(row.kl)}
    base_candidates = directions.candidate_directions(pair.base, harmful, harmless)
    aligned_candidates = directions.candidate_directions(pair.aligned, harmful, harmless)
    position_index = directions.post_instruction_positions(pair.tokenizer).index(found.position)
    out["cosine_base_aligned"] = float(directions.candidate_cosines(base_candidates, aligned_candidates)
                                       [position_index, found.layer])

    def judged(model, prompts, *interventions) -> float:
        return refusal_rate(generate(model, prompts, *interventions, max_new_tokens=32))

    out["aligned"] = {"harmful": judged(pair.aligned, harmful_test),
                      "harmful, ablated": judged(pair.aligned, harmful_test, found.ablation()),
                      "harmless": judged(pair.aligned, harmless_test),
                      "harmless, added": judged(pair.aligned, harmless_test, found.addition())}
    out["base"] = {"harmful": judged(pair.base, harmful_test),
                   "harmless, aligned direction added": judged(pair.base, harmless_test, found.addition()),
                   "harmful, aligned direction added": judged(pair.base, harmful_test, found.addition())}
    out["n"] = {"harmful_test": len(harmful_test), "harmless_test": len(harmless_test)}
    out["seconds"] = round(time.perf_counter() - clock)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_direction.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
