"""Matplotlib twins of ``interactive.py`` for static paper figures: same arguments, same theme.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot, so nothing is
shown or kept alive by a global figure manager. ``$`` in token strings is escaped because
matplotlib reads ``$...$`` as mathematics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import Float

from interp.plotting.theme import (
    MARKERS,
    Array,
    Band,
    Grid,
    bar_table,
    grid_data,
    histogram_data,
    layer_curves_data,
    layer_pos_data,
    model_color,
    pretty,
    projection_data,
    scatter_data,
    token_strip_data,
)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _escape(label: str) -> str:
    return label.replace("$", r"\$")


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax, title: str) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(
        title=title, frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), alignment="left"
    )


def _image(fig, ax, grid: Grid, zlabel: str, origin: str = "lower"):
    """``grid`` drawn cell by cell with its colour bar; the layer axis runs upwards like plotly's."""
    im = ax.imshow(
        grid.z, cmap=grid.colorscale, vmin=grid.zmin, vmax=grid.zmax, aspect="auto", interpolation="nearest",
        origin=origin,
    )
    fig.colorbar(im, ax=ax, label=zlabel)
    return im


def refusal_bars_static(
    rates: Mapping[str, Mapping[str, float]], title: str = "Refusal rate by split", xlabel: str = "prompt split"
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.refusal_bars`.

    >>> fig = refusal_bars_static({"base": {"harmful": 0.0}, "aligned": {"harmful": 1.0}})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['base', 'aligned']
    """
    models, splits = bar_table(rates)
    fig = _figure(1.2 + 1.1 * len(splits), 3.4)
    ax = fig.subplots()
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(splits))]
        bars = ax.bar(xs, [100 * rates[m][s] for s in splits], width, label=m, color=model_color(m))
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)  # so a 0% bar still reads as 0
    ax.set_xticks(range(len(splits)), [pretty(s) for s in splits], rotation=20, ha="right")
    ax.set(xlabel=xlabel, ylabel="refused (%)", ylim=(0, 110), title=title)
    _legend(ax, "model")
    return fig


def layer_curves_static(
    values: Mapping[str, Float[Array, "batch layer"]],  # noqa: F722
    *,
    ylabel: str,
    title: str = "",
    band: Band = "ci95",
    xlabel: str = "layer",
    legend: str = "model",
    zero_line: bool = False,
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.layer_curves`; ``values[model]`` ``[batch layer]``.

    >>> fig = layer_curves_static({"base": [[0.1, 0.5], [0.3, 0.7]]}, ylabel="probe accuracy")
    >>> fig.axes[0].get_lines()[0].get_ydata().tolist()
    [0.2, 0.6]
    """
    curves, shading = layer_curves_data(values, band)
    fig = _figure(6.0, 3.4)
    ax = fig.subplots()
    for c in curves:
        if c.lower is not None:
            ax.fill_between(c.layer, c.lower, c.upper, color=c.color, alpha=0.2, linewidth=0)
        ax.plot(c.layer, c.mean, marker="o", markersize=3, color=c.color, label=c.model,
                linestyle=c.dash[1])
    if zero_line:
        ax.axhline(0, color="grey", linewidth=0.8)
    _integer_ticks(ax.xaxis)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, f"{legend}\n{shading}" if shading else legend)
    return fig


def layer_pos_heatmap_static(
    values: Float[Array, "layer pos"],  # noqa: F722
    tokens: Sequence[str],
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = True,
    xlabel: str = "token",
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.layer_pos_heatmap`; ``values`` ``[layer pos]``.

    >>> fig = layer_pos_heatmap_static([[1.0, -2.0]], ["Hello", " world"])
    >>> fig.axes[0].get_images()[0].get_clim()
    (-2.0, 2.0)
    """
    grid, labels = layer_pos_data(values, tokens, diverging)
    n_layers, n_pos = grid.z.shape
    fig = _figure(min(max(4.0, 2.0 + 0.3 * n_pos), 16.0), min(max(2.5, 1.2 + 0.25 * n_layers), 10.0))
    ax = fig.subplots()
    _image(fig, ax, grid, zlabel)
    ax.set_xticks(range(n_pos), [_escape(t) for t in labels], rotation=90)
    _integer_ticks(ax.yaxis)
    ax.set(xlabel=xlabel, ylabel="layer", title=title)
    return fig


def layer_head_grid_static(
    values: Float[Array, "layer head"],  # noqa: F722
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = True,
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.layer_head_grid`; ``values`` ``[layer head]``.

    >>> fig = layer_head_grid_static([[0.5, -1.0], [0.0, 0.25]])
    >>> fig.axes[0].get_images()[0].get_clim()
    (-1.0, 1.0)
    """
    grid = grid_data(values, "values", "layer head", diverging)
    n_layers, n_heads = grid.z.shape
    fig = _figure(min(max(3.5, 2.0 + 0.3 * n_heads), 12.0), min(max(2.5, 1.2 + 0.25 * n_layers), 10.0))
    ax = fig.subplots()
    _image(fig, ax, grid, zlabel)
    _integer_ticks(ax.xaxis)
    _integer_ticks(ax.yaxis)
    ax.set(xlabel="head", ylabel="layer", title=title)
    return fig


def projection_2d_static(
    points: Float[Array, "batch 2"],  # noqa: F722
    labels: Sequence[str],
    models: Sequence[str],
    *,
    title: str = "",
    xlabel: str = "component 1",
    ylabel: str = "component 2",
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.projection_2d`; ``points`` ``[batch 2]``.

    >>> fig = projection_2d_static([[0, 1], [1, 0]], ["harmful", "harmless"], ["base", "aligned"])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['base, harmful', 'aligned, harmless']
    """
    groups = projection_data(points, labels, models)
    fig = _figure(5.5, 4.0)
    ax = fig.subplots()
    for g in groups:
        ax.scatter(
            g.xy[:, 0], g.xy[:, 1], s=20, color=g.color, marker=MARKERS[g.marker][1], alpha=0.8, linewidths=0,
            label=_escape(f"{g.model}, {g.label}"),
        )
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, "model, prompt label")
    return fig


def token_strip_static(
    tokens: Sequence[str],
    values: Float[Array, " pos"],  # noqa: F722
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = False,
    per_row: int = 16,
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.token_strip`; ``values`` ``[pos]``.

    >>> fig = token_strip_static(["How", " do", " I"], [0.1, 0.5, 0.9], per_row=2)
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['How', ' do', ' I']
    """
    strip = token_strip_data(tokens, values, diverging, per_row)
    rows = len(strip.text)
    fig = _figure(min(1.5 + 0.7 * per_row, 16.0), 0.9 + 0.45 * rows)
    ax = fig.subplots()
    im = _image(fig, ax, strip.grid, zlabel, origin="upper")  # first row at the top, read like text
    for (r, c), position in np.ndenumerate(strip.position):
        if position < 0:
            continue
        v = strip.grid.z[r, c]
        red, green, blue, _ = im.cmap(im.norm(v))
        dark = np.isfinite(v) and 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(c, r, _escape(strip.text[r][c]), ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(False)
    ax.set_title(title)
    return fig


def estimate_scatter_static(
    exact: Mapping[str, Array], estimate: Mapping[str, Array], *, title: str = "", xlabel: str = "exact",
    ylabel: str = "estimate",
):
    """Matplotlib twin of :func:`~interp.plotting.interactive.estimate_scatter`.

    >>> fig = estimate_scatter_static({"sft heads": [0.0, 1.0]}, {"sft heads": [0.1, 0.8]})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['y = x', 'sft heads']
    """
    series, (low, high) = scatter_data(exact, estimate)
    fig = _figure(5.5, 4.0)
    ax = fig.subplots()
    ax.plot([low, high], [low, high], color="grey", linestyle=":", linewidth=1, label="y = x")
    return _points(fig, ax, series, 22, title, xlabel, ylabel)


def _points(fig, ax, series, size: float, title: str, xlabel: str, ylabel: str):
    """Each series' points in its colour and marker, then the labels and the legend."""
    for s in series:
        ax.scatter(s.x, s.y, s=size, color=s.color, marker=MARKERS[s.marker][1], alpha=0.8, linewidths=0,
                   label=_escape(s.name))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, "")
    return fig


def histogram_static(values: Mapping[str, Array], *, bins: int = 20, value_range: tuple[float, float] | None = None,
                     marks: Sequence[float] = (), title: str = "", xlabel: str = "", ylabel: str = "count"):
    """Matplotlib twin of :func:`~interp.plotting.interactive.histogram`.

    >>> fig = histogram_static({"crosscoder": [0.1, 0.5, 0.52, 0.95]}, value_range=(0, 1), marks=[0.1, 0.9])
    >>> len(fig.axes[0].patches)  # 20 bins
    20
    """
    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    for name, color, v in histogram_data(values):
        ax.hist(v, bins=bins, range=value_range, color=color, alpha=0.75, label=_escape(name))
    for mark in marks:
        ax.axvline(mark, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, "")
    return fig


def scatter_static(x: Mapping[str, Array], y: Mapping[str, Array], *, marks: Sequence[float] = (), title: str = "",
                   xlabel: str = "", ylabel: str = ""):
    """Matplotlib twin of :func:`~interp.plotting.interactive.scatter`.

    >>> fig = scatter_static({"causal": [0.1]}, {"causal": [0.2]}, marks=[0.5])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['causal']
    """
    series, _ = scatter_data(x, y)
    fig = _figure(5.5, 4.0)
    ax = fig.subplots()
    for mark in marks:
        ax.axvline(mark, color="grey", linestyle=":", linewidth=1)
        ax.axhline(mark, color="grey", linestyle=":", linewidth=1)
    return _points(fig, ax, series, 26, title, xlabel, ylabel)


def grouped_bars_static(values: Mapping[str, Mapping[str, float]], *, title: str = "", xlabel: str = "",
                        ylabel: str = ""):
    """Matplotlib twin of :func:`~interp.plotting.interactive.grouped_bars`.

    >>> fig = grouped_bars_static({"added to the base": {"12": 0.4}, "ablated at the site": {"12": 0.1}})
    >>> len(fig.axes[0].patches)
    2
    """
    series, categories = bar_table(values)
    fig = _figure(max(5.0, 0.5 * len(categories) * len(series) + 2.5), 3.6)
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        ax.bar(np.arange(len(categories)) + (i - (len(series) - 1) / 2) * width, [values[s][c] for c in categories],
               width, color=model_color(s), label=_escape(s))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(categories)), [_escape(c) for c in categories])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, "")
    return fig
