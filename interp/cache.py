"""Collect activations of one model, or both models of a pair, over a set of prompts.

Only the hooks and positions asked for are kept, on the CPU, in prompt order. Prompts are
tokenized once, grouped by length into batches (:func:`interp.prompts.length_batches`: less
padding), padded on either side, and the
asked-for positions are read relative to each prompt's own tokens, so batched results equal
per-prompt unbatched runs. Forward passes stop after the last block any hook needs.

``positions``:

* an int: ``-1`` is each prompt's last token, ``-k`` the k-th from its end, ``k >= 0`` the k-th
  token from its start; each value is ``[n_prompts, *hook_shape]``;
* a list of ints: ``[n_prompts, len(positions), *hook_shape]``;
* ``"all"``: ``[n_prompts, max_pos, *hook_shape]``, tokens left-aligned and zero-padded, with
  the boolean token mask ``[n_prompts, max_pos]`` as the result's ``mask``.

The result is an :class:`Activations`: a read-only mapping from hook name to tensor.

>>> acts = collect_activations(model, requests, ["blocks.0.hook_resid_post"], progress=False)
>>> acts["blocks.0.hook_resid_post"].shape  # [n_prompts, d_model]
torch.Size([3, 32])
>>> list(acts), acts.mask is None
(['blocks.0.hook_resid_post'], True)
>>> collect_activations(model, requests, "blocks.0.hook_resid_post", positions="all", progress=False).mask.shape
torch.Size([3, 10])
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from interp.checks import as_positions
from interp.data import PromptSet
from interp.models import ModelPair
from interp.prompts import length_batches, pad_batch, pad_id, tokenize, tokenize_for

Positions = int | Sequence[int] | Literal["all"]
MASK_KEY = "attention_mask"
"""The file name (``attention_mask.npy``) the token mask is streamed to; in memory it is ``Activations.mask``."""
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True, eq=False)
class Activations(Mapping):
    """Tensors by name, in prompt order (hook names; for a pair's stacked streams, ``"base"`` and
    ``"aligned"``), and the ``[n_prompts, max_pos]`` token mask when ``positions == "all"``."""

    tensors: Mapping[str, Tensor]
    positions: Positions = -1
    mask: Tensor | None = None
    """True at each prompt's real tokens (left-aligned); None unless every position was kept."""

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"no activations named {name!r}; have {', '.join(self.tensors)}") from None

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


def check_positions(positions: Positions, lengths: Sequence[int]) -> Positions:
    """``positions`` as plain ints (or ``"all"``); raises before any forward pass if one is not a position or does
    not exist in the shortest prompt."""
    if isinstance(positions, str) and positions == "all":
        return positions
    positions = as_positions(positions, "an int, a list of ints or 'all'")
    wanted = [positions] if isinstance(positions, int) else positions
    if not lengths:
        raise ValueError("no prompts: give at least one prompt to collect activations for")
    shortest = min(lengths)
    bad = [p for p in wanted if not -shortest <= p < shortest]
    if bad:
        raise ValueError(f"positions {bad} do not exist in the shortest prompt ({shortest} tokens)")
    return positions


def _position_index(mask: Tensor, positions: Sequence[int]) -> Int[Tensor, "batch n_pos"]:
    """Absolute column of each wanted position in each (padded) row."""
    start = mask.argmax(-1)  # first real token
    length = mask.sum(-1)
    wanted = torch.tensor(positions, device=mask.device)
    return torch.where(wanted < 0, start[:, None] + length[:, None] + wanted, start[:, None] + wanted)


def _last_block(hook_names: Sequence[str], n_layers: int) -> int | None:
    """Index of the last block a set of hooks lives in, or None if some hook is outside blocks."""
    layers = [_BLOCK.match(name) for name in hook_names]
    if not all(layers):
        return None
    return max(int(m.group(1)) for m in layers)


class _Done(BaseException):
    """Raised after the last block a collection needs, to skip the rest of the forward pass (a BaseException,
    so that no ``except Exception`` on the way swallows it)."""


@contextmanager
def stop_after(model, layer: int | None) -> Iterator[None]:
    """Inside the block, a forward pass of ``model`` ends once block ``layer`` has run (no later block, final norm
    or unembedding); ``None``: it runs whole."""
    if layer is None:
        yield
        return

    def done(module, args, output):
        raise _Done

    handle = model.blocks[layer].register_forward_hook(done)
    try:
        yield
    except _Done:
        pass
    finally:
        handle.remove()


def check_hook_names(model, hook_names: Sequence[str]) -> None:
    if not hook_names:
        raise ValueError(f"hook_names is empty: name at least one hook, e.g. {list(model.hook_dict)[:2]}")
    unknown = [name for name in hook_names if name not in model.hook_dict]
    if unknown:
        raise ValueError(f"unknown hook names {unknown}; e.g. {list(model.hook_dict)[:4]} (see model.hook_dict)")


