"""Outside oracles the tests share: Hugging Face's own code, loaded apart from the library."""

from __future__ import annotations

import torch


def hf_generate(checkpoint, prompts, *, attn_implementation: str | None = None, prefill=None,
                **kwargs) -> list[list[int]]:
    """The outside oracle for generation: Hugging Face's own model and tokenizer, loaded apart from the
    bridge, on chat-formatted, left-padded prompts (each followed by its ``prefill`` text when given);
    each reply cut at the first end or padding token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    tok.pad_token = tok.pad_token or tok.eos_token
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(checkpoint, **extra).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    if prefill is not None:
        texts = [f"{t} {p}" for t, p in zip(texts, prefill, strict=True)]
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kwargs)
    stops = {tok.eos_token_id, tok.pad_token_id}
    return [row[: next((i for i, t in enumerate(row) if t in stops), len(row))]
            for row in out[:, enc.input_ids.shape[1]:].tolist()]
