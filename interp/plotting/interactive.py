"""Plotly figures for exploring in notebooks; each has a matplotlib twin in ``static.py``.

The data each figure shows is prepared by a helper in ``theme.py`` shared with its twin; this
module only draws. Plotly is imported inside the functions, so importing the package stays cheap.
Token strings are HTML-escaped because plotly reads ``<...>`` in labels as markup.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from jaxtyping import Float

from interp.plotting.theme import (
    FONT,
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
    rgba,
    scatter_data,
    tick_step,
    token_strip_data,
)


def _style(fig, title: str, **layout):
    fig.update_layout(title=title, template="simple_white", font_family=FONT, **layout)
    return fig


def _heatmap(grid: Grid, zlabel: str, **kwargs):
    import plotly.graph_objects as go

    return go.Heatmap(
        z=grid.z, zmin=grid.zmin, zmax=grid.zmax, colorscale=grid.colorscale, colorbar_title_text=zlabel, **kwargs
    )


def refusal_bars(
    rates: Mapping[str, Mapping[str, float]], title: str = "Refusal rate by split", xlabel: str = "prompt split"
):
    """Grouped bars: one group per split, one bar per model. ``rates[model][split]`` in [0, 1].

    >>> fig = refusal_bars({"base": {"harmful": 0.0}, "aligned": {"harmful": 1.0}})
    >>> [bar.name for bar in fig.data]
    ['base', 'aligned']
    """
    import plotly.graph_objects as go

    models, splits = bar_table(rates)
    fig = go.Figure(
        [
            go.Bar(name=m, x=[pretty(s) for s in splits], y=[100 * rates[m][s] for s in splits],
                   marker_color=model_color(m))
            for m in models
        ]
    )
    return _style(
        fig, title, barmode="group", yaxis_title="refused (%)", xaxis_title=xlabel, yaxis_range=[0, 105],
        legend_title_text="model",
    )


def layer_curves(
    values: Mapping[str, Float[Array, "batch layer"]],  # noqa: F722
    *,
    ylabel: str,
    title: str = "",
    band: Band = "ci95",
    xlabel: str = "layer",
    legend: str = "model",
    zero_line: bool = False,
):
    """Mean over ``batch`` per layer, one line per model; ``values[model]`` is ``[batch layer]`` or ``[layer]``.

    ``band``: ``"ci95"`` shades mean ± 1.96·std/√batch, ``"std"`` mean ± std, ``None`` nothing;
    ``zero_line`` draws y = 0.

    >>> fig = layer_curves({"base": [[0.1, 0.5], [0.3, 0.7]], "aligned": [0.2, 0.9]}, ylabel="probe accuracy")
    >>> [trace.name for trace in fig.data]
    ['base band', 'base', 'aligned']
    """
    import plotly.graph_objects as go

    curves, shading = layer_curves_data(values, band)
    fig = go.Figure()
    for c in curves:
        if c.lower is not None:  # one closed polygon: along the upper edge, back along the lower
            fig.add_trace(go.Scatter(
                x=[*c.layer, *c.layer[::-1]], y=[*c.upper, *c.lower[::-1]], fill="toself",
                fillcolor=rgba(c.color, 0.2), line_width=0, hoverinfo="skip", showlegend=False,
                legendgroup=c.model, name=f"{c.model} band",
            ))
        fig.add_trace(go.Scatter(
            x=c.layer, y=c.mean, mode="lines+markers", name=c.model, line_color=c.color, legendgroup=c.model,
            line_dash=c.dash[0],
        ))
    n_layers = max(len(c.layer) for c in curves)
    fig.update_xaxes(tick0=0, dtick=tick_step(n_layers))
    if zero_line:
        fig.add_hline(y=0, line_color="grey", line_width=0.8)
    legend_title = f"{legend}<br><sub>{shading}</sub>" if shading else legend
    return _style(fig, title, xaxis_title=xlabel, yaxis_title=ylabel, legend_title_text=legend_title)


def layer_pos_heatmap(
    values: Float[Array, "layer pos"],  # noqa: F722
    tokens: Sequence[str],
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = True,
    xlabel: str = "token",
):
    """Heatmap of ``values`` ``[layer pos]`` with the position's token string under each column
    (any column labels work: ``xlabel`` names them).

    >>> fig = layer_pos_heatmap([[1.0, -2.0]], ["Hello", " world"], zlabel="change")
    >>> fig.data[0].zmin, fig.data[0].zmax, list(fig.layout.xaxis.ticktext)
    (-2.0, 2.0, ['Hello', ' world'])
    """
    import plotly.graph_objects as go

    grid, labels = layer_pos_data(values, tokens, diverging)
    n_layers, n_pos = grid.z.shape
    # Columns are numbered, not named by token, so repeated tokens keep their own columns.
    text = [[html.escape(t) for t in labels]] * n_layers
    fig = go.Figure(_heatmap(
        grid, zlabel, x=list(range(n_pos)), y=list(range(n_layers)), text=text,
        hovertemplate="layer %{y}, position %{x} (%{text})<br>value %{z:.4g}<extra></extra>",
    ))
    fig.update_xaxes(tickmode="array", tickvals=list(range(n_pos)), ticktext=[html.escape(t) for t in labels])
    fig.update_yaxes(tick0=0, dtick=tick_step(n_layers))
    return _style(fig, title, xaxis_title=xlabel, yaxis_title="layer")


def layer_head_grid(
    values: Float[Array, "layer head"],  # noqa: F722
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = True,
):
    """Grid of one value per attention head: ``values`` ``[layer head]``.

    >>> fig = layer_head_grid([[0.5, -1.0], [0.0, 0.25]], zlabel="patching effect")
    >>> fig.data[0].zmin, fig.data[0].zmax
    (-1.0, 1.0)
    """
    import plotly.graph_objects as go

    grid = grid_data(values, "values", "layer head", diverging)
    n_layers, n_heads = grid.z.shape
    fig = go.Figure(_heatmap(
        grid, zlabel, x=list(range(n_heads)), y=list(range(n_layers)),
        hovertemplate="layer %{y}, head %{x}<br>value %{z:.4g}<extra></extra>",
    ))
    fig.update_xaxes(tick0=0, dtick=tick_step(n_heads))
    fig.update_yaxes(tick0=0, dtick=tick_step(n_layers))
    return _style(fig, title, xaxis_title="head", yaxis_title="layer")


def projection_2d(
    points: Float[Array, "batch 2"],  # noqa: F722
    labels: Sequence[str],
    models: Sequence[str],
    *,
    title: str = "",
    xlabel: str = "component 1",
    ylabel: str = "component 2",
):
    """Scatter of ``points`` ``[batch 2]``: colour by ``models[batch]``, marker shape by ``labels[batch]``.

    >>> fig = projection_2d([[0, 1], [1, 0], [2, 2]], ["harmful", "harmless", "harmful"], ["base", "base", "aligned"])
    >>> [trace.name for trace in fig.data]
    ['base, harmful', 'base, harmless', 'aligned, harmful']
    """
    import plotly.graph_objects as go

    fig = go.Figure([
        go.Scatter(
            x=g.xy[:, 0], y=g.xy[:, 1], mode="markers", name=f"{g.model}, {g.label}", legendgroup=g.model,
            marker=dict(color=g.color, symbol=MARKERS[g.marker][0], size=7, opacity=0.8),
        )
        for g in projection_data(points, labels, models)
    ])
    return _style(fig, title, xaxis_title=xlabel, yaxis_title=ylabel, legend_title_text="model, prompt label")


def token_strip(
    tokens: Sequence[str],
    values: Float[Array, " pos"],  # noqa: F722
    *,
    title: str = "",
    zlabel: str = "",
    diverging: bool = False,
    per_row: int = 16,
):
    """The tokens of one text as coloured cells, one value each (``values`` ``[pos]``), ``per_row`` per row.

    >>> fig = token_strip(["How", " do", " I"], [0.1, 0.5, 0.9], per_row=2)
    >>> [list(row) for row in fig.data[0].text]
    [['How', ' do'], [' I', '']]
    """
    import plotly.graph_objects as go

    strip = token_strip_data(tokens, values, diverging, per_row)
    rows = len(strip.text)
    fig = go.Figure(_heatmap(
        strip.grid, zlabel, text=[[html.escape(t) for t in row] for row in strip.text], texttemplate="%{text}",
        customdata=strip.position, xgap=2, ygap=2, hoverongaps=False,
        hovertemplate="token %{customdata}: %{text}<br>value %{z:.4g}<extra></extra>",
    ))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")  # first row at the top, read like text
    return _style(fig, title, height=120 + 36 * rows)


def estimate_scatter(
    exact: Mapping[str, Array], estimate: Mapping[str, Array], *, title: str = "", xlabel: str = "exact",
    ylabel: str = "estimate",
):
    """One point per cell: ``estimate[name]`` against ``exact[name]`` (same shapes), with the line y = x.

    >>> fig = estimate_scatter({"sft heads": [0.0, 1.0]}, {"sft heads": [0.1, 0.8]})
    >>> [trace.name for trace in fig.data]
    ['y = x', 'sft heads']
    """
    import plotly.graph_objects as go

    series, (low, high) = scatter_data(exact, estimate)
    fig = go.Figure([go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                                line={"color": "grey", "dash": "dot", "width": 1})])
    for s in series:
        fig.add_trace(go.Scatter(x=s.x, y=s.y, mode="markers", name=html.escape(s.name),
                                 marker={"color": s.color, "symbol": MARKERS[s.marker][0], "size": 7, "opacity": 0.8}))
    return _style(fig, title, xaxis_title=xlabel, yaxis_title=ylabel)


def histogram(values: Mapping[str, Array], *, bins: int = 20, value_range: tuple[float, float] | None = None,
              marks: Sequence[float] = (), title: str = "", xlabel: str = "", ylabel: str = "count"):
    """Overlaid histograms, one per series ``values[name]`` (flattened), with dotted vertical lines at ``marks``.

    >>> fig = histogram({"crosscoder": [0.1, 0.5, 0.52, 0.95]}, value_range=(0, 1), marks=[0.1, 0.9])
    >>> [trace.name for trace in fig.data]
    ['crosscoder']
    """
    import plotly.graph_objects as go

    low, high = value_range or (None, None)
    size = None if value_range is None else (high - low) / bins
    fig = go.Figure([go.Histogram(x=v, name=html.escape(name), marker_color=color, opacity=0.75,
                                  xbins=None if size is None else {"start": low, "end": high, "size": size},
                                  nbinsx=bins) for name, color, v in histogram_data(values)])
    for mark in marks:
        fig.add_vline(x=mark, line_dash="dot", line_color="grey", line_width=1)
    return _style(fig, title, barmode="overlay", xaxis_title=xlabel, yaxis_title=ylabel)


def scatter(x: Mapping[str, Array], y: Mapping[str, Array], *, marks: Sequence[float] = (), title: str = "",
            xlabel: str = "", ylabel: str = ""):
    """Points ``(x[name], y[name])`` per series, with dotted lines at ``x = m`` and ``y = m`` for each of ``marks``.

    >>> fig = scatter({"causal": [0.1]}, {"causal": [0.2]}, marks=[0.5])
    >>> [trace.name for trace in fig.data]
    ['causal']
    """
    import plotly.graph_objects as go

    series, _ = scatter_data(x, y)
    fig = go.Figure([go.Scatter(x=s.x, y=s.y, mode="markers", name=html.escape(s.name),
                                marker={"color": s.color, "symbol": MARKERS[s.marker][0], "size": 8, "opacity": 0.8})
                     for s in series])
    for mark in marks:
        fig.add_vline(x=mark, line_dash="dot", line_color="grey", line_width=1)
        fig.add_hline(y=mark, line_dash="dot", line_color="grey", line_width=1)
    return _style(fig, title, xaxis_title=xlabel, yaxis_title=ylabel)


def grouped_bars(values: Mapping[str, Mapping[str, float]], *, title: str = "", xlabel: str = "", ylabel: str = ""):
    """Bars ``values[series][category]``: one group per category, one bar per series.

    >>> fig = grouped_bars({"added to the base": {"12": 0.4}, "ablated at the site": {"12": 0.1}})
    >>> [bar.name for bar in fig.data]
    ['added to the base', 'ablated at the site']
    """
    import plotly.graph_objects as go

    series, categories = bar_table(values)
    fig = go.Figure([go.Bar(name=html.escape(s), x=categories, y=[values[s][c] for c in categories],
                            marker_color=model_color(s)) for s in series])
    return _style(fig, title, barmode="group", xaxis_title=xlabel, yaxis_title=ylabel, xaxis_type="category")
