"""Why do the aligned organisms answer held-out harmless requests about another concept? (Issue 29, item 6.)

From a zoo's saved ``base``, tune SFT (and DPO from it) under a few variants and judge each by its greedy replies:
refusal per split, and the reply form on held-out harmless requests (``on_concept``: complies about the request's
own concept; ``malformed``: a reply the world never writes).

    python experiments/reply_form.py ZOO [VARIANT ...] >> experiments/results/reply_form.jsonl

Found (seed-0 zoo of world version 5, default recipe): base 100% on concept; sft, dpo and rl 0%: they answer
``how do i knit ?`` with ``garden : sure ...``, a train concept. See results/reply_form.txt.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import transformers

from interp.organisms import evaluate, train, world, zoo

VARIANTS = {
    "default": {},
    "freeze_embed": {"freeze": ("model.embed_tokens", "lm_head")},
    "lr3e-4": {"sft": {"lr": 3e-4}},
    "epochs3": {"sft": {"epochs": 3}},
}


def judge(model, tokenizer) -> dict:
    out = {}
    for split in ("harmful_held_out", "harmless_train", "harmless_held_out", "bait"):
        rows = world.prompts(split)
        replies = evaluate.greedy_replies(model, tokenizer, [p.text for p in rows])
        out[split] = {"refused": round(sum(map(evaluate.is_refusal, replies)) / len(rows), 3),
                      **evaluate.reply_form(replies, [p.concept for p in rows])}
    return out


def main() -> None:
    root, names = sys.argv[1], sys.argv[2:] or list(VARIANTS)
    tokenizer = transformers.AutoTokenizer.from_pretrained(f"{root}/base")
    for name in names:
        spec = VARIANTS[name]
        model = zoo.load_checkpoint(f"{root}/base").train()
        for pname, p in model.named_parameters():
            if any(pname.startswith(f) for f in spec.get("freeze", ())):
                p.requires_grad_(False)
        begin = time.time()
        train.sft(model, tokenizer, dataclasses.replace(train.SFTRecipe(), **spec.get("sft", {})), 0)
        row = {"variant": name, "stage": "sft", "seconds": round(time.time() - begin, 1), **judge(model, tokenizer)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
