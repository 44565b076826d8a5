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

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformers.cache_utils import Cache

Hook = tuple[str, Callable]
REPLAY_ATOL = 1e-4
LOGITS_BUDGET_BYTES = 512 * 2**20
"""Default bound on the logits of one batched pass (the largest tensor a pass makes)."""


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

    Built once per sweep from the corrupted tokens: records the corrupted logits (the
    unpatched baseline), the residual stream entering every block, the arguments each block
    was called with, and the activations at ``names`` (``acts``, to check patches against).
    """

    def __init__(self, model, tokens: Int[Tensor, "batch pos"], names: Sequence[str] = ()):
        self.model = model
        self.tokens = tokens.to(model.cfg.device)
        self.batch = tokens.shape[0]
        self.n_layers = model.cfg.n_layers
        calls: dict[int, tuple] = {}
        handles = [
            block.register_forward_pre_hook(partial(_record, calls, i), with_kwargs=True)
            for i, block in enumerate(model.blocks)
        ]
        resid_names = [f"blocks.{layer}.hook_resid_pre" for layer in range(self.n_layers)]
        try:
            with torch.no_grad():
                self.logits, cache = model.run_with_cache(self.tokens, names_filter=[*resid_names, *names])
        finally:
            for handle in handles:
                handle.remove()
        self.resid = [cache[name] for name in resid_names]
        self.acts = {name: cache[name] for name in names}
        self.calls = {
            i: (_without_kv_cache(args), {k: _without_kv_cache(v) for k, v in kwargs.items()})
            for i, (args, kwargs) in calls.items()
        }
        for _, kwargs in self.calls.values():
            if "use_cache" in kwargs:
                kwargs["use_cache"] = False
        self.replays = len(self.calls) == self.n_layers and self._replay_matches()

    def _replay_matches(self) -> bool:
        try:
            replayed = self.run(0, 2, [], replay=True)
        except Exception:  # an architecture whose blocks cannot be called on their own
            return False
        expected = self.logits.repeat(2, *([1] * (self.logits.ndim - 1)))
        return replayed.shape == expected.shape and torch.allclose(replayed, expected, atol=REPLAY_ATOL, rtol=1e-4)

    @torch.no_grad()
    def run(
        self, layer: int, copies: int, hooks: Sequence[Hook], replay: bool | None = None
    ) -> Float[Tensor, "copies_batch pos d_vocab"]:
        """Logits of ``copies`` stacked copies of the corrupted batch under ``hooks``.

        Only blocks ``layer`` and above run (when replay is trusted), so hooks must sit at or
        above ``layer``. Copy ``c`` occupies rows ``c * batch : (c + 1) * batch``.
        """
        replay = self.replays if replay is None else replay
        with self.model.hooks(fwd_hooks=list(hooks)):
            if not replay:
                return self.model(self.tokens.repeat(copies, 1))
            resid = self.resid[layer].repeat(copies, 1, 1)
            for i in range(layer, self.n_layers):
                args, kwargs = self.calls[i]
                args = _tile(args[1:], copies, self.batch)
                kwargs = {k: _tile(v, copies, self.batch) for k, v in kwargs.items()}
                out = self.model.blocks[i](resid, *args, **kwargs)
                resid = out[0] if isinstance(out, tuple) else out
            return self.model.unembed(self.model.ln_final(resid))


def copies_per_pass(runner: Runner, max_batch: int | None) -> int:
    """How many copies of the batch one pass may stack: ``max_batch`` sequences, or a logits budget."""
    if max_batch is not None:
        if max_batch < runner.batch:
            raise ValueError(f"max_batch={max_batch} is smaller than the batch of {runner.batch} prompts")
        return max_batch // runner.batch
    per_copy = runner.logits[0].numel() * runner.batch * 4
    return max(1, LOGITS_BUDGET_BYTES // per_copy)


def patch_hook(clean: Tensor, selections: Sequence[tuple]) -> Callable:
    """One hook patching copy ``c`` of the stacked batch at ``selections[c]`` from ``clean``.

    ``clean`` is the clean activation ``[batch, ...]``; a selection indexes its non-batch axes.
    """
    mask = torch.zeros((len(selections), *clean.shape[1:]), dtype=torch.bool, device=clean.device)
    for copy, selection in enumerate(selections):
        mask[(copy, *selection)] = True
    mask = mask[:, None]  # broadcast over the prompts of each copy

    def patch(activation: Tensor, hook) -> Tensor:
        stacked = activation.reshape(len(selections), *clean.shape)
        source = clean.to(activation.device, activation.dtype)[None]
        return torch.where(mask.to(activation.device), source, stacked).reshape(activation.shape)

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
