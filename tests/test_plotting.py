"""Plotting helpers return figures without showing them, in one theme; save_figure writes atomically."""

from __future__ import annotations

import matplotlib.pyplot as plt
import plotly.graph_objects as go
import pytest

from interp import plotting

RATES = {"base": {"harmful_train": 0.0, "bait": 0.1}, "sft": {"harmful_train": 1.0, "bait": 0.9}}


@pytest.fixture(autouse=True)
def no_showing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a library function called show()")

    monkeypatch.setattr(go.Figure, "show", refuse)
    monkeypatch.setattr(plt, "show", refuse)


def test_bar_charts_in_both_backends_share_the_theme():
    fig = plotting.refusal_bars(RATES)
    assert [bar.marker.color for bar in fig.data] == [plotting.MODEL_COLORS["base"], plotting.MODEL_COLORS["sft"]]
    assert list(fig.data[1].y) == [100.0, 90.0] and fig.layout.yaxis.title.text == "refused (%)"
    static = plotting.refusal_bars_static(RATES)
    ax = static.axes[0]
    assert ax.get_ylabel() == "refused (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["harmful train", "bait"]


def test_save_figure_writes_files(tmp_path):
    png, svg = plotting.save_figure(plotting.refusal_bars_static(RATES), "bars", directory=tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG" and svg.stat().st_size > 0
    (html,) = plotting.save_figure(plotting.refusal_bars(RATES), "bars", directory=tmp_path)
    assert "<html>" in html.read_text()[:200]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.html", "bars.png", "bars.svg"]


def test_figures_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(plotting.FIGURES_ENV, str(tmp_path))
    assert plotting.figures_dir() == tmp_path


@pytest.mark.parametrize("name", ["", "a/b", "../up"])
def test_bad_figure_names(tmp_path, name):
    with pytest.raises(ValueError, match="plain file stem"):
        plotting.save_figure(plotting.refusal_bars_static(RATES), name, directory=tmp_path)


def test_save_figure_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="matplotlib or plotly"):
        plotting.save_figure(object(), "x", directory=tmp_path)
