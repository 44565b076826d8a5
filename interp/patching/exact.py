"""Exact activation patching, batched: drop-in counterparts of ``transformer_lens.patching``.

Every ``get_act_patch_*`` here takes the arguments of its TransformerLens namesake
(``model, corrupted_tokens, clean_cache, patching_metric``, keyword ``reduce`` and
``baseline``) and returns the same layout: a tensor over the swept axes, or a
:class:`transformer_lens.patching.PatchingResult` when ``reduce="none"``, ``baseline=True``
or a mapping of metrics is given. The numbers are the same (tests hold them to 1e-4); the
work is done by :mod:`interp.patching.engine`, recomputing only what each patch can change.
Extra keywords: ``max_batch`` (sequences per forward pass; default: a memory budget),
``progress`` and ``last_only`` (see :func:`sweep`).

>>> import transformer_lens.patching as one_pass_per_cell
>>> clean, corrupted = pair.to_tokens(["how do i stab ?", "how do i bake ?"]).input_ids
>>> _, cache = model.run_with_cache(clean[None])
>>> metric = lambda logits: logits[:, -1].log_softmax(-1)[:, 7].mean()
>>> ours = get_act_patch_resid_pre(model, corrupted[None], cache, metric, progress=False)
>>> ours.shape  # [layer, pos]
torch.Size([2, 8])
>>> torch.allclose(ours, one_pass_per_cell.get_act_patch_resid_pre(model, corrupted[None], cache, metric), atol=1e-5)
True
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.patching import PatchingResult, _stack_patch_types, make_df_from_ranges

from interp.patching.engine import (
    Costs,
    MetricFn,
    Runner,
    as_metrics,
    copies_per_pass,
    evaluate,
    hooked,
    patch_hook,
    plan,
    reads_last_only,
)

REDUCE = ("scalar", "mean", "none")


@dataclass(frozen=True)
class Site:
    """One family of patches: the hook patched in each layer, the swept axes, and how a cell
    (its indices after ``layer``) selects within the activation's non-batch axes."""

    hook: str
    axes: tuple[str, ...]
    select: Callable[..., tuple]
    kv: bool = False  # keys and values have n_key_value_heads heads
    pos_axis: int = 0  # the (query) position axis among the hook's non-batch axes

    @property
    def swept_pos(self) -> int | None:
        """Which of the swept axes after ``layer`` is the (query) position, or None where positions are not swept
        (an index into ``axes[1:]``, which need not be :attr:`pos_axis`, an axis of the hook's activation)."""
        return next((i for i, axis in enumerate(self.axes[1:]) if axis in ("pos", "dest_pos")), None)

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.{self.hook}"

    def start(self, selection: tuple) -> int:
        """The first position a patch at ``selection`` can change (causal attention): its own position."""
        at = selection[self.pos_axis] if len(selection) > self.pos_axis else None
        return at if isinstance(at, int) else 0

    def sizes(self, model, n_pos: int) -> tuple[int, ...]:
        heads = model.cfg.n_heads
        if self.kv and getattr(model.cfg, "n_key_value_heads", None) is not None:
            heads = model.cfg.n_key_value_heads
        size = {"layer": model.cfg.n_layers, "pos": n_pos, "dest_pos": n_pos, "src_pos": n_pos,
                "head": heads, "head_index": heads}
        return tuple(size[axis] for axis in self.axes)


def _at_pos(pos):
    return (pos,)


def _at_pos_head(pos, head):
    return (pos, head)


def _at_head_every_pos(head):
    return (slice(None), head)


def _at_head(head, *pattern_pos):
    return (head, *pattern_pos)


def _block(hook: str) -> Site:
    return Site(hook, ("layer", "pos"), _at_pos)


def _head_by_pos(name: str) -> Site:
    return Site(f"attn.hook_{name}", ("layer", "pos", "head"), _at_pos_head, kv=name in ("k", "v"))


def _head_all_pos(name: str) -> Site:
    return Site(f"attn.hook_{name}", ("layer", "head"), _at_head_every_pos, kv=name in ("k", "v"))


