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

import math
import numbers
import operator
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor


def check_layer(model, layer: int) -> None:
    """``layer`` must be an int (numpy and torch integers too, bools not) indexing one of the model's blocks."""
    try:
        layer = _position(layer)
    except TypeError:
        raise ValueError(f"a layer must be an int, got {layer!r}") from None
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer {layer} is out of range: the model has layers 0..{model.cfg.n_layers - 1}")


def check_layers(model, layers: Iterable[int]) -> None:
    for layer in layers:
        check_layer(model, layer)


def check_vector(model, vector: Tensor, what: str, *, nonzero: bool = False) -> None:
    """``vector`` must be a finite floating-point ``[d_model]`` tensor (and not zero, with ``nonzero``)."""
    if not isinstance(vector, Tensor):
        raise ValueError(f"{what} must be a torch tensor, got {type(vector).__name__}")
    if not vector.is_floating_point():
        raise ValueError(f"{what} must be a real floating-point tensor, got dtype {vector.dtype}")
    if vector.ndim != 1 or vector.shape[0] != model.cfg.d_model:
        raise ValueError(f"{what} must have shape [d_model] = [{model.cfg.d_model}], got {list(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} has non-finite entries")
    if nonzero and vector.norm() == 0:
        raise ValueError(f"{what} is the zero vector")


def check_number(value, what: str, *, low: float | None = None, high: float | None = None,
                 open_low: bool = False) -> float:
    """``value`` as a float if it is a finite real number within ``[low, high]`` (``(low, high]`` with ``open_low``),
    else a ``ValueError`` naming ``what`` and the range.

    >>> check_number(float("nan"), "scale")
    Traceback (most recent call last):
    ValueError: scale must be a finite number, got nan
    >>> check_number(2.0, "top_p", low=0, high=1, open_low=True)
    Traceback (most recent call last):
    ValueError: top_p must be in (0, 1], got 2.0
    """
    number = isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.ndim == 0
                                                 and not value.is_complex())
    if isinstance(value, bool) or not number:
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    below = low is not None and (value <= low if open_low else value < low)
    if below or (high is not None and value > high):
        left = "(" if open_low else "["
        raise ValueError(f"{what} must be in {left}{_num(low, '-inf')}, {_num(high, 'inf')}], got {value}")
    return value


def check_count(value, what: str, *, least: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) of at least ``least``, else a ``ValueError``.

    >>> check_count(-1, "batch_size")
    Traceback (most recent call last):
    ValueError: batch_size must be an int >= 1, got -1
    """
    try:
        count = _position(value)
    except TypeError:
        count = None
    if count is None or count < least:
        raise ValueError(f"{what} must be an int >= {least}, got {value!r}")
    return count


def _num(bound: float | None, otherwise: str) -> str:
    return otherwise if bound is None else f"{bound:g}"


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


def unwritable(folder, make: bool = False) -> str | None:
    """Why nothing can be written in ``folder`` (made first, with ``make``), or None when a file can be: the
    one probe behind every output folder's check.

    >>> unwritable(tempfile.mkdtemp()) is None
    True
    """
    folder = Path(folder)
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        return e.strerror or str(e)
    return None
