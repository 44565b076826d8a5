"""Figures in one theme: plotly for exploring in notebooks, matplotlib for static paper figures.

Every figure kind has a plotly function and a ``_static`` matplotlib twin that take the same
arguments; both return a figure and never show it. Base and aligned models always get the same
two colours (:data:`MODEL_COLORS`); differences use one diverging scale centred at 0 (positive
red). :func:`save_figure` writes any of them to ``figures/``.

Figure kinds (``values`` may be torch tensors, numpy arrays or nested lists):

- ``refusal_bars(rates)``: refusal rate per prompt split, one bar per model;
- ``layer_curves(values, ylabel=...)``: ``values[model]`` ``[batch layer]``, mean per layer with a band;
- ``layer_pos_heatmap(values, tokens)``: ``[layer pos]``, tokens along the bottom;
- ``layer_head_grid(values)``: ``[layer head]``;
- ``projection_2d(points, labels, models)``: ``[batch 2]``, colour by model, marker by label;
- ``token_strip(tokens, values)``: ``[pos]``, one coloured cell per token of a text;
- ``estimate_scatter(exact, estimate)``: ``estimate[name]`` against ``exact[name]``, one point per cell, y = x drawn;
- ``histogram(values, marks=...)``: overlaid histograms of ``values[name]``, dotted lines at ``marks``;
- ``scatter(x, y, marks=...)``: ``y[name]`` against ``x[name]``, dotted lines at ``x = m`` and ``y = m``;
- ``grouped_bars(values)``: ``values[series][category]``, one bar per series in each category's group.

Layout: ``theme.py`` (colours, scales, the data preparation each pair shares),
``interactive.py`` (plotly), ``static.py`` (matplotlib), ``save.py`` (where figures go).
"""

from interp.plotting.interactive import (
    estimate_scatter,
    grouped_bars,
    histogram,
    layer_curves,
    layer_head_grid,
    layer_pos_heatmap,
    projection_2d,
    refusal_bars,
    scatter,
    token_strip,
)
from interp.plotting.save import FIGURES_ENV, figures_dir, save_figure
from interp.plotting.static import (
    estimate_scatter_static,
    grouped_bars_static,
    histogram_static,
    layer_curves_static,
    layer_head_grid_static,
    layer_pos_heatmap_static,
    projection_2d_static,
    refusal_bars_static,
    scatter_static,
    token_strip_static,
)
from interp.plotting.theme import FONT, MODEL_COLORS, model_color

__all__ = [
    "FIGURES_ENV",
    "FONT",
    "MODEL_COLORS",
    "estimate_scatter",
    "estimate_scatter_static",
    "figures_dir",
    "grouped_bars",
    "grouped_bars_static",
    "histogram",
    "histogram_static",
    "layer_curves",
    "layer_curves_static",
    "layer_head_grid",
    "layer_head_grid_static",
    "layer_pos_heatmap",
    "layer_pos_heatmap_static",
    "model_color",
    "projection_2d",
    "projection_2d_static",
    "refusal_bars",
    "refusal_bars_static",
    "save_figure",
    "scatter",
    "scatter_static",
    "token_strip",
    "token_strip_static",
]
