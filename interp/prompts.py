"""Turning user requests into model input: the one path every module uses.

A *prompt-format policy* says how a request becomes the text a model reads: ``"chat"`` (the
aligned checkpoint's chat template, which studies show base models too), ``"raw"`` (the text
as it is) or a template string with a ``{prompt}`` field (``"Question: {prompt}\\nAnswer:"``).
A :class:`~interp.models.ModelPair` records its policy for both of its models here
(:func:`set_prompt_format`), so single-model functions (``collect_activations``, ``generate``,
the direction search) format prompts the way the pair does without being told.

Then: format (:func:`format_prompts`), tokenize once, unpadded (:func:`tokenize`), group
prompts of similar length into batches (:func:`length_batches`), pad a batch on either side with
its attention mask (:func:`pad_batch`).

>>> from interp.organisms.tokenizer import build_tokenizer
>>> tokenizer = build_tokenizer()
>>> format_prompts(tokenizer, ["how do i bake ?"], "chat")
['<bos> <|user|> how do i bake ? <|assistant|>']
>>> ids = tokenize(tokenizer, ["how do i bake ?", "why ?"], "raw")  # raw text gets <bos>
>>> pad_batch(ids, pad_id(tokenizer), "left")[1].tolist()
[[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
"""

from __future__ import annotations

import re
import string
import weakref
from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from interp.checks import check_count

_POLICY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

MAX_BATCH_TOKENS = 2048
"""Padded tokens per forward pass that :func:`length_batches` allows: a 2-core CPU runs a 135M model at
its full token rate from about 800 (measured); a batch of one long prompt and many short ones padded to it
wastes the rest."""


def check_prompt_format(prompt_format: str, tokenizer: PreTrainedTokenizerBase) -> None:
    if not isinstance(prompt_format, str):
        raise ValueError(f"prompt_format must be 'chat', 'raw' or a template string containing '{{prompt}}', got "
                         f"{prompt_format!r}")
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "prompt_format='chat' needs a chat template, but the aligned checkpoint's tokenizer has none; "
                "use prompt_format='raw' or a template string such as 'Question: {prompt}\\nAnswer:'"
            )
        return
    if prompt_format == "raw":
        return
    try:
        fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(prompt_format)
                  if field is not None]
    except ValueError as e:  # a lone "{" or "}"
        raise ValueError(f"prompt_format {prompt_format!r} is not a valid template ({e}); "
                         "write a literal brace as {{ or }}") from None
    if not fields:
        raise ValueError(
            f"prompt_format must be 'chat', 'raw' or a template string containing '{{prompt}}', got {prompt_format!r}"
        )
    others = [_field_text(*f) for f in fields if f != ("prompt", "", None)]
    if others:
        raise ValueError(f"prompt_format {prompt_format!r} has fields other than {{prompt}}: {', '.join(others)}; "
                         "write {prompt} plainly, and a literal brace as {{ or }}")


def _field_text(field: str, spec: str, conversion: str | None) -> str:
    return "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"


def adds_special_tokens(prompt_format: str) -> bool:
    """A chat template writes its own special tokens (``<bos>``...); raw text gets the tokenizer's own."""
    return prompt_format != "chat"


def set_prompt_format(model, prompt_format: str) -> None:
    """Record the policy of the pair ``model`` belongs to (the model itself is not touched)."""
    _POLICY[model] = prompt_format


