"""interp.interventions.generate against Hugging Face's generate, same checkpoint, prompts and run.

Three ways to the same greedy replies, timed in the same run:

* ``hf``       ``AutoModelForCausalLM.generate`` on the checkpoint loaded apart (the reference);
* ``interp``   ``interventions.generate`` through the bridge, KV cache on (checked exact);
* ``no-cache`` the same without a KV cache (what generation falls back to when the check fails,
  and what ``TransformerBridge.generate(use_past_kv_cache=False)`` costs).

and two of logit-diff amplification (:func:`interp.diff.amplified_generate`, alpha 4: the aligned model through
generate, the base through a logits processor), where about 2x ``hf`` is the floor (two models read every token):

* ``amplify``          the base keeps its own KV cache between steps (checked exact like the aligned model's);
* ``amplify-no-cache`` the base reads the whole sequence at every step.

Prints seconds, ratios to ``hf`` and whether the replies agree token for token (the amplified ones: with each other).

    python benchmarks/generate.py [--model dpo|smollm2] [--n 32] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from timing import timed
from transformers import AutoModelForCausalLM

from interp import interventions, kv_cache, load_pair, organisms, realmodels
from interp.diff import amplified_generate
from interp.prompts import pad_batch, pad_id, tokenize

REAL_PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Write a haiku about the sea.",
                "Explain photosynthesis simply.", "How do I pick a lock?", "Give me three tips for sleep."]


@torch.no_grad()
def hf_generate(hf, tokenizer, ids, batch_size, max_new_tokens) -> list[list[int]]:
    out = []
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for start in range(0, len(ids), batch_size):
        input_ids, mask = pad_batch(ids[start : start + batch_size], pad_id(tokenizer), "left")
        gen = hf.generate(input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id)
        for row in gen[:, input_ids.shape[1]:].tolist():
            out.append(row[: next((i for i, t in enumerate(row) if t in stops), len(row))])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dpo", help="an organism variant, or smollm2")
    p.add_argument("--n", type=int, default=32, help="number of prompts")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    if args.model == "smollm2":
        path = realmodels.smollm2()
        pair = load_pair(path, path, device="cpu", allow_identical=True)
        prompts = [REAL_PROMPTS[i % len(REAL_PROMPTS)] for i in range(args.n)]
    else:
        pair = organisms.load_pair(args.model, device="cpu")
        path = organisms.zoo.checkpoint_dir(args.model)
        pool = organisms.prompts("harmful_train") + organisms.prompts("harmless_train")
        prompts = [pool[i % len(pool)].text for i in range(args.n)]
    model = pair.aligned
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    ids = tokenize(pair.tokenizer, prompts, pair.prompt_format)
    run = partial(interventions.generate, model, prompts, max_new_tokens=args.max_new_tokens,
                  batch_size=args.batch_size, return_ids=True)

    t_hf, reference = timed(partial(hf_generate, hf, pair.tokenizer, ids, args.batch_size, args.max_new_tokens),
                            args.repeats)
    t_ours, ours = timed(run, args.repeats)
    amplify = partial(amplified_generate, pair, prompts, alpha=4.0, max_new_tokens=args.max_new_tokens,
                      batch_size=args.batch_size, return_ids=True)
    t_amp, amplified = timed(amplify, args.repeats)
    kv_cache._CHECKED[model] = kv_cache._CHECKED[pair.base] = False  # as if the cached path had failed its check
    t_plain, plain = timed(run, args.repeats)
    t_amp_plain, amplified_plain = timed(amplify, args.repeats)
    del kv_cache._CHECKED[model]
    kv_cache._CHECKED.pop(pair.base, None)
    print(f"{args.model}: {args.n} prompts, batch {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads")
    for name, t, replies in (("hf", t_hf, reference), ("interp", t_ours, ours), ("no-cache", t_plain, plain)):
        print(f"{name:16s} {t:7.2f} s   {t / t_hf:5.2f}x hf   replies equal to hf: {replies == reference}")
    for name, t in (("amplify", t_amp), ("amplify-no-cache", t_amp_plain)):
        print(f"{name:16s} {t:7.2f} s   {t / t_hf:5.2f}x hf   amplified replies equal: {amplified == amplified_plain}")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)
    main()
