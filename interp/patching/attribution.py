"""Attribution patching: every patch of every sweep estimated from two forward passes and one backward.

Patching cell ``c`` replaces the corrupted activation ``a`` by the clean one ``a'`` on the
entries the cell selects. To first order the metric moves by ``(a' - a) . dM/da`` summed over
those entries (Nanda 2023, "Attribution patching"; Syed et al. 2023). One corrupted forward
and one backward give ``dM/da`` for every hook at once; the clean activations come from the
cache the exact sweeps use. Estimates come in the exact sweeps' layouts, as the metric's
value under the patch (``baseline + effect``), so they sit on the same axes as
:mod:`interp.patching.exact`'s numbers.

Where the linear estimate fails (check against exact patching before trusting it):

* **saturation**: a softmax (attention pattern, or the output distribution itself) that is
  already saturated has near-zero gradient, so a patch that moves it out of saturation is
  estimated at ~0. Large patches to the residual stream early on, and patches that swing an
  attention head from one token to another, are the usual cases;
* **cancellation**: summing over positions or heads (``*_all_pos``), positive and negative
  first-order terms cancel while the exact patch's second-order effects do not;
* **large differences**: the estimate is exact for a metric linear in the activation
  (patching a last-layer output into a frozen-scale final norm) and degrades with the size
  of ``a' - a`` and the curvature met on the way (LayerNorm scale, later nonlinearities).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.patching.engine import MetricFn, as_metrics, evaluate
from interp.patching.exact import REDUCE, SITES, check_cache, check_tokens

DEFAULT_KINDS = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "attn_head_out_by_pos", "attn_head_out_all_pos")


@dataclass(frozen=True)
class Attribution:
    """Estimated metric under each patch, per sweep kind, in :mod:`~interp.patching.exact`'s layouts.

    ``values[kind]`` has the exact sweep's axes, plus a trailing ``batch`` axis when
    ``reduced`` is False; ``baseline`` is the metric on the unpatched corrupted run.
    """

    values: dict[str, Tensor]
    baseline: Tensor
    reduced: bool

    def __getitem__(self, kind: str) -> Tensor:
        if kind not in self.values:
            raise KeyError(f"no attribution for {kind!r}; have {', '.join(self.values)}")
        return self.values[kind]

    def effect(self, kind: str) -> Tensor:
        """The estimated change each patch makes to the corrupted run's metric."""
        return self[kind] - self.baseline

    def normalized(self, kind: str, clean: Tensor | float) -> Tensor:
        """:meth:`effect` as a share of the clean-minus-corrupted gap: 0 changes nothing, 1 recovers
        the clean metric (the scale of ``transformer_lens``'s ``PatchingResult.normalized``)."""
        return self.effect(kind) / (torch.as_tensor(clean) - self.baseline)


def _kept_axes(kind: str) -> tuple[int, ...]:
    """The activation axes (batch excluded) a cell of ``kind`` indexes, in the sweep's axis order."""
    site = SITES[kind]
    selection = site.select(*range(len(site.axes) - 1))
    return tuple(axis for axis, part in enumerate(selection) if not isinstance(part, slice))