SITES: dict[str, Site] = {
    "resid_pre": _block("hook_resid_pre"),
    "resid_mid": _block("hook_resid_mid"),
    "attn_out": _block("hook_attn_out"),
    "mlp_out": _block("hook_mlp_out"),
    "attn_head_out_by_pos": _head_by_pos("z"),
    "attn_head_q_by_pos": _head_by_pos("q"),
    "attn_head_k_by_pos": _head_by_pos("k"),
    "attn_head_v_by_pos": _head_by_pos("v"),
    "attn_head_pattern_by_pos": Site("attn.hook_pattern", ("layer", "head_index", "dest_pos"), _at_head, pos_axis=1),
    "attn_head_pattern_dest_src_pos": Site(
        "attn.hook_pattern", ("layer", "head_index", "dest_pos", "src_pos"), _at_head, pos_axis=1
    ),
    "attn_head_out_all_pos": _head_all_pos("z"),
    "attn_head_q_all_pos": _head_all_pos("q"),
    "attn_head_k_all_pos": _head_all_pos("k"),
    "attn_head_v_all_pos": _head_all_pos("v"),
    "attn_head_pattern_all_pos": Site("attn.hook_pattern", ("layer", "head_index"), _at_head, pos_axis=1),
}
"""Every sweep, by the suffix of its ``get_act_patch_*`` name."""


def check_tokens(tokens) -> Int[Tensor, "batch pos"]:
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise ValueError("corrupted_tokens must be an integer tensor [batch, pos] of prompts of one length; "
                         "see interp.patching.prompt_tokens")
    return tokens


def check_cache(clean_cache: Mapping[str, Tensor], names: list[str], tokens: Tensor) -> None:
    """Every hook the sweep patches is in the clean cache, recorded on as many prompts of as many tokens."""
    missing = [name for name in names if name not in clean_cache]
    if missing:
        raise ValueError(f"the clean cache has no {missing[0]!r} (missing {len(missing)} of {len(names)} hooks "
                         "this sweep patches); cache them, e.g. model.run_with_cache(clean_tokens)")
    batch, n_pos = tokens.shape
    for name in names:
        shape = tuple(clean_cache[name].shape)
        positions = shape[2:4] if name.endswith("hook_pattern") else shape[1:2]
        if shape[0] != batch or any(n != n_pos for n in positions):
            raise ValueError(
                f"clean {name} has shape {list(shape)} but the corrupted tokens are [{batch}, {n_pos}]: clean and "
                "corrupted prompts must have the same number of prompts and of tokens"
            )


def sweep(
    model, corrupted_tokens: Tensor, clean_cache: Mapping[str, Tensor], patching_metric: MetricFn | Mapping,
    site: Site, *, reduce: str = "scalar", baseline: bool = False, max_batch: int | None = None,
    progress: bool = True, runner: Runner | None = None, last_only: bool | None = None,
    last_positions: int | None = None,
) -> Tensor | PatchingResult:
    """Patch every cell of ``site`` from ``clean_cache`` into the corrupted run, many cells per pass, each pass
    recomputing only the layers and positions its patches can change (:mod:`interp.patching.engine`).

    The unpatched run (for ``baseline``, and to check the metric's output before any patched
    cell is scored) is the corrupted run the passes start from. ``last_only``: whether the metric
    reads the last position's logits only (then only those are computed); ``None`` checks
    (:func:`~interp.patching.engine.reads_last_only`, a heuristic), ``False`` always gives whole logits.
    ``last_positions``: sweep only the last that many (query) positions, whose axis then has that length: prompts
    of a real chat share only the tokens after the request (the post-instruction positions), and a pass patching
    late positions recomputes only those.
    """
    if reduce not in REDUCE:
        raise ValueError(f"reduce must be one of {REDUCE}, got {reduce!r}")
    check_tokens(corrupted_tokens)
    first = _first_position(site, corrupted_tokens.shape[1], last_positions)
    metrics, metric_axis = as_metrics(patching_metric)
    names = [site.hook_name(layer) for layer in range(model.cfg.n_layers)]
    check_cache(clean_cache, names, corrupted_tokens)
    runner = runner or Runner(model, corrupted_tokens)
    batch, n_pos = runner.batch, runner.n_pos
    corrupted_logits = runner.recording[0]
    unpatched = evaluate(metrics, corrupted_logits, reduce, batch)
    whole_positions = hooked(model)  # a caller's hooks may read every position
    replays, suffixes = runner.replays, not whole_positions and runner.suffixes
    last_only = replays and not whole_positions and last_only is not False and (
        last_only or reads_last_only(metrics, corrupted_logits))

    sizes = site.sizes(model, n_pos)
    cells = list(itertools.product(*(range(first if i == site.swept_pos else 0, n)
                                     for i, n in enumerate(sizes[1:]))))
    items = [(layer if replays else 0, site.start(site.select(*cell)) if suffixes else 0, (layer, cell))
             for layer in range(sizes[0]) for cell in cells]
    passes = plan(items, copies_per_pass(runner, max_batch), Costs.of_model(model, batch, n_pos, last_only))
    store = torch.zeros(len(metrics), *sizes, *((batch,) if reduce != "scalar" else ()))
    for group in tqdm(passes, desc=f"patching {site.hook}", disable=not progress, leave=False):
        joins, start = [join for join, _, _ in group], min(start for _, start, _ in group)
        hooks = []
        for layer in sorted({layer for _, _, (layer, _) in group}):
            selections = [site.select(*cell) if at == layer else None for join, _, (at, cell) in group if join <= layer]
            hooks.append((site.hook_name(layer), patch_hook(clean_cache[site.hook_name(layer)], selections, start,
                                                            site.pos_axis)))
        logits = runner.run(joins, hooks, start, last_only).split(batch)
        for copy, (_, _, (layer, cell)) in enumerate(group):
            store[(slice(None), layer, *cell)] = evaluate(metrics, logits[copy], reduce, batch)
    if first:
        store = store[(slice(None), slice(None), *[slice(first, None) if i == site.swept_pos else slice(None)
                                                   for i in range(len(sizes) - 1)])]
    return _result(store, unpatched, site.axes, list(metrics), metric_axis, reduce, baseline, model.cfg.device)