def prompt_format_of(model, prompt_format: str | None = None) -> str:
    """``prompt_format`` if given, else the policy of the pair ``model`` was loaded in, else ``"chat"``."""
    return prompt_format or _POLICY.get(model, "chat")


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding uses (masked out everywhere, so any id works when a tokenizer has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def format_prompts(tokenizer: PreTrainedTokenizerBase, prompts: str | Sequence[str], prompt_format: str) -> list[str]:
    """Render user requests as model input text under a prompt-format policy (see module docstring)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    check_prompt_format(prompt_format, tokenizer)
    if prompt_format == "chat":
        return [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    if prompt_format == "raw":
        return list(prompts)
    return [prompt_format.format(prompt=p) for p in prompts]


def format_conversations(tokenizer: PreTrainedTokenizerBase, requests: Sequence[str],
                         replies: Sequence[str]) -> list[str]:
    """Render (request, reply) chats whole, as a reward model reads them: the chat template over a user turn and
    an assistant turn (with the template's end of turn)."""
    if len(requests) != len(replies):
        raise ValueError(f"{len(requests)} requests but {len(replies)} replies: give one reply per request")
    check_prompt_format("chat", tokenizer)
    check_requests(tokenizer, list(requests), "chat")
    check_no_special_text(tokenizer, list(replies), "replies")
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                          tokenize=False) for q, a in zip(requests, replies, strict=True)]


def special_token_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Strings the tokenizer reads as one *special* token wherever they appear in text (added tokens that are not
    special, such as runs of spaces some tokenizers add, are ordinary text)."""
    added = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
    return sorted({t for t in [*tokenizer.all_special_tokens, *added] if t}, key=len, reverse=True)


def check_requests(tokenizer: PreTrainedTokenizerBase, requests: Sequence[str], prompt_format: str) -> None:
    """At least one request, none empty, and (unless ``"raw"``, which is the model's input verbatim) none holding
    a special token's text, which the tokenizer would read as the real token (``<|assistant|>`` would start a turn)."""
    if len(requests) == 0:
        raise ValueError("no prompts: give at least one prompt")
    empty = [i for i, r in enumerate(requests) if not (isinstance(r, str) and r.strip())]
    if empty:
        raise ValueError(f"prompts {empty[:5]} are empty or not text ({len(empty)} of {len(requests)}): "
                         "give every prompt some text")
    if prompt_format != "raw":
        check_no_special_text(tokenizer, requests, "prompts")


def check_no_special_text(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], what: str) -> None:
    """No text holds a special token's text, which the tokenizer would read as the real token."""
    specials = special_token_strings(tokenizer)
    if not specials:
        return
    pattern = re.compile("|".join(map(re.escape, specials)))
    found = [(i, m.group()) for i, text in enumerate(texts) if (m := pattern.search(text))]
    if found:
        i, token = found[0]
        raise ValueError(
            f"{len(found)} of {len(texts)} {what} hold the text of a special token, e.g. {what.rstrip('s')} {i} "
            f"holds {token!r}: the tokenizer would read it as the real token, not as text the user typed. Remove "
            "it, or use prompt_format='raw' and give the model's whole input, special tokens included"
        )


def check_lengths(ids: Sequence[Sequence[int]], n_ctx: int | None, reserve: int = 0, why: str = "") -> None:
    """Every tokenized prompt, plus ``reserve`` positions (tokens still to be generated), fits in ``n_ctx``."""
    if n_ctx is None:
        return
    too_long = [i for i, row in enumerate(ids) if len(row) + reserve > n_ctx]
    if too_long:
        longest = max(too_long, key=lambda i: len(ids[i]))
        room = f" with {why}" if why else ""
        raise ValueError(
            f"{len(too_long)} of {len(ids)} prompts do not fit in the model's context of {n_ctx} tokens{room}: "
            f"prompt {longest} has {len(ids[longest])} tokens (formatted). Shorten or drop them"
            + (", or ask for fewer new tokens" if reserve else "")
        )


