"""The one theme every figure shares, and the data preparation each plotly/matplotlib pair shares.

Each ``*_data`` helper turns one figure kind's arguments into plain numpy values (taking torch
tensors, numpy arrays or nested lists) and raises ``ValueError`` on bad input, so that
``interactive.py`` and ``static.py`` only draw. Axis names: ``batch pos layer head d_model``, and
``model`` for the checkpoint axis (``"base"``, ``"aligned"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

MODEL_COLORS = {
    "base": "#4C78A8",  # blue
    "aligned": "#E45756",  # red
    "sft": "#E45756",  # an aligned model: the aligned red...
    "dpo": "#B0413E",  # ...and a darker red for a second one
    "rl": "#F2A33A",  # a third aligned model: amber, still warm
    "reward": "#72B7B2",  # the reward model: teal, neither base nor policy
}
LABEL_COLORS = {"harmful": "#F58518", "harmless": "#54A24B", "all": "#79706E",
                "causal": "#E45756", "other": "#BAB0AC",
                "added": "#4C78A8", "ablated": "#E45756", "direction": "#F2A33A"}
"""Colours of prompt labels, for curves drawn per label rather than per model; of latents (causal or other); and of
the three causal edits of a dictionary latent (added to the base, ablated at its site, its direction ablated)."""
FONT = "DejaVu Sans, Arial, sans-serif"
DIVERGING = "RdBu_r"  # the same name in plotly and matplotlib: negative blue, zero white, positive red
SEQUENTIAL = "viridis"
MARKERS = (("circle", "o"), ("x", "X"), ("diamond", "D"), ("square", "s"), ("triangle-up", "^"), ("star", "*"))
"""Marker shapes as (plotly symbol, matplotlib marker), one per label in first-seen order."""
DASHES = (("dash", "--"), ("dot", ":"), ("dashdot", "-."))
"""Line styles of transfer curves, as (plotly dash, matplotlib linestyle)."""
BANDS = {"ci95": "95% interval of the mean", "std": "mean ± 1 standard deviation"}

Array = torch.Tensor | np.ndarray  # nested lists of numbers are accepted too
Band = Literal["ci95", "std"] | None


def model_color(name: str) -> str:
    """The theme colour of a model name (or of a prompt label); unknown names count as aligned.

    A transfer label ``"A → B"`` (read on A, applied to B) takes B's colour, the model whose activations are shown;
    a label ``"sft (note)"`` takes its first word's.
    """
    name = name.split("→")[-1].strip()
    colors = {**MODEL_COLORS, **LABEL_COLORS}
    return colors.get(name, colors.get(name.split(" ")[0], MODEL_COLORS["aligned"]))


def pretty(split: str) -> str:
    return split.replace("_", " ")


def rgba(color: str, alpha: float) -> str:
    """``'#RRGGBB'`` as a CSS ``rgba(...)`` string with the given opacity (for plotly bands)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def tick_step(n: int) -> int:
    """Distance between integer ticks so that an axis of ``n`` layers or heads shows at most 16."""
    return max(1, math.ceil(n / 16))


def show_token(token: str) -> str:
    """A token as it should read on a figure: newlines and tabs written out, never invisible."""
    return token.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") or "''"


def to_numpy(x, name: str, *shapes: str) -> np.ndarray:
    """``x`` (tensor, array or nested list) as a float64 array whose axes match one of ``shapes``.

    >>> to_numpy(torch.ones(2, 3), "values", "layer pos").shape
    (2, 3)
    >>> to_numpy([1, 2], "values", "layer pos")
    Traceback (most recent call last):
    ValueError: values must have shape [layer pos], got shape (2,)
    """
    if isinstance(x, torch.Tensor):
        out = x.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            out = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a tensor, an array or a rectangular list of numbers ({e})") from None
    wanted = " or ".join(f"[{s}]" for s in shapes)
    if out.ndim not in {len(s.split()) for s in shapes}:
        raise ValueError(f"{name} must have shape {wanted}, got shape {out.shape}")
    if out.size == 0:
        raise ValueError(f"{name} is empty (shape {out.shape}); there is nothing to plot")
    return out


def as_strings(seq, name: str) -> list[str]:
    """A sequence (list, array, tensor) as a list of strings; one string alone is an error."""
    if isinstance(seq, str):
        raise ValueError(f"{name} must be a sequence of strings, one per item, not one string {seq!r}")
    items = seq.tolist() if hasattr(seq, "tolist") else list(seq)
    return [str(s) for s in items]


