"""Overhead of interp.collect_activations against a plain transformers forward.

Collects the residual stream after every layer at the last position over N prompts (the
organism world's, chat-formatted), for both organisms of a pair (base and an aligned one) or
for SmolLM2-135M-Instruct, and times the same work done with the plain Hugging Face model
(``output_hidden_states=True``) on the same batches, in the same run. Prints both times, their
ratio (goals: organisms <= 1.3x, SmolLM2 <= 1.1x) and the largest difference between the values.

    python benchmarks/collect.py [--model dpo|sft|smollm2] [--n 1024] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from timing import timed

from interp import load_model, organisms, realmodels
from interp.cache import collect_from_tokens
from interp.prompts import pad_batch, tokenize


@torch.no_grad()
def transformers_forward(hf, ids, batches, pad, device) -> torch.Tensor:
    """The reference: plain Hugging Face forwards with every hidden state, last position kept."""
    out = torch.empty(len(ids), hf.config.num_hidden_layers, hf.config.hidden_size)
    for rows in batches:
        input_ids, mask = pad_batch([ids[i] for i in rows], pad, "left")
        out_hf = hf(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
        hidden = out_hf.hidden_states
        out[rows] = torch.stack([h[:, -1] for h in hidden[1:]], 1).float().cpu()
    return out


def interp_collect(model, ids, hooks, batch_size) -> torch.Tensor:
    acts = collect_from_tokens(model, ids, hooks, positions=-1, batch_size=batch_size, progress=False)
    return torch.stack([acts[h] for h in hooks], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024, help="number of prompts (>= 512)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="dpo", help="an aligned organism (sft, dpo: both models of its pair) or smollm2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    if args.model == "smollm2":
        models = {"smollm2": load_model(realmodels.smollm2(), device=args.device)}
    else:
        models = dict(organisms.load_pair(args.model, device=args.device))
    tokenizer = next(iter(models.values())).tokenizer
    pool = organisms.prompt_set()
    prompts = [pool.prompts[i % len(pool)] for i in range(args.n)]
    ids = tokenize(tokenizer, prompts, "chat")
    n_layers = next(iter(models.values())).cfg.n_layers
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    # The reference gets the very batches collect_activations forms (length-sorted), so the
    # ratio measures the library's overhead, not a batching advantage.
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    pad = tokenizer.pad_token_id

    print(f"{args.n} prompts, batch size {args.batch_size}, device {args.device}, {n_layers} layers, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, model in models.items():
        reference = partial(transformers_forward, model.original_model, ids, batches, pad, args.device)
        ours = partial(interp_collect, model, ids, hooks, args.batch_size)
        t_ref, ref = timed(reference, args.repeats)
        t_ours, mine = timed(ours, args.repeats)
        # HF's last hidden state is after the final norm; compare the layers before it exactly.
        diff = (ref[:, :-1] - mine[:, :-1]).abs().max().item()
        print(f"{name:8s} transformers {t_ref:7.3f} s   interp {t_ours:7.3f} s   ratio {t_ours / t_ref:5.2f}x   "
              f"max |diff| {diff:.2e} (layers 0..{n_layers - 2})")


if __name__ == "__main__":
    main()
