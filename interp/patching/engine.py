"""The batched patching engine: many patches per forward pass, each pass recomputing only what they change.

TransformerLens's patching runs one whole forward pass per patched cell. A patch at layer
``l`` and position ``p`` changes nothing below layer ``l`` and, attention being causal, nothing
at positions before ``p``. So here a pass stacks several cells along the batch axis (``copies``
copies of the corrupted batch, each patched at its own cell by one hook writing through a
mask) and recomputes only the positions from ``start`` on, in the blocks from ``layer`` up:
the residual stream entering ``layer`` and the keys and values of the positions before
``start`` are the corrupted run's, recorded once. The logits before ``start`` are the corrupted
run's too; when every metric reads the last position only (checked: :func:`reads_last_only`),
only that position is unembedded and the others hold NaN.

Starting mid-model is done by replaying the blocks with the arguments the model's own forward
handed them on the corrupted run (attention mask, rotary embeddings, ...), sliced to the
recomputed positions, with a key/value cache holding the earlier ones. (The bridge's
``start_at_layer`` still executes the blocks below, so it saves nothing.) Both replays are
checked against the plain forward before they are trusted, per model and input shape; an
architecture where they disagree falls back to whole positions, or to whole passes, still batched.
Which cells share a pass is chosen by :func:`plan` from a cost model of the passes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from weakref import WeakKeyDictionary

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor
from transformers.cache_utils import Cache

from interp import flops
from interp.kv_cache import attention_arguments

Hook = tuple[str, Callable]
REPLAY_ATOL = 1e-4
LOGITS_BUDGET_BYTES = 512 * 2**20
"""Default bound on the logits of one batched pass (the largest tensor a pass makes)."""
_VERIFIED: WeakKeyDictionary = WeakKeyDictionary()  # model -> {(batch, pos, kind): replay matches the forward}


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


class _KeyValueRecorder:
    """Stands in for a key/value cache on the corrupted run: keeps each layer's keys and values, changes nothing."""

    def __init__(self):
        self.layers: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, keys: Tensor, values: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        self.layers[layer_idx] = (keys, values)
        return keys, values


