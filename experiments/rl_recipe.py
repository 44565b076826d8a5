"""Issue 19, third step: choosing the zoo's RL recipe (``train.RLRecipe``) by the organisms' targets.

Trains the library's reward model (``train.reward_model``) from a built zoo's ``base``, then, for
each recipe override given as JSON, tunes that zoo's ``sft`` with ``train.rl`` and measures the
behaviour (``evaluate.refusal_rates``) and the refusal-direction targets
(``targets.check_direction``) of the result.

    python experiments/rl_recipe.py ZOO SEED '{"lr": 2e-4}' '{"lr": 3e-4, "beta": 0.5}' ...

Prints one ``RESULT`` line per recipe; ``results/rl_recipe.txt`` holds the table they gave.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time

from interp import load_model
from interp.organisms import evaluate, targets, train, zoo
from interp.organisms.tokenizer import build_tokenizer


def main() -> None:
    src, seed = sys.argv[1], int(sys.argv[2])
    tokenizer = build_tokenizer()
    reward, _ = train.reward_model(zoo.load_checkpoint(f"{src}/base"), tokenizer, train.RewardRecipe(), seed)
    accuracy = evaluate.reward_accuracy(reward, tokenizer, seed + 1)
    print("RESULT reward model", seed, {k: v["accuracy"] for k, v in accuracy.items()}, flush=True)
    for spec in sys.argv[3:]:
        overrides = json.loads(spec)
        policy = zoo.load_checkpoint(f"{src}/sft")
        recipe = dataclasses.replace(train.RLRecipe(), min_reward_gain=float("-inf"), **overrides)
        start = time.time()
        stats = train.rl(policy, reward, tokenizer, tokenizer, recipe, seed)
        seconds = round(time.time() - start, 1)
        refusal = {k: v["generation"] for k, v in evaluate.refusal_rates(policy, tokenizer).items()}
        with tempfile.TemporaryDirectory() as out:
            policy.save_pretrained(out)
            tokenizer.save_pretrained(out)
            found = targets.check_direction(load_model(out, device="cpu"), "rl", refusal)
        stats.pop("rewards")
        print("RESULT", overrides, seconds, stats, refusal, found.misses, found.layer, found.kl, found.ablated,
              found.added, flush=True)


if __name__ == "__main__":
    main()