def bar_table(rates: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[str]]:
    """Model names and the splits every model has, in first-seen order."""
    models = list(rates)
    if not models:
        raise ValueError("no models to plot")
    splits = [s for s in rates[models[0]] if all(s in rates[m] for m in models)]
    return models, splits


@dataclass(frozen=True)
class Curve:
    """One model's per-layer mean, with its band (``None`` when there is no band)."""

    model: str
    color: str
    layer: np.ndarray  # [layer] 0, 1, ...
    mean: np.ndarray  # [layer]
    lower: np.ndarray | None  # [layer]
    upper: np.ndarray | None  # [layer]
    dash: tuple[str, str] = ("solid", "-")
    """Line style as (plotly dash, matplotlib linestyle). The first plain curve of a colour is solid; transfer
    curves (``"A → B"``) and further curves of a colour already drawn (``"sft bypass"``, ``"sft induce"``) are
    dashed, each in its own pattern, so none hides behind another of that colour."""


def layer_curves_data(values: Mapping[str, Array], band: Band) -> tuple[list[Curve], str]:
    """Per-model mean over ``batch`` of ``values[model]`` ``[batch layer]``, and what the shading shows.

    The band uses the sample standard deviation (``ddof=1``); a ``[layer]`` curve, or one sample,
    has no band.

    >>> (curve,), shading = layer_curves_data({"base": [[0.0, 1.0], [2.0, 1.0]]}, band="std")
    >>> curve.mean.tolist(), curve.upper.tolist(), shading
    ([1.0, 1.0], [2.414213562373095, 1.0], 'shaded: mean ± 1 standard deviation')
    """
    if band is not None and band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)} or None, got {band!r}")
    if not values:
        raise ValueError("no models to plot: values is empty")
    curves = []
    for model, v in values.items():
        v_BL = to_numpy(v, f"values[{model!r}]", "batch layer", "layer")
        if v_BL.ndim == 1:
            v_BL = v_BL[None]
        n = v_BL.shape[0]
        mean = v_BL.mean(axis=0)
        lower = upper = None
        if band is not None and n > 1:
            half = v_BL.std(axis=0, ddof=1)
            if band == "ci95":
                half = 1.96 * half / math.sqrt(n)
            lower, upper = mean - half, mean + half
        color = model_color(model)
        same_color = [c for c in curves if c.color == color]
        if "→" in model or any(c.dash[0] == "solid" for c in same_color):
            dash = DASHES[sum(c.dash[0] != "solid" for c in same_color) % len(DASHES)]
        else:
            dash = ("solid", "-")
        curves.append(Curve(model, color, np.arange(v_BL.shape[1]), mean, lower, upper, dash))
    has_band = any(c.lower is not None for c in curves)
    return curves, f"shaded: {BANDS[band]}" if has_band else ""


@dataclass(frozen=True)
class Grid:
    """A colour grid with its colour scale and limits, the same in both backends."""

    z: np.ndarray  # [row col]
    zmin: float
    zmax: float
    colorscale: str


def grid_data(values: Array, name: str, axes: str, diverging: bool) -> Grid:
    """``values`` of shape ``[axes]`` with limits ±max|v| around 0 if ``diverging``, else min to max."""
    z = to_numpy(values, name, axes)
    finite = z[np.isfinite(z)]
    if diverging:
        top = float(np.abs(finite).max()) if finite.size else 0.0
        top = top if top > 0 else 1.0  # all zero: any symmetric range will do
        return Grid(z, -top, top, DIVERGING)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return Grid(z, lo, hi, SEQUENTIAL)


def layer_pos_data(values: Array, tokens: Sequence[str], diverging: bool) -> tuple[Grid, list[str]]:
    """The ``[layer pos]`` grid and one readable label per position."""
    grid = grid_data(values, "values", "layer pos", diverging)
    labels = [show_token(t) for t in as_strings(tokens, "tokens")]
    if len(labels) != grid.z.shape[1]:
        raise ValueError(
            f"got {len(labels)} tokens for {grid.z.shape[1]} positions (values has shape [layer pos] = "
            f"{grid.z.shape}); give one token string per position"
        )
    return grid, labels


@dataclass(frozen=True)
class PointGroup:
    """The points of one (model, label) combination."""

    model: str
    label: str
    color: str
    marker: int  # index into MARKERS
    xy: np.ndarray  # [batch 2]


