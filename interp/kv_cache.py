"""A KV cache for generation through a TransformerBridge that is checked to be correct.

Generation runs Hugging Face's own ``generate`` on the bridge's wrapped model
(``bridge.original_model``), so the bridge's hook points fire at every step (interventions
apply) while decoding, sampling, padding and stopping are exactly Hugging Face's.

Why a module of its own: with transformers >= 5 the decoder layers hand each attention module
its KV cache under the keyword ``cache``, while TransformerLens 4.3's attention bridges look
for ``past_key_values`` (or ``layer_past``), find nothing and attend to the newest token alone:
every cached step after the first is wrong. :func:`cache_keyword_alias` passes the cache under
both names for the duration of a ``with`` block. Whether the cached path is then right is not
assumed: :func:`cached_decoding_is_exact` compares one cached decoding step with the plain
forward pass, once per model, and :func:`generation_cache` falls back to recomputing the whole
prefix at every step (slower, always correct) when they differ.
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from interp import matmul

_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
ATOL = 1e-4


def attention_modules(model) -> list[torch.nn.Module]:
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return [m for m in model.modules() if isinstance(m, AttentionBridge)]


def _alias(module, args, kwargs):
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        return args, {**kwargs, "past_key_values": kwargs["cache"]}
    return None


@contextmanager
def attention_arguments(model, rewrite) -> Iterator[None]:
    """Inside the block, every attention bridge of ``model`` is called with the keyword arguments
    ``rewrite(module, args, kwargs)`` returns (``(args, kwargs)``, or None to leave them)."""
    handles = [m.register_forward_pre_hook(rewrite, with_kwargs=True) for m in attention_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def cache_keyword_alias(model):
    """Inside the block, every attention bridge of ``model`` also receives the cache as ``past_key_values``."""
    return attention_arguments(model, _alias)


def cache_keyword(hf) -> str:
    """The name under which this transformers version's forward takes a KV cache."""
    return "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"


@torch.no_grad()
def cached_decoding_is_exact(model, atol: float = ATOL) -> bool:
    """Does one cached decoding step give the logits of the plain forward pass (left padding included)?

    Checked on random tokens, once per model (the answer is remembered), with float32 products whatever the model
    multiplies in (:mod:`interp.matmul`): bfloat16 rounding is not a wrong cache.
    """
    if model in _CHECKED:
        return _CHECKED[model]
    hf = model.original_model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.cfg.d_vocab, (2, 7), generator=gen).to(model.cfg.device)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # the second row is left-padded
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    try:
        with cache_keyword_alias(model), matmul.using(model, torch.float32), torch.no_grad():
            full = hf(ids, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]
            first = hf(ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
            cache = getattr(first, "cache", None)
            cache = getattr(first, "past_key_values", None) if cache is None else cache
            step = hf(ids[:, -1:], attention_mask=mask, position_ids=positions[:, -1:], use_cache=True,
                      **{cache_keyword(hf): cache}).logits[:, -1]
        scale = max(1.0, full.abs().max().item())
        exact = bool(cache is not None and ((step - full).abs().max().item() <= atol * scale))
    except Exception:  # a cached path that cannot even run is not exact either: fall back
        exact = False
    _CHECKED[model] = exact
    return exact


@contextmanager
def generation_cache(model) -> Iterator[bool]:
    """Set ``model`` up for Hugging Face ``generate``; yields whether to use the KV cache.

    The cache is used only when :func:`cached_decoding_is_exact`; otherwise a warning says so
    and generation recomputes every step from the whole prefix.
    """
    exact = cached_decoding_is_exact(model)
    if not exact:
        warnings.warn(
            "this TransformerLens/transformers pair decodes wrongly with a KV cache on this model; "
            "generating without one (correct, slower)", RuntimeWarning, stacklevel=3,
        )
    with cache_keyword_alias(model):
        yield exact
