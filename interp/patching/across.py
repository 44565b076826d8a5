"""Patching across the pair, and the inputs patching needs: prompts of one length, a behaviour metric.

Cross-model patching runs the *target* model (say the base) on some prompts and patches in,
one cell at a time, the *source* model's (the aligned one's) activation at that cell on the
same prompts: which of the aligned model's activations bring the aligned behaviour with them
into the base? The reverse direction asks which base activations undo it in the aligned model.

>>> tokens = common_length_tokens(pair.aligned, harmful, limit=4)
>>> heat = patch_across(pair.aligned, pair.base, tokens, refusal_metric(pair.tokenizer, ["sorry"]),
...                     "resid_pre", reduce="mean", progress=False)
>>> heat.shape == (pair.cfg.n_layers, tokens.shape[1])  # [layer, pos]
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.data import PromptSet
from interp.metrics import refusal_score, token_ids
from interp.patching.exact import SITES, check_tokens, sweep
from interp.prompts import tokenize_for

SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "n_key_value_heads")


def prompt_tokens(
    model, prompts: PromptSet | Sequence[str], prompt_format: str | None = None
) -> Int[Tensor, "batch pos"]:
    """Formatted prompts as one ``[batch, pos]`` tensor; they must all tokenize to one length.

    Patching swaps activations position by position, so the prompts it compares must line up
    without padding. ``prompt_format`` defaults to the policy of the pair the model was loaded in.
    """
    ids = tokenize_for(model, prompts, prompt_format)
    if not ids:
        raise ValueError("no prompts given")
    lengths = Counter(len(row) for row in ids)
    if len(lengths) > 1:
        raise ValueError(f"the prompts tokenize to different lengths {dict(sorted(lengths.items()))} (length: "
                         "count); patching needs one length: select them, or pair them with equal_length_pairs")
    return torch.tensor(ids, dtype=torch.long)


def common_length_tokens(
    model, prompts: PromptSet | Sequence[str], limit: int | None = None, prompt_format: str | None = None,
) -> Int[Tensor, "batch pos"]:
    """The prompts of the most common token length (the first ``limit`` of them), as ``[batch, pos]``."""
    ids = tokenize_for(model, prompts, prompt_format)
    if not ids:
        raise ValueError("no prompts given")
    length = Counter(len(row) for row in ids).most_common(1)[0][0]
    return torch.tensor([row for row in ids if len(row) == length][:limit], dtype=torch.long)


def equal_length_pairs(
    model, clean: PromptSet | Sequence[str], corrupted: PromptSet | Sequence[str], prompt_format: str | None = None,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """``(clean_tokens, corrupted_tokens)`` of the pairs ``zip(clean, corrupted)`` of the most common shared length.

    Pairs whose two prompts differ in length, or whose length is not the most common, are left out.
    """
    if len(clean) != len(corrupted):
        raise ValueError(f"{len(clean)} clean prompts but {len(corrupted)} corrupted ones: they are paired in order")
    pairs = [(a, b) for a, b in zip(tokenize_for(model, clean, prompt_format),
                                    tokenize_for(model, corrupted, prompt_format), strict=True)
             if len(a) == len(b)]
    if not pairs:
        raise ValueError("no clean/corrupted pair tokenizes to equal lengths")
    length = Counter(len(a) for a, _ in pairs).most_common(1)[0][0]
    kept = [(a, b) for a, b in pairs if len(a) == length]
    return torch.tensor([a for a, _ in kept]), torch.tensor([b for _, b in kept])


def length_matched_pairs(
    model, clean: PromptSet | Sequence[str], corrupted: PromptSet | Sequence[str], limit: int | None = None,
    prompt_format: str | None = None,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """``(clean_tokens, corrupted_tokens)``: prompts of the two sets paired by token length, not by order.

    Real prompt sets have no minimal pairs (a harmful request and the harmless one with one word changed), so each
    clean prompt is paired with a corrupted prompt of its length, in the order of each set, at the one length that
    pairs the most (the shorter on a tie), at most ``limit`` pairs. Their positions line up only where a prompt
    format puts the same tokens (the post-instruction positions): sweep those (``last_positions``).
    """
    ids = {name: tokenize_for(model, prompts, prompt_format) for name, prompts in (("clean", clean),
                                                                                   ("corrupted", corrupted))}
    by_length = {name: Counter(len(row) for row in rows) for name, rows in ids.items()}
    shared = {n: min(by_length["clean"][n], by_length["corrupted"][n]) for n in by_length["clean"]}
    if not any(shared.values()):
        raise ValueError("no clean prompt tokenizes to the length of any corrupted one: nothing to pair")
    length = max(sorted(shared), key=lambda n: shared[n])
    kept = min(shared[length], limit or shared[length])
    clean_ids, corrupted_ids = ([row for row in ids[name] if len(row) == length][:kept] for name in ids)
    return torch.tensor(clean_ids), torch.tensor(corrupted_ids)


def position_labels(tokenizer, tokens: Int[Tensor, "batch pos"], varies: str = "⟨varies⟩") -> list[str]:
    """One label per position for a heatmap's axis: the token where every prompt holds the same one,
    ``varies`` where they differ.

    >>> from transformers import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained(base_dir)
    >>> position_labels(tok, tok(["how do i bake ?", "how do i rob ?"], return_tensors="pt").input_ids)
    ['<bos>', 'how', 'do', 'i', '⟨varies⟩', '?']
    """
    same = (tokens == tokens[0]).all(0)
    return [t if same[i] else varies for i, t in enumerate(tokenizer.convert_ids_to_tokens(tokens[0]))]


def refusal_metric(tokenizer, refusal_tokens: Sequence[str]) -> Callable[[Tensor], Float[Tensor, " batch"]]:
    """A patching metric: the refusal log-odds of each prompt's next token after its last position.

    Returns one value per prompt, so use it with ``reduce="mean"`` (or ``"none"``).
    """
    ids = token_ids(tokenizer, refusal_tokens)

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        return refusal_score(logits[:, -1], ids)

    return metric


def check_same_shapes(source, target) -> None:
    """Raise unless the two models' hooks have the same shapes (layers, widths, heads)."""
    for field in SHAPE_FIELDS:
        a, b = getattr(source.cfg, field, None), getattr(target.cfg, field, None)
        if a != b:
            raise ValueError(f"cannot patch across models whose hook shapes differ: {field} is {a} in the source "
                             f"and {b} in the target")


def patch_across(
    source, target, tokens: Int[Tensor, "batch pos"], patching_metric: Callable | Mapping[str, Callable],
    kind: str = "resid_pre", **kwargs,
):
    """Patch ``source``'s activations into ``target`` on the same ``tokens``, one cell of ``kind`` at a time.

    ``kind`` is a sweep of :data:`interp.patching.SITES` (``"resid_pre"``, ``"attn_head_out_all_pos"``,
    ...); the result has that sweep's layout, scored by ``patching_metric`` on ``target``'s
    logits. Keywords (``reduce``, ``baseline``, ``max_batch``, ``progress``) are the exact sweeps'.
    """
    if kind not in SITES:
        raise ValueError(f"unknown sweep {kind!r}; choose from {', '.join(SITES)}")
    check_same_shapes(source, target)
    check_tokens(tokens)
    site = SITES[kind]
    names = [site.hook_name(layer) for layer in range(source.cfg.n_layers)]
    with torch.no_grad():
        _, cache = source.run_with_cache(tokens.to(source.cfg.device), names_filter=names)
    return sweep(target, tokens, cache, patching_metric, site, **kwargs)
