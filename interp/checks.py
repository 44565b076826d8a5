"""Validators shared by everything that takes a layer or a residual-stream vector from a user.

Each raises ``ValueError`` naming what is wrong and the range or shape expected, before any
forward pass.

>>> from types import SimpleNamespace
>>> model = SimpleNamespace(cfg=SimpleNamespace(n_layers=4, d_model=3))
>>> check_layer(model, 4)
Traceback (most recent call last):
ValueError: layer 4 is out of range: the model has layers 0..3
>>> check_vector(model, torch.zeros(3), "the direction", nonzero=True)
Traceback (most recent call last):
ValueError: the direction is the zero vector
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def check_layer(model, layer: int) -> None:
    """``layer`` must index one of the model's blocks."""
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer {layer} is out of range: the model has layers 0..{model.cfg.n_layers - 1}")


def check_layers(model, layers: Iterable[int]) -> None:
    for layer in layers:
        check_layer(model, layer)


def check_vector(model, vector: Tensor, what: str, *, nonzero: bool = False) -> None:
    """``vector`` must be a finite ``[d_model]`` tensor (and not zero, with ``nonzero``)."""
    if vector.ndim != 1 or vector.shape[0] != model.cfg.d_model:
        raise ValueError(f"{what} must have shape [d_model] = [{model.cfg.d_model}], got {list(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} has non-finite entries")
    if nonzero and vector.norm() == 0:
        raise ValueError(f"{what} is the zero vector")