def projection_data(points: Array, labels: Sequence[str], models: Sequence[str]) -> list[PointGroup]:
    """``points`` ``[batch 2]`` grouped by (model, label), models then labels in first-seen order."""
    xy = to_numpy(points, "points", "batch 2")
    if xy.shape[1] != 2:
        raise ValueError(f"points must have shape [batch 2], got shape {xy.shape}; project to 2 components first")
    labels, models = as_strings(labels, "labels"), as_strings(models, "models")
    if not len(labels) == len(models) == len(xy):
        raise ValueError(
            f"points, labels and models must have one entry per point, got {len(xy)} points, "
            f"{len(labels)} labels and {len(models)} models"
        )
    label_order, model_order = list(dict.fromkeys(labels)), list(dict.fromkeys(models))
    label_arr, model_arr = np.array(labels), np.array(models)
    groups = []
    for m in model_order:
        for i, lab in enumerate(label_order):
            keep = (model_arr == m) & (label_arr == lab)
            if keep.any():
                groups.append(PointGroup(m, lab, model_color(m), i % len(MARKERS), xy[keep]))
    return groups


@dataclass(frozen=True)
class Strip:
    """Tokens laid out in rows of ``per_row`` cells; cells past the last token are NaN and ''."""

    grid: Grid  # z: [row col]
    text: list[list[str]]  # [row col] token labels
    position: np.ndarray  # [row col] the token's index in the text, -1 for padding


def token_strip_data(tokens: Sequence[str], values: Array, diverging: bool, per_row: int) -> Strip:
    """One value per token (``values`` ``[pos]``) wrapped into rows of ``per_row``.

    >>> strip = token_strip_data(["a", "b", "c"], [1.0, 2.0, 3.0], diverging=False, per_row=2)
    >>> strip.text, strip.position.tolist()
    ([['a', 'b'], ['c', '']], [[0, 1], [2, -1]])
    """
    if not isinstance(per_row, int) or per_row < 1:
        raise ValueError(f"per_row must be a positive integer, got {per_row!r}")
    flat = grid_data(values, "values", "pos", diverging)
    labels = [show_token(t) for t in as_strings(tokens, "tokens")]
    n = len(labels)
    if n != len(flat.z):
        raise ValueError(f"got {n} tokens but {len(flat.z)} values; give one value per token")
    rows = math.ceil(n / per_row)
    position = np.full(rows * per_row, -1)
    position[:n] = np.arange(n)
    z = np.full(rows * per_row, np.nan)
    z[:n] = flat.z
    text = [*labels, *[""] * (rows * per_row - n)]
    return Strip(
        Grid(z.reshape(rows, per_row), flat.zmin, flat.zmax, flat.colorscale),
        [text[r * per_row : (r + 1) * per_row] for r in range(rows)],
        position.reshape(rows, per_row),
    )


@dataclass(frozen=True)
class Series:
    """One named set of (x, y) points of a scatter."""

    name: str
    color: str
    marker: int
    x: np.ndarray
    y: np.ndarray


def histogram_data(values: Mapping[str, Array]) -> list[tuple[str, str, np.ndarray]]:
    """``(name, colour, flat values)`` per series."""
    if not values:
        raise ValueError("no values to plot")
    return [(name, model_color(name), to_numpy(v, f"values[{name!r}]", "n").ravel()) for name, v in values.items()]


def scatter_data(x: Mapping[str, Array], y: Mapping[str, Array]) -> tuple[list[Series], tuple[float, float]]:
    """Flattened ``x[name]`` against ``y[name]`` per name, and the range both axes share."""
    if set(x) != set(y) or not x:
        raise ValueError(f"x and y must name the same series, got {sorted(x)} and {sorted(y)}")
    series = []
    for i, name in enumerate(x):
        xs = to_numpy(x[name], f"x[{name!r}]", "n", "a b", "a b c").ravel()
        ys = to_numpy(y[name], f"y[{name!r}]", "n", "a b", "a b c").ravel()
        if xs.shape != ys.shape:
            raise ValueError(f"x[{name!r}] and y[{name!r}] hold {xs.size} and {ys.size} values")
        series.append(Series(name, model_color(name), i % len(MARKERS), xs, ys))
    values = np.concatenate([np.concatenate([s.x, s.y]) for s in series])
    return series, (float(np.nanmin(values)), float(np.nanmax(values)))
