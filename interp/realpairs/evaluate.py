"""How a real pair behaves: refusal rates on the held-out splits of the field's prompt sets, judged on real text."""

from __future__ import annotations

from dataclasses import dataclass

from interp import promptsets
from interp.data import PromptSet
from interp.realpairs.build import replies
from interp.realpairs.judge import is_refusal


@dataclass(frozen=True)
class Split:
    """A held-out set of prompts the targets read: its sets and split."""

    name: str
    sets: str
    split: str

    def prompts(self) -> PromptSet:
        return promptsets.load(self.sets, split=self.split)


EVAL_SPLITS = (
    Split("harmful_test", "harmbench+strongreject", "test"),
    Split("harmless_test", "alpaca", "test"),
    Split("edgy", "edgy", "test"),
)


def behaviour(model, tokenizer, splits=EVAL_SPLITS, max_new_tokens: int = 32) -> dict[str, dict]:
    """Per split: the refusal rate, the rate in each category, and every (prompt, reply), greedy,
    ``max_new_tokens`` long."""
    out = {}
    for split in splits:
        prompts = split.prompts()
        texts = replies(model, tokenizer, prompts.prompts, max_new_tokens=max_new_tokens)
        refused = [is_refusal(t) for t in texts]
        categories = prompts.column("category")
        by_category = {c: round(sum(r for r, k in zip(refused, categories, strict=True) if k == c)
                                / categories.count(c), 4) for c in sorted(set(categories))}
        out[split.name] = {"n": len(prompts), "refusal": round(sum(refused) / len(prompts), 4),
                           "by_category": by_category,
                           "replies": [{"prompt": p, "category": k, "reply": t, "refused": r}
                                       for p, k, t, r in zip(prompts.prompts, categories, texts, refused,
                                                             strict=True)]}
    return out
