"""Interventions as values, applied by one context manager that always cleans up.

Each intervention is a small frozen dataclass describing an edit; :func:`apply` turns a list
of them into forward hooks on one model for the duration of a ``with`` block (forward passes,
``run_with_cache``, :func:`generate`), and removes every hook on exit, even when the body
raises. Hooks return new tensors: neither the caller's tensors nor the model's weights change.

``positions`` index the model's input as it is, along ``pos``: ``None`` is every position;
with left padding (the library's default) ``-1`` is each prompt's last token.

>>> tokens = pair.to_tokens(requests).input_ids
>>> with apply(model, AblateDirection(r_hat), AddVector(v, layer=1, scale=4.0)):
...     logits = model(tokens)
>>> logits.shape  # [batch, pos, d_vocab]; the hooks are gone again
torch.Size([3, 10, 205])
>>> sum(len(h._forward_hooks) for h in model.hook_dict.values())
0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.checks import as_positions, check_count, check_layer, check_layers, check_number, check_vector
from interp.data import PromptSet
from interp.kv_cache import generation_cache
from interp.prompts import (
    check_lengths,
    check_no_special_text,
    length_batches,
    pad_batch,
    pad_id,
    prompt_format_of,
    tokenize_for,
    turn_end_ids,
)

Hook = tuple[str, Callable]
RESIDUAL_WRITERS = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")
"""Where directional ablation edits: the stream entering each block and what each sublayer writes."""


def _index(positions: int | Sequence[int] | None, what: str):
    """An indexer along ``pos`` for ``positions``, and a check that they exist in an input of a given length."""
    if positions is None:
        return slice(None), lambda length: None
    try:
        wanted = as_positions(positions, "None, an int or a list of ints")
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    wanted = [wanted] if isinstance(wanted, int) else wanted

    def check(length: int) -> None:
        bad = [p for p in wanted if not -length <= p < length]
        if bad:
            raise ValueError(f"{what}: positions {bad} do not exist in this input of {length} positions "
                             f"(positions index the padded input along pos; -1 is the last)")

    return wanted, check


@dataclass(frozen=True, eq=False)
class AblateDirection:
    """Project a direction out of the residual stream: ``x - (x . r) r`` with ``r`` the unit direction.

    By default at every layer, on the stream entering each block and on what attention and the
    MLP write to it (Arditi et al. 2024), at every position.
    """

    direction: Float[Tensor, " d_model"]
    layers: Sequence[int] | None = None
    hooks_at: Sequence[str] = RESIDUAL_WRITERS
    positions: int | Sequence[int] | None = None

    def hooks(self, model) -> list[Hook]:
        check_vector(model, self.direction, "the direction to ablate", nonzero=True)
        layers = range(model.cfg.n_layers) if self.layers is None else self.layers
        check_layers(model, layers)
        ablate = _projection_setter(self.direction, None, self.positions, type(self).__name__)
        return [(f"blocks.{layer}.{name}", ablate) for layer in layers for name in self.hooks_at]


def _projection_setter(direction: Tensor, value: float | None, positions, what: str) -> Callable:
    """A hook setting the component along ``direction`` to ``value`` at ``positions`` (``None``: removing it)."""
    unit = direction / direction.norm()
    index, check_input = _index(positions, what)

    def set_projection(x: Tensor, hook) -> Tensor:
        check_input(x.shape[1])
        r = unit.to(x.device, x.dtype)
        out = x.clone()
        part = out[:, index]
        along = (part @ r)[..., None] * r
        out[:, index] = part - along if value is None else part - along + value * r
        return out

    return set_projection


@dataclass(frozen=True, eq=False)
class AddVector:
    """Add ``scale * vector`` to the residual stream entering one layer (activation addition)."""

    vector: Float[Tensor, " d_model"]
    layer: int
    scale: float = 1.0
    hook_at: str = "hook_resid_pre"
    positions: int | Sequence[int] | None = None

    def hooks(self, model) -> list[Hook]:
        check_vector(model, self.vector, "the vector to add")
        check_layer(model, self.layer)
        check_number(self.scale, "AddVector's scale")
        index, check_input = _index(self.positions, type(self).__name__)

        def add(x: Tensor, hook) -> Tensor:
            check_input(x.shape[1])
            out = x.clone()
            out[:, index] = out[:, index] + self.scale * self.vector.to(x.device, x.dtype)
            return out

        return [(f"blocks.{self.layer}.{self.hook_at}", add)]


@dataclass(frozen=True, eq=False)
class SetProjection:
    """Set the residual stream's component along a direction to ``value``: ``x + (value - x . r) r``, with ``r`` the
    unit direction, on the stream entering one layer, at ``positions`` (default every position)."""

    direction: Float[Tensor, " d_model"]
    value: float
    layer: int
    positions: int | Sequence[int] | None = None
    hook_at: str = "hook_resid_pre"

    def hooks(self, model) -> list[Hook]:
        check_vector(model, self.direction, "the direction to set", nonzero=True)
        check_layer(model, self.layer)
        check_number(self.value, "SetProjection's value")
        set_projection = _projection_setter(self.direction, float(self.value), self.positions, type(self).__name__)

        return [(f"blocks.{self.layer}.{self.hook_at}", set_projection)]


@dataclass(frozen=True, eq=False)
class PatchFromCache:
    """Replace one hook's activation with the same hook's activation from a cache.

    ``cache`` maps hook names to tensors ``[batch, pos, ...]`` (an ``ActivationCache`` works),
    recorded on inputs of the same shape; ``positions`` limits the patch.
    """

    hook_name: str
    cache: Mapping[str, Tensor]
    positions: int | Sequence[int] | None = None

    def hooks(self, model) -> list[Hook]:
        if self.hook_name not in model.hook_dict:
            raise ValueError(f"unknown hook {self.hook_name!r}")
        if self.hook_name not in self.cache:
            raise ValueError(f"the cache has no activation for {self.hook_name!r}")
        source = self.cache[self.hook_name]
        index, check_input = _index(self.positions, type(self).__name__)

        def patch(x: Tensor, hook) -> Tensor:
            check_input(x.shape[1])
            if source.shape != x.shape:
                raise ValueError(
                    f"cached {self.hook_name} has shape {list(source.shape)}, the run has {list(x.shape)}"
                )
            out = x.clone()
            out[:, index] = source[:, index].to(x.device, x.dtype)
            return out

        return [(self.hook_name, patch)]


@dataclass(frozen=True, eq=False)
class AblateComponent:
    """Zero- or mean-ablate one attention head's output (``hook_z``) or one MLP's output.

    For ``mode="mean"``, ``mean`` is the replacement: ``[d_head]`` for a head, ``[d_model]``
    for an MLP (e.g. averaged over a reference prompt set with
    :func:`interp.cache.collect_activations`).
    """

    layer: int
    component: Literal["head", "mlp"]
    head: int | None = None
    mode: Literal["zero", "mean"] = "zero"
    mean: Tensor | None = None
    positions: int | Sequence[int] | None = None

    def hooks(self, model) -> list[Hook]:
        check_layer(model, self.layer)
        if self.mode not in ("zero", "mean"):
            raise ValueError(f"mode must be 'zero' or 'mean', got {self.mode!r}")
        if self.component == "head":
            if self.head is None or not 0 <= self.head < model.cfg.n_heads:
                raise ValueError(f"head must be in 0..{model.cfg.n_heads - 1}, got {self.head}")
            name, width, where = f"blocks.{self.layer}.attn.hook_z", model.cfg.d_head, (self.head,)
        elif self.component == "mlp":
            if self.head is not None:
                raise ValueError("an MLP has no heads: leave head=None")
            name, width, where = f"blocks.{self.layer}.hook_mlp_out", model.cfg.d_model, ()
        else:
            raise ValueError(f"component must be 'head' or 'mlp', got {self.component!r}")
        if self.mode == "mean" and (self.mean is None or list(self.mean.shape) != [width]):
            raise ValueError(f"mean ablation of a {self.component} needs mean of shape [{width}]")
        index, check_input = _index(self.positions, type(self).__name__)

        def ablate(x: Tensor, hook) -> Tensor:
            check_input(x.shape[1])
            out = x.clone()
            value = 0.0 if self.mode == "zero" else self.mean.to(x.device, x.dtype)
            out[(slice(None), index, *where)] = value
            return out

        return [(name, ablate)]


@dataclass(frozen=True, eq=False)
class ReplaceWeights:
    """Run with some parameters replaced: ``weights`` maps parameter names (as in
    ``model.named_parameters(remove_duplicate=False)``) to tensors of the same shapes.

    The model's own parameters are put back on exit; the tensors given are never written to.
    :mod:`interp.diff` builds these to swap or interpolate layers between two checkpoints.
    A bridge may hold a weight under several names, of which the forward pass reads only some
    (GPT-2's bridge computes with its split ``attn.q/k/v`` copies, not with ``c_attn``): replace
    every name of a weight, as :func:`interp.diff.interpolated_weights` does for whole modules.
    """

    weights: Mapping[str, Tensor]

    def hooks(self, model) -> list[Hook]:
        params = dict(model.named_parameters(remove_duplicate=False))
        for name, value in self.weights.items():
            if name not in params:
                raise ValueError(f"the model has no parameter {name!r}")
            if value.shape != params[name].shape:
                raise ValueError(f"{name} has shape {list(params[name].shape)}, the replacement {list(value.shape)}")
        return []


Intervention = AblateDirection | AddVector | PatchFromCache | AblateComponent | ReplaceWeights


@contextmanager
def _replaced(model, weights: Mapping[str, Tensor]) -> Iterator:
    """Swap parameters in, and always put the originals back."""
    originals = []
    try:
        for name, value in weights.items():
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            originals.append((owner, attr, owner._parameters[attr]))
            original = owner._parameters[attr]
            owner._parameters[attr] = torch.nn.Parameter(
                value.detach().to(original.device, original.dtype), requires_grad=False
            )
        yield
    finally:
        for owner, attr, original in reversed(originals):
            owner._parameters[attr] = original


@contextmanager
def apply(model, *interventions: Intervention) -> Iterator:
    """Apply interventions to ``model`` inside a ``with`` block; everything is undone on exit.

    All interventions are checked against the model (shapes, layer and head ranges, hook and
    parameter names) before any hook is added or weight replaced.
    """
    hooks = [hook for intervention in interventions for hook in intervention.hooks(model)]
    weights = {k: v for iv in interventions if isinstance(iv, ReplaceWeights) for k, v in iv.weights.items()}
    with _replaced(model, weights), model.hooks(fwd_hooks=hooks):
        yield model


@torch.no_grad()
def generate(
    model,
    prompts: PromptSet | Sequence[str],
    *interventions: Intervention,
    max_new_tokens: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    prompt_format: str | None = None,
    prefill: str | Sequence[str] = "",
    return_ids: bool = False,
    keep_prefill: bool = False,
    progress: bool = False,
) -> list[str] | list[list[int]]:
    """Replies of ``model`` to each prompt under ``interventions``, greedy or sampled, batched.

    Decoding is Hugging Face's ``generate`` on the bridge's own model with the interventions'
    hooks in place, so with no intervention the replies are token for token those of
    ``AutoModelForCausalLM.generate`` on the same checkpoint, prompts (left-padded) and seed;
    sampling draws from the model's distribution at ``temperature``, cut to ``top_k`` / ``top_p``
    when given (nothing else: HF's own default of ``top_k=50`` is not applied, so compare with
    HF at ``top_k=0``). A KV cache is used where it is checked exact (:mod:`interp.kv_cache`).
    Stops at any end-of-turn token (:func:`end_of_turn_ids`).

    ``prefill`` is text put in the model's mouth after each formatted prompt (e.g. the start of
    a refusal), or one such text per prompt; the returned replies continue it and do not repeat it, unless
    ``keep_prefill``: then each reply is its prefill's tokens and the new ones decoded together (so a word the two
    share is read whole, as a judge must read it). ``prompt_format``
    defaults to the policy of the pair the model was loaded in. With ``return_ids`` the replies
    are the generated token ids, up to (not including) the end-of-turn token: exactly what the
    model produced, for :func:`interp.metrics.compare_responses`.
    Interventions must act on every position (``positions=None``): generation feeds one new
    token at a time, so positions counted within a forward pass would move. ``progress`` shows a
    bar over the batches.
    """
    return _generate(model, prompts, interventions, keep_logits=False, max_new_tokens=max_new_tokens,
                     do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                     batch_size=batch_size, prompt_format=prompt_format, prefill=prefill, return_ids=return_ids,
                     keep_prefill=keep_prefill, progress=progress)[0]


def generate_with_answer_logits(
    model, prompts: PromptSet | Sequence[str], *interventions: Intervention, **kwargs,
) -> tuple[list[str] | list[list[int]], Float[Tensor, "batch d_vocab"]]:
    """:func:`generate`'s replies (the same keyword arguments) and the logits each prompt's first new token was chosen
    from (float32, on the CPU, in prompt order): the next-token logits at the answer position, which
    :func:`interp.metrics.answer_logits` reads in a pass of its own (with a ``prefill``, after the prefill instead).
    One prefill serves both (e.g. a refusal score and a judged reply)."""
    return _generate(model, prompts, interventions, keep_logits=True, **kwargs)


def _generate(model, prompts, interventions, *, keep_logits: bool, max_new_tokens: int = 16, do_sample: bool = False,
              temperature: float = 1.0, top_p: float | None = None, top_k: int | None = None, seed: int = 0,
              batch_size: int = 32, prompt_format: str | None = None, prefill: str | Sequence[str] = "",
              return_ids: bool = False, keep_prefill: bool = False, progress: bool = False,
              processors: Callable[[Tensor], list] | None = None):
    """:func:`generate`'s work; ``processors(mask)`` gives the logits processors for one batch from its prompts'
    attention mask (left-padded), applied before any sampling warper (e.g. :mod:`interp.diff.amplify`)."""
    positional = [iv for iv in interventions if getattr(iv, "positions", None) is not None]
    if positional:
        raise ValueError(f"interventions with positions cannot be used in generation: {positional}")
    check_count(max_new_tokens, "max_new_tokens")
    check_count(batch_size, "batch_size")
    if do_sample:
        check_number(temperature, "temperature", low=0, open_low=True)
        check_number(1.0 if top_p is None else top_p, "top_p", low=0, high=1, open_low=True)
        check_count(top_k or 0, "top_k", least=0)
    ids = tokenize_for(model, prompts, prompt_format)
    prefills = [prefill] * len(ids) if isinstance(prefill, str) else list(prefill)
    if len(prefills) != len(ids):
        raise ValueError(
            f"prefill holds {len(prefills)} texts for {len(ids)} prompts; give one text, or one per prompt"
        )
    extra = [[] for _ in ids]
    if any(prefills):
        if prompt_format_of(model, prompt_format) != "raw":
            check_no_special_text(model.tokenizer, prefills, "prefills")
        extra = model.tokenizer(prefills, add_special_tokens=False).input_ids
        ids = [row + more for row, more in zip(ids, extra, strict=True)]
    check_lengths(ids, model.cfg.n_ctx, reserve=max_new_tokens,
                  why=f"{'their prefill and ' if any(prefills) else ''}max_new_tokens={max_new_tokens} after them")
    pad = pad_id(model.tokenizer)
    eos = end_of_turn_ids(model)
    stops = set(eos) | ({model.tokenizer.pad_token_id} - {None})
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0) if do_sample else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    replies, first = [None] * len(ids), [None] * len(ids)
    try:
        with generation_cache(model) as use_cache, apply(model, *interventions):
            for rows in tqdm(length_batches([len(row) for row in ids], batch_size), desc="generate", unit="batch",
                             disable=not progress, leave=False):
                input_ids, mask = pad_batch([ids[i] for i in rows], pad, "left")
                extra_processors = {"logits_processor": processors(mask)} if processors is not None else {}
                out = model.original_model.generate(
                    input_ids.to(model.cfg.device), attention_mask=mask.to(model.cfg.device),
                    max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, use_cache=use_cache,
                    output_logits=keep_logits, return_dict_in_generate=True, **sampling, **extra_processors,
                )
                if keep_logits:
                    for i, row in zip(rows, out.logits[0].float().cpu(), strict=True):
                        first[i] = row
                new = out.sequences[:, input_ids.shape[1] :]
                if return_ids:
                    done = [_until(row.tolist(), stops) for row in new]
                elif keep_prefill:
                    done = decode(model, [extra[i] + _until(row.tolist(), stops) for i, row in zip(rows, new,
                                                                                                    strict=True)])
                else:
                    done = [r.strip() for r in model.tokenizer.batch_decode(new, skip_special_tokens=True)]
                for i, reply in zip(rows, done, strict=True):
                    replies[i] = reply
    finally:
        torch.random.set_rng_state(generator_state)
    return replies, torch.stack(first) if keep_logits else None


def decode(model, ids: Sequence[Sequence[int]]) -> list[str]:
    """Replies given as token ids (``generate(..., return_ids=True)``) as the texts ``generate`` returns for them."""
    return [r.strip() for r in model.tokenizer.batch_decode([list(i) for i in ids], skip_special_tokens=True)]


def end_of_turn_ids(model) -> list[int]:
    """The tokens generation stops at: the checkpoint's ``generation_config`` end tokens (chat models
    list several), the tokenizer's end-of-sequence token and its chat template's end-of-turn token
    (:func:`interp.prompts.turn_end_ids`)."""
    configured = getattr(getattr(model.original_model, "generation_config", None), "eos_token_id", None)
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    eos = [t for t in (model.tokenizer.eos_token_id,) if t is not None]
    return list(dict.fromkeys(configured + eos + turn_end_ids(model.tokenizer)))


def _until(ids: list[int], stops: set[int]) -> list[int]:
    """Token ids up to the first end-of-turn (or padding) token."""
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids
