"""The batched patching engine: many patches per forward pass, each pass starting at its layer.

TransformerLens's patching runs one forward pass per patched cell. Here the cells of one
layer are stacked along the batch axis (``copies`` copies of the corrupted batch, each with a
different cell patched by one hook that writes through a mask), and the pass starts at that
layer: the blocks below it compute the same thing for every copy, so their outputs are taken
from the corrupted run instead of recomputed.

Starting mid-model is done by replaying the blocks with the arguments the model's own forward
handed them on the corrupted run (attention mask, rotary embeddings, ...), recorded once.
(The bridge's ``start_at_layer`` still executes the blocks below, so it saves nothing.) The
replay is checked against the plain forward before it is trusted; if the two disagree (an
architecture whose top-level forward does more than blocks, final norm and unembedding) every
pass falls back to the whole model, still batched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from weakref import WeakKeyDictionary

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor
from transformers.cache_utils import Cache

Hook = tuple[str, Callable]
REPLAY_ATOL = 1e-4
LOGITS_BUDGET_BYTES = 512 * 2**20
"""Default bound on the logits of one batched pass (the largest tensor a pass makes)."""
MERGE_BELOW = 256
"""Cells of several layers share one pass (starting at the lowest) while it holds at most this many
sequences: a pass that small costs its fixed per-block overhead, not its arithmetic."""
_VERIFIED: WeakKeyDictionary = WeakKeyDictionary()  # model -> {(batch, pos): replay matches the forward}


def _record(store: dict, index: int, module, args: tuple, kwargs: dict) -> None:
    store[index] = (args, kwargs)


def _without_kv_cache(value):
    """A recorded argument with any key/value cache dropped: a replay must not extend it."""
    if isinstance(value, Cache):
        return None
    if isinstance(value, tuple):
        return tuple(_without_kv_cache(v) for v in value)
    return value


def _tile(value, copies: int, batch: int):
    """Repeat a recorded argument along the batch axis for ``copies`` stacked copies of the batch."""
    if isinstance(value, tuple):
        return tuple(_tile(v, copies, batch) for v in value)
    if not isinstance(value, Tensor) or value.ndim == 0 or copies == 1:
        return value
    if value.shape[0] == batch and batch > 1:
        return value.repeat(copies, *([1] * (value.ndim - 1)))
    if value.shape[0] == 1:
        return value.expand(copies * batch, *value.shape[1:]) if batch == 1 else value
    return value


class Runner:
    """Forward passes over stacked copies of one corrupted batch, each starting at a given layer.

    A pass from layer 0 is a plain forward of the tiled tokens. Before the first pass that
    starts higher, one forward of the corrupted batch records the residual stream entering
    every block and the arguments each block was called with; such passes replay the blocks
    from there (once checked, per model and input shape, to reproduce the plain forward).
    """

    def __init__(self, model, tokens: Int[Tensor, "batch pos"]):
        self.model = model
        self.tokens = tokens.to(model.cfg.device)
        self.batch = tokens.shape[0]
        self.n_layers = model.cfg.n_layers
        self._recording: tuple | None = None

    @property
    def recording(self) -> tuple[Tensor, list[Tensor], dict[int, tuple]]:
        """``(logits, resid_pre per layer, block arguments per layer)`` of the corrupted run, recorded once."""
        if self._recording is None:
            calls: dict[int, tuple] = {}
            handles = [
                block.register_forward_pre_hook(partial(_record, calls, i), with_kwargs=True)
                for i, block in enumerate(self.model.blocks)
            ]
            names = [f"blocks.{layer}.hook_resid_pre" for layer in range(self.n_layers)]
            try:
                with torch.no_grad():
                    logits, cache = self.model.run_with_cache(self.tokens, names_filter=names)
            finally:
                for handle in handles:
                    handle.remove()
            for i, (args, kwargs) in calls.items():
                kwargs = {k: _without_kv_cache(v) for k, v in kwargs.items()}
                if "use_cache" in kwargs:
                    kwargs["use_cache"] = False
                calls[i] = (_without_kv_cache(args), kwargs)
            self._recording = (logits, [cache[name] for name in names], calls)
        return self._recording

    @property
    def replays(self) -> bool:
        """Whether passes may start mid-model: the replay reproduces the plain forward for this shape."""
        verified = _VERIFIED.setdefault(self.model, {})
        shape = tuple(self.tokens.shape)
        if shape not in verified:
            verified[shape] = len(self.recording[2]) == self.n_layers and self._replay_matches()
        return verified[shape]

    def _replay_matches(self) -> bool:
        logits = self.recording[0]
        try:
            replayed = self._replay(0, 2)
        except Exception:  # an architecture whose blocks cannot be called on their own
            return False
        expected = logits.repeat(2, *([1] * (logits.ndim - 1)))
        return replayed.shape == expected.shape and torch.allclose(replayed, expected, atol=REPLAY_ATOL, rtol=1e-4)

    def _replay(self, layer: int, copies: int) -> Tensor:
        _, resid, calls = self.recording
        x = resid[layer].repeat(copies, 1, 1)
        for i in range(layer, self.n_layers):
            args, kwargs = calls[i]
            args = _tile(args[1:], copies, self.batch)
            kwargs = {k: _tile(v, copies, self.batch) for k, v in kwargs.items()}
            out = self.model.blocks[i](x, *args, **kwargs)
            x = out[0] if isinstance(out, tuple) else out
        return self.model.unembed(self.model.ln_final(x))

    @torch.no_grad()
    def run(self, layer: int, copies: int, hooks: Sequence[Hook]) -> Float[Tensor, "copies_batch pos d_vocab"]:
        """Logits of ``copies`` stacked copies of the corrupted batch under ``hooks``.

        Blocks below ``layer`` may be skipped, so hooks must sit at or above ``layer``.
        Copy ``c`` occupies rows ``c * batch : (c + 1) * batch``.
        """
        replay = layer > 0 and self.replays
        if replay:
            self.recording  # noqa: B018 - record the corrupted run now, not under these hooks
        with self.model.hooks(fwd_hooks=list(hooks)):
            if not replay:
                return self.model(self.tokens.repeat(copies, 1))
            return self._replay(layer, copies)


def copies_per_pass(runner: Runner, max_batch: int | None) -> int:
    """How many copies of the batch one pass may stack: ``max_batch`` sequences, or a logits budget."""
    if max_batch is not None:
        if max_batch < runner.batch:
            raise ValueError(f"max_batch={max_batch} is smaller than the batch of {runner.batch} prompts")
        return max_batch // runner.batch
    per_copy = runner.tokens.numel() * runner.model.cfg.d_vocab * 4
    return max(1, LOGITS_BUDGET_BYTES // per_copy)


def plan(cells: Sequence[Sequence[tuple]], per_pass: int, batch: int) -> list[list[tuple[int, tuple]]]:
    """Group the cells of every layer (``cells[layer]``) into passes of ``(layer, cell)``, layers ascending.

    A pass holds at most ``per_pass`` copies; small layers share a pass up to :data:`MERGE_BELOW` sequences.
    """
    passes: list[list[tuple[int, tuple]]] = []
    current: list[tuple[int, tuple]] = []
    for layer, layer_cells in enumerate(cells):
        for start in range(0, len(layer_cells), per_pass):
            chunk = [(layer, cell) for cell in layer_cells[start : start + per_pass]]
            size = len(current) + len(chunk)
            if current and size <= per_pass and size * batch <= MERGE_BELOW:
                current += chunk
            else:
                if current:
                    passes.append(current)
                current = chunk
    return passes + [current] if current else passes


def patch_hook(clean: Tensor, selections: Sequence[tuple | None]) -> Callable:
    """One hook patching copy ``c`` of the stacked batch at ``selections[c]`` from ``clean``.

    ``clean`` is the clean activation ``[batch, ...]``; a selection indexes its non-batch axes
    (``None``: that copy is not patched here).
    """
    mask = torch.zeros((len(selections), *clean.shape[1:]), dtype=torch.bool, device=clean.device)
    for copy, selection in enumerate(selections):
        if selection is not None:
            mask[(copy, *selection)] = True
    mask = mask[:, None]  # broadcast over the prompts of each copy

    def patch(activation: Tensor, hook) -> Tensor:
        if activation.shape[1:] != clean.shape[1:]:
            raise ValueError(f"the clean activation at {hook.name} has shape {list(clean.shape)}, the patched run "
                             f"{list(activation.shape)} (stacked copies of the batch)")
        stacked = rearrange(activation, "(copy batch) ... -> copy batch ...", copy=len(selections))
        source = clean.to(activation.device, activation.dtype)[None]
        patched = torch.where(mask.to(activation.device), source, stacked)
        return rearrange(patched, "copy batch ... -> (copy batch) ...")

    return patch


MetricFn = Callable[[Tensor], Tensor]


def as_metrics(metric: MetricFn | Mapping[str, MetricFn]) -> tuple[dict[str, MetricFn], bool]:
    """A metric or a mapping of named metrics, as a dict and whether a metric axis is wanted."""
    if isinstance(metric, Mapping):
        if not metric:
            raise ValueError("the mapping of metrics is empty")
        return dict(metric), True
    if not callable(metric):
        raise TypeError(f"the metric must be a function of the logits, got {type(metric).__name__}")
    return {"metric": metric}, False


def evaluate(metrics: Mapping[str, MetricFn], logits: Tensor, reduce: str, batch: int) -> Tensor:
    """Every metric on one batch of logits: ``[metric]`` for scalars, ``[metric, batch]`` otherwise."""
    rows = []
    for name, fn in metrics.items():
        value = torch.as_tensor(fn(logits)).detach()
        if reduce == "scalar" and value.ndim != 0:
            raise ValueError(
                f"metric {name!r} returned shape {list(value.shape)}; with reduce='scalar' it must return a "
                "scalar (return a [batch] tensor and pass reduce='mean' or 'none' for per-prompt values)"
            )
        if reduce != "scalar" and tuple(value.shape) != (batch,):
            raise ValueError(f"metric {name!r} returned shape {list(value.shape)}; with reduce={reduce!r} "
                             f"it must return one value per prompt, shape [{batch}]")
        rows.append(value.float().cpu())
    return torch.stack(rows)
