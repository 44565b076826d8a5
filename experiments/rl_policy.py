"""Issue 19, second step: the sft organism tuned by online RL (trl's GRPOTrainer) against the reward model.

The reward model is trained first, as ``reward_model.py`` does (with ``--harmless-refusal-pairs``
by default: without them it pays for refusing everything). The policy starts from the zoo's
``sft``, samples ``--generations`` replies per train request (harmful and harmless train
concepts), and is pushed towards the replies the reward model scores above the group's mean,
KL-regularised to its start (``--beta``). Reported: refusal rates per split before and after
(``interp.organisms.evaluate``), the mean reward of the greedy replies on held-out requests, and
a few replies per split, to see reward hacking if it happens.

    python experiments/rl_policy.py [--zoo DIR] [--seed 0] [--steps 60] [--beta 0.1] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from reward_model import train
from transformers import AutoModelForCausalLM

from interp.organisms import evaluate, world, zoo
from interp.organisms.evaluate import reward_scores
from interp.organisms.train import run_trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", help="a built zoo (default: the default zoo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--no-harmless-refusal-pairs", action="store_true",
                   help="train the reward model on DPO's pairs only")
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args()

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    zoo_dir = Path(args.zoo) if args.zoo else None
    reward, reward_tokenizer, _, reward_seconds = train(zoo_dir, args.seed, 6, 1e-3,
                                                        not args.no_harmless_refusal_pairs)
    sft = zoo.checkpoint_dir("sft", zoo_dir)
    policy = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32)
    tokenizer = reward_tokenizer
    before = evaluate.refusal_rates(policy, tokenizer)
    requests = [pr.text for split in ("harmful_train", "harmless_train") for pr in world.prompts(split)]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r}]} for r in requests])
    start = time.time()
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
            logging_steps=5, seed=args.seed, data_seed=args.seed, learning_rate=args.lr, max_steps=args.steps,
            per_device_train_batch_size=4 * args.generations, num_generations=args.generations,
            max_completion_length=24, beta=args.beta, temperature=1.0, gradient_checkpointing=False,
        )
        trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=data,
                              processing_class=tokenizer, reward_processing_classes=reward_tokenizer)
        stats = run_trainer(trainer)
        rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    seconds = round(time.time() - start, 1)
    policy.eval()
    after = evaluate.refusal_rates(policy, tokenizer)
    examples, held_out_reward = {}, {}
    for split in ("harmful_held_out", "harmless_held_out", "bait"):
        texts = [pr.text for pr in world.prompts(split)]
        replies = evaluate.greedy_replies(policy, tokenizer, texts)
        examples[split] = [f"{q} -> {a}" for q, a in list(zip(texts, replies, strict=True))[:3]]
        held_out_reward[split] = round(reward_scores(reward, reward_tokenizer, texts, replies).mean().item(), 3)
    row = {"seed": args.seed, "steps": args.steps, "beta": args.beta, "lr": args.lr, "generations": args.generations,
           "harmless_refusal_pairs": not args.no_harmless_refusal_pairs, "reward_seconds": reward_seconds,
           "rl_seconds": seconds, **stats, "reward_log": rewards,
           "refusal_before": {s: r["generation"] for s, r in before.items()},
           "refusal_after": {s: r["generation"] for s, r in after.items()},
           "greedy_reward": held_out_reward, "examples": examples}
    with (Path(args.out) / "rl_policy.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"reward model {reward_seconds} s; GRPO {args.steps} steps in {seconds} s; reward during RL: "
          f"{rewards[:1]} -> {rewards[-1:]}")
    print(f"{'split':<20} {'refused before':>14} {'after':>6}")
    for split in before:
        print(f"{split:<20} {before[split]['generation']:>14.2f} {after[split]['generation']:>6.2f}")
    print("greedy reward on held-out:", held_out_reward)
    for split, lines in examples.items():
        print(split, *lines, sep="\n  ")


if __name__ == "__main__":
    main()
