"""Figures in one theme: plotly for exploring in notebooks, matplotlib for static paper figures.

Every figure kind has a plotly function and a ``_static`` matplotlib twin that take the same
arguments; both return a figure and never show it. Base and aligned models always get the same
two colours (:data:`MODEL_COLORS`). :func:`save_figure` writes any of them to ``figures/``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

MODEL_COLORS = {
    "base": "#4C78A8",  # blue
    "aligned": "#E45756",  # red
    "sft": "#E45756",  # an aligned model: the aligned red...
    "dpo": "#B0413E",  # ...and a darker red for a second one
}
FONT = "DejaVu Sans, Arial, sans-serif"
FIGURES_ENV = "INTERP_FIGURES_DIR"


def model_color(name: str) -> str:
    """The theme colour of a model name; unknown names count as aligned."""
    return MODEL_COLORS.get(name, MODEL_COLORS["aligned"])


def _pretty(split: str) -> str:
    return split.replace("_", " ")


def _bar_table(rates: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[str]]:
    """Model names and the splits every model has, in first-seen order."""
    models = list(rates)
    if not models:
        raise ValueError("no models to plot")
    splits = [s for s in rates[models[0]] if all(s in rates[m] for m in models)]
    return models, splits


def refusal_bars(rates: Mapping[str, Mapping[str, float]], title: str = "Refusal rate by split"):
    """Grouped bars: one group per split, one bar per model. ``rates[model][split]`` in [0, 1].

    >>> fig = refusal_bars({"base": {"harmful": 0.0}, "aligned": {"harmful": 1.0}})
    >>> [bar.name for bar in fig.data]
    ['base', 'aligned']
    """
    import plotly.graph_objects as go

    models, splits = _bar_table(rates)
    fig = go.Figure(
        [
            go.Bar(name=m, x=[_pretty(s) for s in splits], y=[100 * rates[m][s] for s in splits],
                   marker_color=model_color(m))
            for m in models
        ]
    )
    fig.update_layout(
        title=title, barmode="group", yaxis_title="refused (%)", xaxis_title="prompt split",
        yaxis_range=[0, 105], template="simple_white", font_family=FONT, legend_title_text="model",
    )
    return fig


def refusal_bars_static(rates: Mapping[str, Mapping[str, float]], title: str = "Refusal rate by split"):
    """Matplotlib twin of :func:`refusal_bars`.

    >>> fig = refusal_bars_static({"base": {"harmful": 0.0}, "aligned": {"harmful": 1.0}})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['base', 'aligned']
    """
    from matplotlib.figure import Figure

    models, splits = _bar_table(rates)
    fig = Figure(figsize=(1.2 + 1.1 * len(splits), 3.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(splits))]
        bars = ax.bar(xs, [100 * rates[m][s] for s in splits], width, label=m, color=model_color(m))
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)  # so a 0% bar still reads as 0
    ax.set_xticks(range(len(splits)), [_pretty(s) for s in splits], rotation=20, ha="right")
    ax.set(ylabel="refused (%)", ylim=(0, 110), title=title)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(title="model", frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def figures_dir() -> Path:
    """``$INTERP_FIGURES_DIR``, else ``figures/`` of the enclosing project (the nearest folder up
    with a ``pyproject.toml``), else ``./figures``."""
    if os.environ.get(FIGURES_ENV):
        return Path(os.environ[FIGURES_ENV])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder / "figures"
    return here / "figures"


def save_figure(fig, name: str, directory: str | Path | None = None) -> list[Path]:
    """Write a figure to ``figures/``: PNG and SVG for matplotlib, standalone HTML for plotly.

    Files are written to a temporary name and renamed, so a crash never leaves half a figure.
    Returns the paths written.
    """
    if not name or Path(name).name != name:
        raise ValueError(f"figure name must be a plain file stem such as 'refusal_by_split', got {name!r}")
    out = Path(directory) if directory is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(fig, "savefig"):
        writers = {
            ".png": lambda p: fig.savefig(p, dpi=200, format="png"),
            ".svg": lambda p: fig.savefig(p, format="svg"),
        }
    elif hasattr(fig, "write_html"):
        # Plotly's JavaScript is embedded, so the page opens with no network.
        writers = {".html": lambda p: fig.write_html(p, include_plotlyjs=True, full_html=True)}
    else:
        raise TypeError(f"save_figure takes a matplotlib or plotly figure, not {type(fig).__name__}")
    paths = []
    for suffix, write in writers.items():
        final = out / f"{name}{suffix}"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}", suffix=suffix, dir=out)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, final)
        finally:
            Path(tmp).unlink(missing_ok=True)
        paths.append(final)
    return paths