def attribute(
    model, corrupted_tokens: Tensor, clean_cache: Mapping[str, Tensor], patching_metric: MetricFn,
    kinds: Sequence[str] = DEFAULT_KINDS, *, reduce: str = "scalar",
) -> Attribution:
    """First-order estimates of every exact sweep in ``kinds``, from one corrupted forward and backward.

    ``kinds`` are suffixes of the ``get_act_patch_*`` names (keys of ``interp.patching.SITES``);
    ``reduce`` is as in the exact sweeps (``"scalar"``, ``"mean"``, ``"none"``).
    """
    if reduce not in REDUCE:
        raise ValueError(f"reduce must be one of {REDUCE}, got {reduce!r}")
    unknown = [kind for kind in kinds if kind not in SITES]
    if unknown:
        raise ValueError(f"unknown sweep {unknown[0]!r}; choose from {', '.join(SITES)}")
    metrics, metric_axis = as_metrics(patching_metric)
    if metric_axis:
        raise ValueError("attribution takes one metric (one backward pass per metric): call it once per metric")
    tokens = check_tokens(corrupted_tokens).to(model.cfg.device)
    n_layers = model.cfg.n_layers
    names = sorted({SITES[kind].hook_name(layer) for kind in kinds for layer in range(n_layers)})
    check_cache(clean_cache, names, tokens)

    acts, grads = _activations_and_gradients(model, tokens, metrics["metric"], names, reduce)
    batch = tokens.shape[0]
    for name in names:
        if tuple(clean_cache[name].shape) != tuple(acts[name].shape):
            raise ValueError(f"clean {name} has shape {list(clean_cache[name].shape)}, the corrupted run "
                             f"{list(acts[name].shape)}: prompts must match in number and length")
    unpatched = evaluate(metrics, acts.pop("logits"), reduce, batch)[0]

    values = {}
    for kind in kinds:
        site, kept = SITES[kind], _kept_axes(kind)
        per_layer = []
        for layer in range(n_layers):
            name = site.hook_name(layer)
            delta = clean_cache[name].to(grads[name]) - acts[name]
            product = (delta * grads[name]).float()
            summed = [axis + 1 for axis in range(product.ndim - 1) if axis not in kept]
            effect = product.sum(dim=summed) if summed else product  # [batch, *kept]
            per_layer.append(effect.movedim(0, -1))  # [*cell, batch]
        effect = torch.stack(per_layer).cpu()  # [layer, *cell, batch]
        if reduce == "scalar":
            values[kind] = unpatched + effect.sum(-1)
        elif reduce == "mean":
            values[kind] = (unpatched + effect).mean(-1)
        else:
            values[kind] = unpatched + effect
    baseline = unpatched.mean(-1) if reduce == "mean" else unpatched
    return Attribution(values=values, baseline=baseline, reduced=reduce != "none")


def _activations_and_gradients(model, tokens: Tensor, metric: MetricFn, names: Sequence[str], reduce: str):
    """Corrupted activations at ``names`` and the metric's gradient there (one forward, one backward).

    The backward starts from a leaf put in place of the residual stream entering block 0, so
    no parameter gradient is computed; gradients are read by backward hooks, which see the
    tensors the bridge's forward really consumes (a forward hook on ``attn.hook_z`` may see a
    reshaped view).
    """
    acts: dict[str, Tensor] = {}
    grads: dict[str, Tensor] = {}
    root_name = "blocks.0.hook_resid_pre"
    root: list[Tensor] = []

    def make_root(activation: Tensor, hook) -> Tensor:
        leaf = activation.detach().requires_grad_(True)
        root.append(leaf)
        acts[root_name] = leaf.detach()
        return leaf

    def keeper(name: str):  # the bridge may call a hook by an alias, so each hook knows its name
        def keep(activation: Tensor, hook) -> None:
            acts[name] = activation.detach()

        def keep_grad(grad: Tensor, hook) -> None:
            grads[name] = grad.detach()

        return keep, keep_grad

    hooks = {name: keeper(name) for name in names if name != root_name}
    fwd = [(root_name, make_root)] + [(name, keep) for name, (keep, _) in hooks.items()]
    bwd = [(name, keep_grad) for name, (_, keep_grad) in hooks.items()]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
        logits = model(tokens)
        value = torch.as_tensor(metric(logits))
        if reduce == "scalar" and value.ndim != 0:
            raise ValueError(f"the metric returned shape {list(value.shape)}; with reduce='scalar' it must return "
                             "a scalar")
        (root_grad,) = torch.autograd.grad(value.sum(), root)
    grads[root_name] = root_grad
    acts["logits"] = logits.detach()
    missing = [name for name in names if name not in grads]
    if missing:
        raise RuntimeError(f"no gradient reached {missing[0]!r}: the metric does not depend on it")
    return acts, grads