def _first_position(site: Site, n_pos: int, last_positions: int | None) -> int:
    """The first position swept: 0, or ``n_pos - last_positions`` (checked)."""
    if last_positions is None:
        return 0
    if site.swept_pos is None:
        raise ValueError(f"last_positions needs a sweep by position; {site.hook!r} over {list(site.axes)} patches "
                         "every position at once")
    if not isinstance(last_positions, int) or not 0 < last_positions <= n_pos:
        raise ValueError(f"last_positions must be an int from 1 to the prompts' {n_pos} tokens, got "
                         f"{last_positions!r}")
    return n_pos - last_positions


def get_act_patch(kind: str, model, corrupted_tokens: Tensor, clean_cache: Mapping[str, Tensor],
                  patching_metric: MetricFn | Mapping, **kwargs) -> Tensor | PatchingResult:
    """The sweep ``get_act_patch_{kind}`` chosen by name (``kind``: a key of :data:`SITES`)."""
    if kind not in SITES:
        raise ValueError(f"unknown patching kind {kind!r}; choose one of {', '.join(SITES)}")
    return sweep(model, corrupted_tokens, clean_cache, patching_metric, SITES[kind], **kwargs)


def _result(store, unpatched, axes, metric_names, metric_axis, reduce, baseline, device):
    """TransformerLens's return conventions: a tensor, or a PatchingResult when more was asked for."""
    store, unpatched = store.to(device), unpatched.to(device)
    if reduce == "mean":
        store, unpatched = store.mean(-1), unpatched.mean(-1)
    if not (metric_axis or reduce == "none" or baseline):
        return store[0]
    return PatchingResult(
        values=store if metric_axis else store[0], axis_names=list(axes),
        index_df=make_df_from_ranges(list(store.shape[1 : 1 + len(axes)]), list(axes)),
        metric_names=metric_names, reduced=reduce != "none",
        baseline=(unpatched if metric_axis else unpatched[0]) if baseline else None, has_metric_axis=metric_axis,
    )


def _sweep_function(kind: str) -> Callable:
    site = SITES[kind]

    def patch(model, corrupted_tokens, clean_cache, patching_metric, **kwargs):
        return sweep(model, corrupted_tokens, clean_cache, patching_metric, site, **kwargs)

    patch.__name__ = patch.__qualname__ = f"get_act_patch_{kind}"
    axes = ", ".join(site.axes)
    patch.__doc__ = (f"Patch ``blocks.{{layer}}.{site.hook}`` from the clean cache, one cell at a time, for every "
                     f"cell of [{axes}]; batched counterpart of ``transformer_lens.patching.{patch.__name__}``.")
    return patch