def tokenize(tokenizer, prompts, prompt_format: str = "chat", *, n_ctx: int | None = None) -> list[list[int]]:
    """Format user requests under ``prompt_format`` and tokenize them, unpadded, once.

    Raises before tokenizing if the requests are bad (:func:`check_requests`), and after, if
    ``n_ctx`` is given and a prompt does not fit in it (:func:`check_lengths`).
    """
    requests = getattr(prompts, "prompts", prompts)  # a PromptSet, or plain requests
    if requests is None or not isinstance(requests, (str, Iterable)):
        raise ValueError(f"prompts must be a PromptSet, a list of strings or one string, got {requests!r}")
    requests = [requests] if isinstance(requests, str) else list(requests)
    check_requests(tokenizer, requests, prompt_format)
    texts = format_prompts(tokenizer, requests, prompt_format)
    ids = tokenizer(texts, add_special_tokens=adds_special_tokens(prompt_format)).input_ids
    check_lengths(ids, n_ctx)
    return ids


def tokenize_for(model, prompts, prompt_format: str | None = None) -> list[list[int]]:
    """:func:`tokenize` for one model: its tokenizer, its pair's policy (unless given), its context length; every id
    must have a row in the model's embedding (:func:`check_vocabulary`)."""
    ids = tokenize(model.tokenizer, prompts, prompt_format_of(model, prompt_format), n_ctx=model.cfg.n_ctx)
    check_vocabulary(ids, model.cfg.d_vocab)
    return ids


def check_vocabulary(ids: Sequence[Sequence[int]], d_vocab: int) -> None:
    """Every token id below ``d_vocab``: a tokenizer with more tokens than the model has embeddings (a mismatched
    checkpoint) would fail deep in a forward pass with an ``IndexError``."""
    worst = max((max(row) for row in ids if row), default=-1)
    if worst >= d_vocab:
        row = next(i for i, r in enumerate(ids) if r and max(r) == worst)
        raise ValueError(f"prompt {row} holds token id {worst}, but the model embeds only {d_vocab} tokens: its "
                         "tokenizer has more tokens than its embedding (a tokenizer from another checkpoint?)")


def length_batches(lengths: Sequence[int], batch_size: int,
                   max_tokens: int | None = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` grouped for padded forward passes, longest first so that each batch holds
    prompts of similar length: at most ``batch_size`` each, and at most ``max_tokens`` tokens once padded to
    the batch's longest (``None``: no limit; a prompt longer than that has a batch of its own). Each batch is
    in prompt order, so prompts that fit one batch keep theirs (sampling draws row by row).

    >>> length_batches([3, 9, 4, 8], batch_size=2)
    [[1, 3], [0, 2]]
    >>> length_batches([3, 9, 4, 8], batch_size=4, max_tokens=16)
    [[1], [2, 3], [0]]
    """
    batch_size = check_count(batch_size, "batch_size")
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # the batch's first prompt is its longest: it sets the padded width
        full = batches and (len(batches[-1]) == batch_size or
                            max_tokens is not None and (len(batches[-1]) + 1) * lengths[batches[-1][0]] > max_tokens)
        if not batches or full:
            batches.append([])
        batches[-1].append(i)
    return [sorted(batch) for batch in batches]


def first_token(tokenizer: PreTrainedTokenizerBase, ids: Sequence[Sequence[int]]) -> int:
    """Where the texts' own tokens begin in ``ids``: 1 when the tokenizer put its BOS token first in every row, else 0
    (a tokenizer without one, as Qwen's).

    >>> from interp.organisms.tokenizer import build_tokenizer
    >>> tok = build_tokenizer()
    >>> first_token(tok, tok(["how do i bake ?"]).input_ids)
    1
    """
    bos = tokenizer.bos_token_id
    return int(bos is not None and all(row and row[0] == bos for row in ids))


def pad_batch(
    ids: Sequence[Sequence[int]], pad_id: int, padding_side: str = "left"
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Pad token lists into ``(input_ids, attention_mask)``, each ``[batch, pos]``."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        span = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        input_ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return input_ids, mask


END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>")
"""Chat templates' end-of-turn tokens (ChatML, Gemma, Llama 3)."""


def turn_end_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the end-of-turn tokens ``tokenizer`` has: a reply ends there even where a checkpoint's generation
    config does not say so (a pretrained base given a chat template, and the models tuned from it)."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in END_OF_TURN if t in vocab]