@torch.no_grad()
def collect_from_tokens(
    model,
    ids: Sequence[Sequence[int]],
    hook_names: str | Sequence[str],
    *,
    positions: Positions = -1,
    batch_size: int = 32,
    padding_side: str = "left",
    out_dir: str | Path | None = None,
    desc: str = "collect",
    progress: bool = True,
) -> Activations:
    """:func:`collect_activations` on already-tokenized prompts (lists of token ids)."""
    hook_names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
    check_hook_names(model, hook_names)
    positions = check_positions(positions, [len(row) for row in ids])
    batches = length_batches([len(row) for row in ids], batch_size)
    pad = pad_id(model.tokenizer)
    n, max_len = len(ids), max(len(row) for row in ids)
    last = _last_block(hook_names, model.cfg.n_layers)
    store = _Store(out_dir)
    device = model.cfg.device
    try:
        for rows in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
            input_ids, mask = pad_batch([ids[i] for i in rows], pad, padding_side)
            grabbed: dict[str, Tensor] = {}
            hooks = [(name, _grabber(name, grabbed, mask, positions, max_len)) for name in hook_names]
            with model.hooks(fwd_hooks=hooks), stop_after(model, last):
                model(input_ids.to(device), attention_mask=mask.to(device))
            for name in hook_names:
                store.put(name, rows, grabbed[name], n)
            if positions == "all":
                store.put(MASK_KEY, rows, _left_align(mask.bool(), mask.bool(), max_len), n)
    except BaseException:
        store.discard()
        raise
    return store.finish({"hook_names": hook_names, "positions": positions, "n_prompts": n})


def _grabber(name: str, grabbed: dict, mask: Tensor, positions: Positions, max_len: int):
    """A hook that keeps the asked-for positions, keyed by the name asked for (a hook point may
    answer to an alias of it)."""

    def grab(act: Tensor, hook) -> None:
        grabbed[name] = _select(act, mask.to(act.device), positions, max_len)

    return grab


def _select(act: Tensor, mask: Tensor, positions: Positions, max_len: int) -> Tensor:
    if positions == "all":
        return _left_align(act, mask.bool(), max_len).cpu()
    wanted = [positions] if isinstance(positions, int) else list(positions)
    index = _position_index(mask, wanted).to(act.device)
    picked = act[torch.arange(act.shape[0], device=act.device)[:, None], index]  # [batch, n_pos, ...]
    return (picked[:, 0] if isinstance(positions, int) else picked).cpu()


def _left_align(act: Tensor, mask: Tensor, max_len: int) -> Tensor:
    """Each row's real tokens moved to the front of a zero tensor ``[batch, max_len, ...]``."""
    out = act.new_zeros((act.shape[0], max_len, *act.shape[2:]))
    for i in range(act.shape[0]):
        real = act[i][mask[i]]
        out[i, : real.shape[0]] = real
    return out


class _Store:
    """Accumulates per-batch results in prompt order, in memory or in .npy memmaps on disk."""

    def __init__(self, out_dir: str | Path | None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.values: dict[str, Tensor | np.ndarray] = {}
        if self.out_dir is not None:
            if self.out_dir.exists():
                raise FileExistsError(f"activation directory {self.out_dir} exists; choose a new one")
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}-", dir=self.out_dir.parent))

    def put(self, name: str, rows: list[int], value: Tensor, n: int) -> None:
        if name not in self.values:
            shape = (n, *value.shape[1:])
            if self.out_dir is None:
                self.values[name] = value.new_zeros(shape)
            else:
                dtype = np.bool_ if value.dtype == torch.bool else np.float32
                self.values[name] = np.lib.format.open_memmap(self.tmp / f"{name}.npy", "w+", dtype, shape)
        if self.out_dir is None:
            self.values[name][rows] = value
        else:
            self.values[name][rows] = value.float().numpy() if value.dtype != torch.bool else value.numpy()

    def discard(self) -> None:
        """Remove the half-written temporary directory of an interrupted collection."""
        self.values.clear()
        if self.out_dir is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, meta: dict) -> Activations:
        if self.out_dir is None:
            return _activations(self.values, meta["positions"])
        for array in self.values.values():
            array.flush()
        (self.tmp / "meta.json").write_text(json.dumps({**meta, "keys": list(self.values)}))
        self.values.clear()
        try:
            os.replace(self.tmp, self.out_dir)
        except OSError:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return load_activations(self.out_dir)


def _activations(values: Mapping[str, Tensor], positions: Positions) -> Activations:
    """The store's tensors as :class:`Activations`, the token mask taken out of the hooks."""
    return Activations({k: v for k, v in values.items() if k != MASK_KEY}, positions, values.get(MASK_KEY))


def load_activations(directory: str | Path) -> Activations:
    """Reload activations streamed to disk, memory-mapped: nothing is read until it is used."""
    directory = Path(directory)
    meta_file = directory / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{directory} holds no collected activations (no meta.json)")
    meta = json.loads(meta_file.read_text())
    values = {k: torch.from_numpy(np.load(directory / f"{k}.npy", mmap_mode="c")) for k in meta["keys"]}
    return _activations(values, meta["positions"])