get_act_patch_resid_pre = _sweep_function("resid_pre")
get_act_patch_resid_mid = _sweep_function("resid_mid")
get_act_patch_attn_out = _sweep_function("attn_out")
get_act_patch_mlp_out = _sweep_function("mlp_out")
get_act_patch_attn_head_out_by_pos = _sweep_function("attn_head_out_by_pos")
get_act_patch_attn_head_q_by_pos = _sweep_function("attn_head_q_by_pos")
get_act_patch_attn_head_k_by_pos = _sweep_function("attn_head_k_by_pos")
get_act_patch_attn_head_v_by_pos = _sweep_function("attn_head_v_by_pos")
get_act_patch_attn_head_pattern_by_pos = _sweep_function("attn_head_pattern_by_pos")
get_act_patch_attn_head_pattern_dest_src_pos = _sweep_function("attn_head_pattern_dest_src_pos")
get_act_patch_attn_head_out_all_pos = _sweep_function("attn_head_out_all_pos")
get_act_patch_attn_head_q_all_pos = _sweep_function("attn_head_q_all_pos")
get_act_patch_attn_head_k_all_pos = _sweep_function("attn_head_k_all_pos")
get_act_patch_attn_head_v_all_pos = _sweep_function("attn_head_v_all_pos")
get_act_patch_attn_head_pattern_all_pos = _sweep_function("attn_head_pattern_all_pos")


HEAD_TYPES = ("out", "q", "k", "v", "pattern")
BLOCK_TYPES = ("resid_pre", "attn_out", "mlp_out")


def _every(kinds, axis_order, model, corrupted_tokens, clean_cache, metric, n_heads, **kwargs):
    """Several sweeps over one corrupted run (recorded once), stacked on a leading ``patch_type`` axis."""
    check_tokens(corrupted_tokens)
    sites = [SITES[kind] for kind in kinds]
    runner = Runner(model, corrupted_tokens)
    baseline = kwargs.pop("baseline", False)
    results = [sweep(model, corrupted_tokens, clean_cache, metric, site, runner=runner, baseline=baseline, **kwargs)
               for site in sites]
    if all(isinstance(r, Tensor) for r in results):
        pairs = zip(results, sites, strict=True)
        return torch.stack([_arrange(r, site.axes, axis_order, n_heads) for r, site in pairs])
    names = BLOCK_TYPES if n_heads == 0 else HEAD_TYPES
    return _stack_patch_types(results, axis_order=axis_order, n_heads=n_heads, type_names=names)


def _arrange(values: Tensor, axes, axis_order, n_heads: int) -> Tensor:
    """One sweep's tensor in ``axis_order`` (``head_index``/``dest_pos`` read as ``head``/``pos``), heads
    zero-padded to ``n_heads`` (grouped-query keys and values have fewer)."""
    names = [{"head_index": "head", "dest_pos": "pos"}.get(axis, axis) for axis in axes]
    values = rearrange(values, f"{' '.join(names)} -> {' '.join(axis_order)}")
    if "head" in axis_order:
        head = list(axis_order).index("head")
        pad = [0, 0] * (values.ndim - 1 - head) + [0, n_heads - values.shape[head]]
        values = torch.nn.functional.pad(values, pad)
    return values


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric, **kwargs):
    """``resid_pre``, ``attn_out`` and ``mlp_out`` sweeps stacked: ``[3, layer, pos]``."""
    kinds = ("resid_pre", "attn_out", "mlp_out")
    return _every(kinds, ("layer", "pos"), model, corrupted_tokens, clean_cache, metric, 0, **kwargs)


def get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, metric, **kwargs):
    """Head output, query, key, value and pattern sweeps over all positions: ``[5, layer, head]``."""
    kinds = [f"attn_head_{kind}_all_pos" for kind in HEAD_TYPES]
    return _every(kinds, ("layer", "head"), model, corrupted_tokens, clean_cache, metric, model.cfg.n_heads,
                  **kwargs)


def get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, metric, **kwargs):
    """Head output, query, key, value and pattern sweeps by position: ``[5, layer, pos, head]``."""
    kinds = [f"attn_head_{kind}_by_pos" for kind in HEAD_TYPES]
    return _every(kinds, ("layer", "pos", "head"), model, corrupted_tokens, clean_cache, metric,
                  model.cfg.n_heads, **kwargs)
