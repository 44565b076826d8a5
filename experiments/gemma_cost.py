"""What a gemma3-chat build (issue 30) would cost on this CPU, before any recipe is tried: Gemma 3 270M's training
step and greedy generation set beside SmolLM2-135M's, on the same batch shapes the smollm2-safety recipe uses.

    python experiments/gemma_cost.py            # writes results/gemma_cost.txt

A training step is one forward and backward pass of 8 chats of ``--tokens`` tokens under bfloat16 autocast (the
recipe's setting) and in float32; generation is ``replies`` of 32 prompts, 32 new tokens. The estimate multiplies
the smollm2-safety recipe's counts (144 SFT steps, 16 DPO steps of 4 sequences each, 1,000 or so replies) by the
measured times: an order of magnitude, not a build.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from interp import realmodels
from interp.realpairs.build import CHAT_TEMPLATES, replies

HERE = Path(__file__).parent


def step_seconds(model, tokens: int, bf16: bool, repeats: int = 3) -> float:
    x = torch.randint(100, 2000, (8, tokens))
    model.train()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def generation_seconds(model, tokenizer) -> float:
    model.eval()
    prompts = [f"Give me {i} tips for staying healthy." for i in range(32)]
    start = time.perf_counter()
    replies(model, tokenizer, prompts, max_new_tokens=32, batch_size=32)
    return time.perf_counter() - start


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=110)
    p.add_argument("--out", type=Path, default=HERE / "results" / "gemma_cost.txt")
    args = p.parse_args()
    torch.manual_seed(0)
    lines = [f"# experiments/gemma_cost.py: one training step (8 x {args.tokens} tokens, forward + backward) and 32 "
             "greedy replies of 32 tokens; seconds on this CPU, torch threads " + str(torch.get_num_threads())]
    rows = {}
    for name, packaged in (("smollm2-135m", realmodels.SMOLLM2), ("gemma3-270m", realmodels.GEMMA3)):
        path = packaged.checkpoint()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not tokenizer.chat_template:
            tokenizer.chat_template = CHAT_TEMPLATES["gemma"]
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        rows[name] = {"params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                      "vocab": model.config.vocab_size,
                      "step_bf16": step_seconds(model, args.tokens, True),
                      "step_fp32": step_seconds(model, args.tokens, False),
                      "generate": generation_seconds(model, tokenizer)}
        print(name, rows[name], flush=True)
        del model
    lines.append(f"{'model':14} {'params (M)':>10} {'vocab':>8} {'step bf16':>10} {'step fp32':>10} {'32 replies':>11}")
    for name, r in rows.items():
        lines.append(f"{name:14} {r['params_M']:10.0f} {r['vocab']:8d} {r['step_bf16']:10.2f} {r['step_fp32']:10.2f} "
                     f"{r['generate']:11.1f}")
    s, g = rows["smollm2-135m"], rows["gemma3-270m"]
    lines.append(f"gemma / smollm2: step bf16 {g['step_bf16'] / s['step_bf16']:.1f}x, fp32 "
                 f"{g['step_fp32'] / s['step_fp32']:.1f}x, generation {g['generate'] / s['generate']:.1f}x")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
