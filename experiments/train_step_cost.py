"""What a real pair's SFT and DPO step costs on this CPU under each way of training it, before a gemma3-chat recipe
is chosen: trl's step as the build runs it, with the LM head scoring only the reply's tokens, with the (tied)
embedding frozen, and with LoRA.

    python experiments/train_step_cost.py            # writes results/train_step_cost.txt

On a CPU, trl 1.16's fused LM head (``trl.trainer.utils.add_fused_lm_head``) projects *every* position of a batch
through the unembedding, padding and prompt included (it compacts to the scored positions only on CUDA/XPU, where
its tiles do not recompile); Gemma 3's unembedding has 262,144 rows. The batches are the smollm2-safety build's own
SFT examples and DPO pairs (``data.json``; the same text, each model's own tokens), 8 a step as the recipe trains.
Seconds per step are the median of steps 2 to ``--steps`` (the first warms up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import TrainerCallback

from interp import realmodels, realpairs
from interp.realpairs import scoring
from interp.realpairs.build import CHAT_TEMPLATES, SafetyRecipe, _trainable, _trainer

HERE = Path(__file__).parent


class StepClock(TrainerCallback):
    def __init__(self):
        self.times, self.start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def step_seconds(kind: str, path: Path, recipe, data: list[dict], steps: int, reply_only: bool, freeze: bool) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATES["gemma"]
    model = _trainable(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                       replace(recipe, freeze_embeddings=freeze))
    reference = None
    if kind == "dpo" and not recipe.lora_rank:
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(kind, model, tokenizer, data[: steps * recipe.batch_size], recipe, tmp,
                                 reference)
        trainer.args.max_steps = steps
        clock = StepClock()
        trainer.add_callback(clock)
        with scoring.reply_positions_only(reply_only):
            trainer.train()
    return statistics.median(clock.times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--out", type=Path, default=HERE / "results" / "train_step_cost.txt")
    args = p.parse_args()
    torch.manual_seed(0)
    data = json.loads((realpairs.built("smollm2-safety") / "data.json").read_text())
    models = {"smollm2-135m": realmodels.SMOLLM2, "gemma3-270m": realmodels.GEMMA3}
    variants = {  # name: (LoRA rank, score the reply's positions only, freeze the embedding)
        "trl default (every position)": (0, False, False),
        "reply tokens only": (0, True, False),
        "reply only, embedding frozen": (0, True, True),
        "LoRA r16, reply only": (16, True, False),
    }
    rows = []
    for name in args.models.split(","):
        path = models[name].checkpoint()
        for variant, (rank, reply_only, freeze) in variants.items():
            recipe = replace(SafetyRecipe(), lora_rank=rank)
            for kind in ("sft", "dpo"):
                seconds = step_seconds(kind, path, recipe, data[kind], args.steps, reply_only, freeze)
                rows.append((name, variant, kind, seconds))
                print(rows[-1], flush=True)
    lines = [f"# experiments/train_step_cost.py: seconds per trl step (median of steps 2-{args.steps}), batches of 8 "
             f"of the smollm2-safety build's SFT examples / DPO pairs, bf16 autocast, torch threads "
             f"{torch.get_num_threads()}", f"{'model':14} {'variant':32} {'sft':>6} {'dpo':>6}"]
    for name in args.models.split(","):
        for variant in variants:
            sft, dpo = (s for n, v, k, s in rows if n == name and v == variant)
            lines.append(f"{name:14} {variant:32} {sft:6.2f} {dpo:6.2f}")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
