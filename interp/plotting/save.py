"""Where figures go and how they are written: ``figures_dir`` and ``save_figure``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FIGURES_ENV = "INTERP_FIGURES_DIR"


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
            ".svg": lambda p: _save_svg(fig, p),
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


def _save_svg(fig, path) -> None:
    """SVG without a timestamp and with stable element ids, so the same figure gives the same file."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "interp"}):
        fig.savefig(path, format="svg", metadata={"Date": None})