def resid_post_hooks(n_layers: int) -> list[str]:
    """The residual stream *after* each block: ``blocks.{l}.hook_resid_post``, ``l = 0..n_layers-1``.

    In Hugging Face terms, ``blocks.{l}.hook_resid_post`` is ``output_hidden_states[l + 1]`` for
    ``l < n_layers - 1``; the last one is the stream before the final norm, while HF's last
    hidden state has the final norm applied.
    """
    return [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def resid_pre_hooks(n_layers: int) -> list[str]:
    """The residual stream *entering* each block: ``blocks.{l}.hook_resid_pre`` = HF ``output_hidden_states[l]``."""
    return [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]


def stack_layers(acts: Mapping[str, Tensor], hook_names: Sequence[str]) -> Tensor:
    """``[batch, layer, (pos,) d_model]`` (float32): the tensors of ``hook_names`` (one per layer) stacked."""
    return torch.stack([acts[h].float() for h in hook_names], 1)


def collect_activations(
    model,
    prompts: PromptSet | Sequence[str],
    hook_names: str | Sequence[str],
    *,
    positions: Positions = -1,
    batch_size: int = 32,
    prompt_format: str | None = None,
    padding_side: str = "left",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Activations:
    """Activations of ``model`` at ``hook_names`` and ``positions`` for every prompt, in prompt order.

    ``prompts`` are user requests, formatted under ``prompt_format`` (default: the policy of the
    pair the model was loaded in; see :func:`interp.prompts.format_prompts`). With ``out_dir``,
    activations are streamed to ``.npy`` files there (written atomically; nothing is left
    behind if collection fails) and returned memory-mapped. See the module docstring for shapes.
    """
    ids = tokenize_for(model, prompts, prompt_format)
    return collect_from_tokens(model, ids, hook_names, positions=positions, batch_size=batch_size,
                               padding_side=padding_side, out_dir=out_dir, progress=progress)


def collect_pair_activations(
    pair: ModelPair,
    prompts: PromptSet | Sequence[str],
    hook_names: str | Sequence[str],
    *,
    out_dir: str | Path | None = None,
    prompt_format: str | None = None,
    **kwargs,
) -> dict[str, Activations]:
    """Both models' activations on the same tokens: ``{"base": {...}, "aligned": {...}}``.

    The prompts are formatted with ``prompt_format`` (default: the pair's policy) and tokenized once for
    both models.
    """
    ids = tokenize(pair.tokenizer, prompts, prompt_format or pair.prompt_format, n_ctx=pair.n_ctx)
    return {
        name: collect_from_tokens(model, ids, hook_names, desc=f"collect {name}",
                                  out_dir=None if out_dir is None else Path(out_dir) / name, **kwargs)
        for name, model in pair
    }


def pair_resid_post(
    pair: ModelPair, prompts: PromptSet | Sequence[str], *, positions: Positions = -1, batch_size: int = 32,
) -> Activations:
    """Both models' residual stream after every block (:func:`resid_post_hooks`), stacked per model.

    Returns ``{"base": [batch, layer, (pos,) d_model], "aligned": ...}`` as :class:`Activations`,
    with the token mask when ``positions="all"``.
    """
    return family_resid_post({"aligned": pair}, prompts, positions=positions, batch_size=batch_size)["aligned"]


def family_tokens(family: Mapping[str, ModelPair], prompts: PromptSet | Sequence[str]) -> tuple[ModelPair, list]:
    """``(the first pair, the prompts' token ids)``: one tokenization for every model of a family (aligned stages
    against one base), checked to share the base checkpoint and the prompt format."""
    if not family:
        raise ValueError("a family needs at least one pair")
    first = next(iter(family.values()))
    bases = {(pair.base_name, pair.prompt_format) for pair in family.values()}
    if len(bases) > 1:
        raise ValueError(f"a family's pairs share one base and prompt format; got {sorted(bases)}")
    return first, tokenize(first.tokenizer, prompts, first.prompt_format, n_ctx=min(p.n_ctx for p in family.values()))


def family_resid_post(
    family: Mapping[str, ModelPair], prompts: PromptSet | Sequence[str], *, positions: Positions = -1,
    batch_size: int = 32,
) -> dict[str, Activations]:
    """:func:`pair_resid_post` for each pair of a family (aligned stages against one base), the base run once:
    ``{stage: Activations}``, every stage's ``"base"`` the same tensor.

    The pairs must share the base checkpoint and the prompt format (one tokenization serves every model).
    """
    first, ids = family_tokens(family, prompts)
    hooks = resid_post_hooks(first.cfg.n_layers)

    def collect(model, name: str) -> tuple[Tensor, Tensor | None]:
        acts = collect_from_tokens(model, ids, hooks, positions=positions, batch_size=batch_size,
                                   desc=f"collect {name}", progress=False)
        return stack_layers(acts, hooks), acts.mask

    base, mask = collect(first.base, "base")
    return {stage: Activations({"base": base, "aligned": collect(pair.aligned, stage)[0]}, positions, mask)
            for stage, pair in family.items()}
