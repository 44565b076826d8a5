"""Linear layers that multiply in bfloat16 while the weights, the norms and the residual stream stay float32.

A real pair's forward passes are its linear layers' matrix products. On a CPU with AVX512-BF16 (or AMX) a bfloat16
product runs 4-5x faster than a float32 one, and a whole SmolLM2-135M forward 2.2-2.5x faster (generation 1.8-2.2x),
at a first-token KL of 0.001-0.002 nats from float32 (``benchmarks/matmul.py``). The papers' pipelines run in half
precision throughout (Arditi et al.'s reference code loads Llama-2 in float16); here only the products are. What
interp reads stays float32: the weights (a weight diff of bfloat16 weights would lose the small changes alignment
makes), the residual stream, every hook's activations and the logits.

:func:`use` switches a loaded model's ``nn.Linear`` layers in place; each keeps a bfloat16 copy of its weight, made
again whenever the weight is written in place (its version counter moves) or replaced (another tensor), so a weight
edit or swap (:class:`~interp.interventions.ReplaceWeights`, :mod:`interp.weight_edit`) is always seen, and so is a
move to another device. Writes through ``weight.data`` bypass the counter: write under ``torch.no_grad()`` instead.
Where autograd wants the weights' gradients (parameters set to require them again), the product is taken from the
live weight (uncached).

>>> layer = use(torch.nn.Linear(4, 3), torch.bfloat16)
>>> layer(torch.ones(2, 4)).dtype
torch.float32
>>> of(layer)
torch.bfloat16
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

ENV = "INTERP_MATMUL"
"""Overrides :func:`resolve`'s ``"auto"``: ``float32``, ``bfloat16`` or ``auto``."""
CHOICES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Bf16Linear(torch.nn.Linear):
    """An ``nn.Linear`` whose product is taken in bfloat16 from a cached copy of its float32 weight; its input and
    output keep their dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if torch.is_grad_enabled() and w.requires_grad:
            low_w, low_b = w.to(torch.bfloat16), None if b is None else b.to(torch.bfloat16)
        else:
            low_w, low_b = self._bf16_copy(w, b)
        return F.linear(x.to(torch.bfloat16), low_w, low_b).to(x.dtype)

    def _bf16_copy(self, w: torch.Tensor, b: torch.Tensor | None):
        key = (w._version, w.device, w.dtype, None if b is None else (b._version, b.device))  # .to() keeps identity
        cached = self.__dict__.get("_bf16")
        if (cached is None or cached[0]() is not w or cached[1] != key
                or (b is not None and cached[2]() is not b)):
            cached = (weakref.ref(w), key, None if b is None else weakref.ref(b), w.detach().to(torch.bfloat16),
                      None if b is None else b.detach().to(torch.bfloat16))
            self.__dict__["_bf16"] = cached
        return cached[3], cached[4]


def use(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Take ``model``'s linear products in ``dtype`` (``torch.bfloat16`` or ``torch.float32``), in place; returns it.
    In bfloat16 its parameters stop requiring gradients (a model for reading: a forward run outside ``no_grad``
    would otherwise cast every weight again; activations can still carry gradients, as attribution patching needs)."""
    _check(dtype)
    if dtype == torch.bfloat16:
        model.requires_grad_(False)
    for module in model.modules():
        if dtype == torch.bfloat16 and type(module) is torch.nn.Linear:
            module.__class__ = Bf16Linear
        elif dtype == torch.float32 and type(module) is Bf16Linear:
            module.__class__ = torch.nn.Linear
            module.__dict__.pop("_bf16", None)
    return model


def _check(dtype: torch.dtype) -> None:
    if dtype not in CHOICES.values():
        raise ValueError(f"matmul dtype must be torch.float32 or torch.bfloat16, not {dtype}")


def of(model: torch.nn.Module) -> torch.dtype:
    """The dtype ``model``'s linear products are taken in."""
    return torch.bfloat16 if any(type(m) is Bf16Linear for m in model.modules()) else torch.float32


@contextmanager
def using(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[torch.nn.Module]:
    """Take ``model``'s products in ``dtype`` inside the block (a float32 check of a bfloat16 model), then as before."""
    before = of(model)
    use(model, dtype)
    try:
        yield model
    finally:
        use(model, before)


def native_bf16(device: str | torch.device) -> bool:
    """Does ``device`` multiply bfloat16 natively (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX)?"""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":  # the instructions themselves: oneDNN also "supports" bfloat16 on AVX-512 CPUs that emulate it
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except AttributeError:  # a torch without these probes: assume not
            return False
    return False


def resolve(choice: str | torch.dtype | None, device: str | torch.device,
            weights: torch.dtype | None = None) -> torch.dtype:
    """The dtype for ``choice``: ``None`` or ``"float32"`` float32; ``"bfloat16"`` bfloat16; ``"auto"`` (or
    ``$INTERP_MATMUL``, which overrides ``"auto"``) bfloat16 where the device multiplies it natively, else float32.

    ``weights``: the dtype the model loads in. Other than float32, the model multiplies in it already, so the
    answer is float32 (no swap), and bfloat16 asked for by name is an error."""
    if weights not in (None, torch.float32):
        if choice in (None, "auto", "float32", torch.float32):
            return torch.float32
        raise ValueError(f"matmul={choice!r} takes float32 weights' products in another dtype; these load in "
                         f"{weights} already: leave matmul out")
    if isinstance(choice, torch.dtype):
        _check(choice)
        return choice
    if choice is None:
        return torch.float32
    if choice == "auto":
        choice = os.environ.get(ENV) or "auto"
    if choice == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if choice not in CHOICES:
        raise ValueError(f"matmul must be one of {sorted(CHOICES)} or 'auto', not {choice!r}"
                         + (f" (from ${ENV})" if os.environ.get(ENV) == choice else ""))
    return CHOICES[choice]


def name(dtype: torch.dtype) -> str:
    """``"float32"`` or ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")