class _Prefix:
    """A key/value cache holding the corrupted run's first ``start`` positions, tiled for as many copies of the
    batch as the keys given hold."""

    def __init__(self, recorded: dict[int, tuple[Tensor, Tensor]], start: int):
        self.recorded, self.start = recorded, start

    def update(self, keys: Tensor, values: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        recorded = self.recorded[layer_idx]
        copies = keys.shape[0] // recorded[0].shape[0]
        before = [t[:, :, : self.start].repeat(copies, 1, 1, 1) for t in recorded]
        return torch.cat([before[0], keys], dim=-2), torch.cat([before[1], values], dim=-2)


def _key_value_cache(model, cache):
    """Every attention bridge of ``model`` reads ``cache`` as its key/value cache inside the block."""
    return attention_arguments(model, lambda module, args, kwargs: (args, {**kwargs, "past_key_values": cache}))


SLICED = {"position_embeddings": -2, "position_ids": -1, "cache_position": -1}
"""Block arguments indexed by position (and along which axis): cut to the recomputed positions. A 4-D attention
mask is left whole; the attention bridges read its last rows when the queries are fewer than the keys."""


def _from(value, axis: int, start: int):
    if isinstance(value, tuple):
        return tuple(_from(v, axis, start) for v in value)
    if not isinstance(value, Tensor):
        return value
    return value.narrow(axis % value.ndim, start, value.shape[axis] - start)


class Runner:
    """Forward passes over stacked copies of one corrupted batch, each from a given layer and position on.

    One forward of the corrupted batch records the residual stream entering every block, the
    arguments each block was called with and each layer's keys and values; passes replay the
    blocks from there (:meth:`run`), once checked, per model and input shape, to reproduce the
    plain forward (:attr:`replays` from a layer, :attr:`suffixes` from a position too).
    """

    def __init__(self, model, tokens: Int[Tensor, "batch pos"]):
        self.model = model
        self.tokens = tokens.to(model.cfg.device)
        self.batch, self.n_pos = tokens.shape
        self.n_layers = model.cfg.n_layers
        self._recording: tuple | None = None
        self._nan: Tensor | None = None

    @property
    def recording(self) -> tuple[Tensor, list[Tensor], dict[int, tuple], dict[int, tuple[Tensor, Tensor]]]:
        """``(logits, resid_pre per layer, block arguments per layer, keys and values per layer)`` of the
        corrupted run, recorded once."""
        if self._recording is None:
            calls: dict[int, tuple] = {}
            handles = [
                block.register_forward_pre_hook(partial(_record, calls, i), with_kwargs=True)
                for i, block in enumerate(self.model.blocks)
            ]
            names = [f"blocks.{layer}.hook_resid_pre" for layer in range(self.n_layers)]
            keys_values = _KeyValueRecorder()
            try:
                with torch.no_grad():
                    try:
                        with _key_value_cache(self.model, keys_values):
                            logits, cache = self.model.run_with_cache(self.tokens, names_filter=names)
                    except Exception:  # attention that cannot take this cache: no mid-sequence starts
                        keys_values.layers.clear()
                        calls.clear()
                        logits, cache = self.model.run_with_cache(self.tokens, names_filter=names)
            finally:
                for handle in handles:
                    handle.remove()
            for i, (args, kwargs) in calls.items():
                kwargs = {k: _without_kv_cache(v) for k, v in kwargs.items()}
                if "use_cache" in kwargs:
                    kwargs["use_cache"] = False
                calls[i] = (_without_kv_cache(args), kwargs)
            self._recording = (logits, [cache[name] for name in names], calls, keys_values.layers)
        return self._recording

    def _verified(self, kind: str, check: Callable[[], bool]) -> bool:
        """``check()``, remembered per model and input shape (not while a caller's hooks are on the model:
        they may fail on a replay that would otherwise hold)."""
        verified = _VERIFIED.setdefault(self.model, {})
        key = (self.batch, self.n_pos, kind)
        if key in verified:
            return verified[key]
        try:
            with torch.no_grad():
                holds = len(self.recording[2]) == self.n_layers and check()
        except Exception:  # an architecture whose blocks cannot be called on their own
            holds = False
        if not hooked(self.model):
            verified[key] = holds
        return holds

    @property
    def replays(self) -> bool:
        """Whether passes may start mid-model: a replay from layer 0 reproduces the plain forward."""
        return self._verified("layer", lambda: self._matches(0, 0))

    @property
    def suffixes(self) -> bool:
        """Whether passes may also start mid-sequence: a replay from the middle layer and position, with the
        earlier positions' keys and values cached, reproduces the plain forward's later logits."""
        return self.n_pos > 1 and self.replays and len(self.recording[3]) == self.n_layers and \
            self._verified("position", lambda: self._matches(self.n_layers // 2, self.n_pos // 2))

    def _matches(self, layer: int, start: int) -> bool:
        logits = self.recording[0][:, start:]
        replayed = self._replay([layer, min(layer + 1, self.n_layers - 1)], start, last_only=False)  # one joins later
        expected = logits.repeat(2, *([1] * (logits.ndim - 1)))
        return replayed.shape == expected.shape and torch.allclose(replayed, expected, atol=REPLAY_ATOL, rtol=1e-4)

    def _replay(self, joins: Sequence[int], start: int, last_only: bool) -> Tensor:
        """Logits at positions ``start:`` (or the last only) of one copy of the batch per entry of ``joins``
        (ascending), each copy entering the blocks at the layer its entry names: every block call runs the
        copies that have joined by then, so no copy recomputes a layer below its own."""
        _, resid, calls, keys_values = self.recording
        x = None
        with _key_value_cache(self.model, _Prefix(keys_values, start)) if start else nullcontext():
            for i in range(joins[0], self.n_layers):
                joining = bisect_right(joins, i) - bisect_left(joins, i)
                if joining:
                    new = resid[i][:, start:].repeat(joining, 1, 1)
                    x = new if x is None else torch.cat([x, new])
                copies = x.shape[0] // self.batch
                args, kwargs = calls[i]
                args = _tile(args[1:], copies, self.batch)
                kwargs = {k: _tile(_from(v, SLICED[k], start) if start and k in SLICED else v, copies, self.batch)
                          for k, v in kwargs.items()}
                out = self.model.blocks[i](x, *args, **kwargs)
                x = out[0] if isinstance(out, tuple) else out
        return self.model.unembed(self.model.ln_final(x[:, -1:] if last_only else x))

    @torch.no_grad()
    def run(self, joins: Sequence[int], hooks: Sequence[Hook], start: int = 0,
            last_only: bool = False) -> Float[Tensor, "copies_batch pos d_vocab"]:
        """Logits of one copy of the corrupted batch per entry of ``joins`` (ascending layers), under ``hooks``,
        each copy recomputing only the blocks from the layer its entry names and the positions from ``start``
        (which need :attr:`replays` and :attr:`suffixes`).

        A hook at layer ``l`` sees the copies joined by then (entries <= ``l``, in order) and positions
        ``start:`` only. The logits before ``start`` are the corrupted run's; with ``last_only`` (and a
        replay) only the last position's are computed and the others are NaN, in a buffer the next call
        reuses (read the logits before the next pass; do not write to them). Copy ``c`` occupies rows
        ``c * batch : (c + 1) * batch``.
        """
        copies = len(joins)
        if start and not self.suffixes:
            raise ValueError("this model's passes cannot start mid-sequence (the replay did not match)")
        if not self.replays:
            with self.model.hooks(fwd_hooks=list(hooks)):
                return self.model(self.tokens.repeat(copies, 1))
        self.recording  # noqa: B018 - record the corrupted run now, not under these hooks
        with self.model.hooks(fwd_hooks=list(hooks)):
            logits = self._replay(list(joins), start, last_only)
        rows = copies * self.batch
        if last_only:
            if self._nan is None or self._nan.shape[0] < rows:
                self._nan = torch.full((rows, self.n_pos, logits.shape[-1]), torch.nan, dtype=logits.dtype,
                                       device=logits.device)
            out = self._nan[:rows]
            out[:, -1:] = logits
            return out
        if start:
            before = self.recording[0][:, :start].repeat(copies, 1, 1)
            logits = torch.cat([before, logits], dim=1)
        return logits


def hooked(model) -> bool:
    """Whether hooks are already on the model's hook points (a caller's own, e.g. inside ``model.hooks(...)``):
    they may read every position, so passes then recompute whole positions."""
    return any(point._forward_hooks for point in model.hook_dict.values())


def reads_last_only(metrics: Mapping[str, Callable], logits: Tensor) -> bool:
    """Whether every metric seems to read the logits at the last position only: it gives the same value when
    every other position is NaN, and when every other position holds other (random) logits.

    A heuristic, with two probes: a metric that reads an earlier position only through an
    operation blind to both (a comparison that is False for NaN and for both random draws) could
    pass it. Each probe gets its own copy, so a metric that writes to its input changes nothing.
    """
    generator = torch.Generator(device=logits.device).manual_seed(0)
    probes = []
    for fill in ("nan", "random"):
        probe = logits.clone()
        probe[:, :-1] = torch.nan if fill == "nan" else torch.randn(
            probe[:, :-1].shape, generator=generator, device=logits.device, dtype=logits.dtype) * logits.std()
        probes.append(probe)
    for fn in metrics.values():
        try:
            expected = torch.as_tensor(fn(logits.clone()))
            got = [torch.as_tensor(fn(probe)) for probe in probes]
        except Exception:  # a metric that cannot take NaN reads what it should not
            return False
        if any(g.shape != expected.shape or not torch.equal(g, expected) for g in got):
            return False
    return True


def copies_per_pass(runner: Runner, max_batch: int | None) -> int:
    """How many copies of the batch one pass may stack: ``max_batch`` sequences, or a logits budget."""
    if max_batch is not None:
        if max_batch < runner.batch:
            raise ValueError(f"max_batch={max_batch} is smaller than the batch of {runner.batch} prompts")
        return max_batch // runner.batch
    per_copy = runner.tokens.numel() * runner.model.cfg.d_vocab * 4
    return max(1, LOGITS_BUDGET_BYTES // per_copy)


@dataclass(frozen=True)
class Costs:
    """The cost model of a pass, in units of one token through one block: each block call costs ``overhead``
    besides its tokens (reading the block's weights, Python), and each token unembedded costs ``unembed``."""

    n_layers: int
    n_pos: int
    batch: int
    overhead: float
    unembed: float
    last_only: bool

    @classmethod
    def of_model(cls, model, batch: int, n_pos: int, last_only: bool) -> Costs:
        """The costs on ``model``'s device (:mod:`interp.flops`): a block call's fixed time as tokens' worth."""
        cfg = model.cfg
        per_token = flops.block(cfg.d_model, cfg.n_heads, getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
                                cfg.d_head, cfg.d_mlp or 4 * cfg.d_model)
        kind = flops.device_kind(cfg.device)
        overhead = flops.CALL_SECONDS[kind] * flops.THROUGHPUT[kind] / per_token
        return cls(cfg.n_layers, n_pos, batch, overhead, flops.unembed(cfg.d_model, cfg.d_vocab) / per_token,
                   last_only)

    def of(self, first_layer: int, start: int, copies: int, block_tokens: int) -> float:
        """A pass from ``first_layer`` and position ``start`` on, of ``copies`` copies that go through
        ``block_tokens`` blocks between them (a copy joining at layer ``l`` goes through ``n_layers - l``)."""
        read = copies * self.batch * (1 if self.last_only else self.n_pos - start)
        return (self.n_layers - first_layer + 1) * self.overhead + \
            block_tokens * self.batch * (self.n_pos - start) + self.unembed * read


Item = tuple[int, int, tuple]
"""A cell to patch: ``(layer, start, cell)``, ``start`` the first position the patch can change."""


def _chunked(layer_counts: Sequence[int], per_pass: int) -> Iterator[tuple[int, int, int]]:
    """Cut the copies of a tile, ascending by layer (``layer_counts[l]`` of them at layer ``l``), into passes of
    at most ``per_pass``: ``(first layer, copies, blocks they go through)`` per pass."""
    n_layers = len(layer_counts)
    first, copies, blocks = None, 0, 0
    for layer, count in enumerate(layer_counts):
        while count:
            take = min(count, per_pass - copies)
            first = layer if first is None else first
            copies, blocks, count = copies + take, blocks + take * (n_layers - layer), count - take
            if copies == per_pass:
                yield first, copies, blocks
                first, copies, blocks = None, 0, 0
    if copies:
        yield first, copies, blocks


def plan(items: Sequence[Item], per_pass: int, costs: Costs) -> list[list[Item]]:
    """Group cells into passes of at most ``per_pass`` copies, ascending by layer within each pass (a copy joins
    the pass at its own layer, see :meth:`Runner.run`), a pass running from its cells' earliest start.

    The starts are cut into tiles of ``b`` consecutive ones, each tile one pass (or several, past
    ``per_pass``), with ``b`` chosen for the least total cost under ``costs``: few large passes pay
    less overhead, narrow tiles recompute fewer positions a patch cannot change.
    """
    starts = sorted({start for _, start, _ in items})
    column = {start: j for j, start in enumerate(starts)}
    counts = [[0] * costs.n_layers for _ in starts]
    for layer, start, _ in items:
        counts[column[start]][layer] += 1

    def tile_costs(b: int) -> float:
        total = 0.0
        for j in range(0, len(starts), b):
            merged = [sum(column_counts) for column_counts in zip(*counts[j : j + b], strict=True)]
            total += sum(costs.of(first, starts[j], copies, blocks) for first, copies, blocks in
                         _chunked(merged, per_pass))
        return total

    _, b = min((tile_costs(b), b) for b in sorted({-(-len(starts) // k) for k in range(1, len(starts) + 1)}))
    tiles: dict[int, list[Item]] = {}
    for item in sorted(items, key=lambda item: (column[item[1]] // b, item[0])):
        tiles.setdefault(column[item[1]] // b, []).append(item)
    return [tile[k : k + per_pass] for _, tile in sorted(tiles.items()) for k in range(0, len(tile), per_pass)]


def patch_hook(clean: Tensor, selections: Sequence[tuple | None], start: int = 0, pos_axis: int = 0) -> Callable:
    """One hook patching copy ``c`` of the stacked batch at ``selections[c]`` from ``clean``.

    ``clean`` is the clean activation ``[batch, ...]``; a selection indexes its non-batch axes
    (``None``: that copy is not patched here). In a pass that recomputes positions ``start:``
    only, the activation holds those positions along ``pos_axis`` (of the non-batch axes), and
    so are ``clean`` and each selection's position taken.
    """
    if start:
        clean = clean.narrow(pos_axis + 1, start, clean.shape[pos_axis + 1] - start)
        selections = [None if s is None else
                      (*s[:pos_axis], s[pos_axis] - start, *s[pos_axis + 1 :]) if isinstance(s[pos_axis], int) else s
                      for s in selections]
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
