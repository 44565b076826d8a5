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

import operator
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


def _position(value) -> int:
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError("a bool is not a position")
    return operator.index(value)  # an int, a numpy integer or a 0-d integer tensor


def as_positions(positions, expected: str) -> int | list[int]:
    """``positions`` (an int, or a non-empty sequence of ints; numpy and torch integers too, bools not) as an int
    or a list of ints, or a ``ValueError`` saying ``expected`` (what the caller accepts) and what it got."""
    try:
        return _position(positions)
    except TypeError:
        pass
    try:
        wanted = [] if isinstance(positions, str) else [_position(p) for p in positions]
    except TypeError:
        wanted = []
    if not wanted:
        raise ValueError(f"positions must be {expected}, got {positions!r}")
    return wanted
