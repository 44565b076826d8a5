"""Logit-diff amplification: sample from the aligned model with its change from the base made larger.

Aranguri and McGrath (2025) surface behaviours a finetune made rare but not impossible by decoding from

    logits_amplified = logits_aligned + alpha * (logits_aligned - logits_base)

at every step: ``alpha = 0`` is the aligned model itself, ``alpha > 0`` exaggerates whatever finetuning changed (a
backdoor's reply, a new refusal, a topic the model now steers to), so a behaviour seen once in thousands of plain
samples shows up in a handful. Both models read the same tokens (the prompt, then the amplified reply so far); the
aligned model decodes with Hugging Face's ``generate`` (its KV cache and sampling, as :func:`interp.interventions.
generate`), the base reads the prompt once and then one token a step through its own KV cache (``alpha = 0`` does
not run the base at all).

>>> replies = amplified_generate(pair, ["how do i bake ?"], alpha=2.0, max_new_tokens=8)
>>> len(replies)
1
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from interp.checks import check_number
from interp.data import PromptSet
from interp.interventions import Intervention, _generate
from interp.kv_cache import cache_keyword, generation_cache


class _Amplify(LogitsProcessor):
    """Turns the aligned model's next-token logits into ``after + alpha * (after - before)``, ``before`` being the
    base's logits on the same tokens; ``prompt_mask`` is the batch's left-padded attention mask. One instance serves
    one batch's decoding: it keeps the base's KV cache between steps (``fed``: how many tokens it holds)."""

    def __init__(self, base, alpha: float, prompt_mask: Tensor, use_cache: bool):
        self.base, self.alpha, self.prompt_mask, self.use_cache = base, alpha, prompt_mask, use_cache
        self.cache, self.fed = None, 0

    @torch.no_grad()
    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        new = input_ids.shape[1] - self.prompt_mask.shape[1]
        mask = torch.cat([self.prompt_mask, self.prompt_mask.new_ones(len(input_ids), new)], 1).to(input_ids.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate counts them under left padding
        hf = self.base.original_model
        if not self.use_cache:  # this TransformerLens/transformers pair caches wrongly: the whole sequence each step
            before = hf(input_ids, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]
        else:
            out = hf(input_ids[:, self.fed:], attention_mask=mask, position_ids=positions[:, self.fed:],
                     use_cache=True, **{cache_keyword(hf): self.cache})
            cache = getattr(out, "cache", None)
            self.cache = getattr(out, "past_key_values", None) if cache is None else cache
            self.fed = input_ids.shape[1]
            before = out.logits[:, -1]
        after = scores.float()
        return (after + self.alpha * (after - before.float())).to(scores.dtype)


def amplified_generate(
    pair, prompts: PromptSet | Sequence[str], *interventions: Intervention, alpha: float = 1.0,
    max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_p: float | None = None,
    top_k: int | None = None, seed: int = 0, batch_size: int = 16, return_ids: bool = False, progress: bool = False,
) -> list[str] | list[list[int]]:
    """Replies decoded from the pair's amplified logits (module docstring), greedy or sampled as
    :func:`interp.interventions.generate` decodes (the same arguments; ``interventions`` act on the aligned model).

    ``alpha = 0`` gives the aligned model's own replies; ``alpha = -1`` the base's (``before`` alone). Processors the
    aligned checkpoint's ``generation_config`` asks for (a repetition penalty, banned words) run before the
    amplification, on the aligned logits only, as Hugging Face orders them: with such a checkpoint the amplified
    difference includes them (see ``pair.aligned.original_model.generation_config``).
    """
    alpha = check_number(alpha, "alpha")
    base = pair.base

    with ExitStack() as stack:
        base_cached = stack.enter_context(generation_cache(base)) if alpha else False

        def processors(mask: Tensor) -> LogitsProcessorList:
            return LogitsProcessorList([_Amplify(base, alpha, mask, base_cached)] if alpha else [])

        replies, _ = _generate(pair.aligned, prompts, interventions, keep_logits=False, max_new_tokens=max_new_tokens,
                               do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                               batch_size=batch_size, prompt_format=pair.prompt_format, return_ids=return_ids,
                               progress=progress, processors=processors)
    return replies
