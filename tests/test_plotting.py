"""Plotting helpers return figures without showing them, in one theme; save_figure writes atomically."""

from __future__ import annotations

import math
import statistics

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from matplotlib.figure import Figure

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


# --- figure kinds beyond the bar chart -------------------------------------------------------

GEN = np.random.default_rng(0)
CURVES = {"base": GEN.normal(size=(5, 4)), "aligned": GEN.normal(size=(5, 4))}  # [batch layer]
LAYER_POS = GEN.normal(size=(3, 5))  # [layer pos]
TOKENS = ["<|user|>", " how", " do", " $5", " do"]  # a tag, money, a repeated token
LAYER_HEAD = GEN.normal(size=(3, 4))  # [layer head]
POINTS = GEN.normal(size=(6, 2))  # [batch 2]
LABELS = ["harmful", "harmless"] * 3
MODELS = ["base"] * 3 + ["aligned"] * 3
STRIP = GEN.uniform(size=5)  # [pos]

KINDS = {  # name -> (arguments, keywords) taking an array converter
    "layer_curves": lambda a: (({m: a(v) for m, v in CURVES.items()},), {"ylabel": "probe accuracy"}),
    "layer_pos_heatmap": lambda a: ((a(LAYER_POS), TOKENS), {"zlabel": "change"}),
    "layer_head_grid": lambda a: ((a(LAYER_HEAD),), {"zlabel": "effect"}),
    "projection_2d": lambda a: ((a(POINTS), LABELS, MODELS), {}),
    "token_strip": lambda a: ((TOKENS, a(STRIP)), {"per_row": 2}),
    "histogram": lambda a: (({"crosscoder": a(STRIP)},), {"value_range": (0, 1), "marks": [0.1, 0.9]}),
    "scatter": lambda a: (({"causal": a(STRIP)}, {"causal": a(STRIP[::-1].copy())}), {"marks": [0.5]}),
    "grouped_bars": lambda a: (({"added to the base": {"3": 0.4, "7": 0.1},
                                 "ablated at the site": {"3": 0.1, "7": 0.0}},), {"ylabel": "share"}),
}
CONVERTERS = {"torch": torch.tensor, "numpy": np.asarray, "list": lambda v: np.asarray(v).tolist()}


def both(name):
    return getattr(plotting, name), getattr(plotting, f"{name}_static")


@pytest.mark.parametrize("convert", CONVERTERS)
@pytest.mark.parametrize("name", KINDS)
def test_every_kind_returns_a_figure_in_both_backends(name, convert):
    args, kwargs = KINDS[name](CONVERTERS[convert])
    interactive, static = both(name)
    assert isinstance(interactive(*args, title="A title", **kwargs), go.Figure)
    fig = static(*args, title="A title", **kwargs)
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "A title"
    assert plt.get_fignums() == []  # built without pyplot, so nothing is left open


def test_torch_and_numpy_give_the_same_figure():
    bf16 = torch.tensor(LAYER_POS, dtype=torch.bfloat16)  # low precision and autograd are both fine
    grad = torch.tensor(LAYER_POS, requires_grad=True)
    a = plotting.layer_pos_heatmap(grad, TOKENS)
    b = plotting.layer_pos_heatmap(LAYER_POS, TOKENS)
    np.testing.assert_array_equal(np.asarray(a.data[0].z), np.asarray(b.data[0].z))
    assert plotting.layer_pos_heatmap_static(bf16, TOKENS).axes[0].get_images()[0].get_array().shape == (3, 5)


def ci95(column):
    return 1.96 * statistics.stdev(column) / math.sqrt(len(column))


def test_ci95_band_matches_a_direct_computation():
    v = [[0.0, 1.0, 2.0], [2.0, 3.0, 6.0], [4.0, 2.0, 1.0]]  # [batch layer]
    columns = list(zip(*v, strict=True))
    mean = [statistics.fmean(c) for c in columns]
    lower = [m - ci95(c) for m, c in zip(mean, columns, strict=True)]
    upper = [m + ci95(c) for m, c in zip(mean, columns, strict=True)]

    fig = plotting.layer_curves({"sft": torch.tensor(v)}, ylabel="score")
    band, line = fig.data
    assert "95% interval" in fig.layout.legend.title.text
    np.testing.assert_allclose(line.y, mean)
    np.testing.assert_allclose(band.x, [0, 1, 2, 2, 1, 0])
    np.testing.assert_allclose(band.y, upper + lower[::-1])  # along the top, back along the bottom
    assert line.line.color == plotting.MODEL_COLORS["sft"]

    ax = plotting.layer_curves_static({"sft": np.array(v)}, ylabel="score").axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), mean)
    vertices = {tuple(p) for p in np.round(ax.collections[0].get_paths()[0].vertices, 9)}
    assert {(x, round(y, 9)) for x, y in zip([0.0, 1.0, 2.0] * 2, upper + lower, strict=True)} <= vertices
    assert "95% interval" in ax.get_legend().get_title().get_text()


def test_std_band_and_no_band():
    v = np.array([[0.0, 4.0], [2.0, 0.0]])
    band, _ = plotting.layer_curves({"base": v}, ylabel="score", band="std").data
    np.testing.assert_allclose(band.y, [1 + math.sqrt(2), 2 + math.sqrt(8), 2 - math.sqrt(8), 1 - math.sqrt(2)])
    assert [t.name for t in plotting.layer_curves({"base": v}, ylabel="score", band=None).data] == ["base"]
    # one curve given as [layer] has no band either
    assert [t.name for t in plotting.layer_curves({"base": v[0]}, ylabel="score").data] == ["base"]
    assert len(plotting.layer_curves_static({"base": v}, ylabel="score", band=None).axes[0].collections) == 0


def test_layer_curves_axes_read_in_plain_words():
    fig = plotting.layer_curves(CURVES, ylabel="probe accuracy")
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "probe accuracy"
    assert fig.layout.xaxis.dtick == 1
    ax = plotting.layer_curves_static(CURVES, ylabel="probe accuracy").axes[0]
    assert ax.get_xlabel() == "layer" and all(float(t).is_integer() for t in ax.get_xticks())


@pytest.mark.parametrize("name", ["layer_pos_heatmap", "layer_head_grid"])
def test_diverging_grids_are_centred_at_zero_with_positive_red(name):
    args, _ = KINDS[name](np.asarray)
    top = np.abs(args[0]).max()
    interactive, static = both(name)
    heat = interactive(*args).data[0]
    assert (heat.zmin, heat.zmax) == (-top, top)
    assert heat.colorscale[-1][1] == "rgb(103,0,31)" and heat.colorscale[0][1] == "rgb(5,48,97)"  # red up
    im = static(*args).axes[0].get_images()[0]
    assert (im.norm.vmin, im.norm.vmax) == (-top, top) and im.get_cmap().name == "RdBu_r"


def test_sequential_scales_run_from_min_to_max():
    heat = plotting.layer_head_grid(LAYER_HEAD, diverging=False).data[0]
    assert (heat.zmin, heat.zmax) == (LAYER_HEAD.min(), LAYER_HEAD.max())
    im = plotting.token_strip_static(TOKENS, STRIP).axes[0].get_images()[0]
    assert (im.norm.vmin, im.norm.vmax) == (STRIP.min(), STRIP.max()) and im.get_cmap().name == "viridis"
    strip = plotting.token_strip(TOKENS, STRIP - 0.5, diverging=True).data[0]
    assert strip.zmin == -strip.zmax


def test_all_zero_differences_still_get_a_symmetric_scale():
    heat = plotting.layer_head_grid(np.zeros((2, 2))).data[0]
    assert heat.zmin == -heat.zmax and heat.zmax > 0


def test_heatmap_tokens_keep_their_columns_and_read_safely():
    fig = plotting.layer_pos_heatmap(LAYER_POS, TOKENS)
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3, 4]  # " do" twice, two columns
    assert list(fig.layout.xaxis.ticktext) == ["&lt;|user|&gt;", " how", " do", " $5", " do"]
    assert fig.layout.xaxis.title.text == "token" and fig.layout.yaxis.title.text == "layer"
    ax = plotting.layer_pos_heatmap_static(LAYER_POS, TOKENS).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][3] == r" \$5"  # not read as mathematics
    ax.figure.canvas.draw()  # rendering succeeds with a tag and a dollar sign
    assert plotting.layer_pos_heatmap([[0.0]], ["a\nb"]).layout.xaxis.ticktext == ("a\\nb",)


def test_head_grid_axes():
    fig = plotting.layer_head_grid(LAYER_HEAD)
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("head", "layer")
    ax = plotting.layer_head_grid_static(LAYER_HEAD).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("head", "layer")


def test_projection_has_one_entry_per_model_and_label():
    fig = plotting.projection_2d(torch.tensor(POINTS), LABELS, MODELS)
    names = ["base, harmful", "base, harmless", "aligned, harmful", "aligned, harmless"]
    assert [t.name for t in fig.data] == names
    assert [t.marker.color for t in fig.data] == [plotting.MODEL_COLORS[m] for m in ["base"] * 2 + ["aligned"] * 2]
    assert [t.marker.symbol for t in fig.data] == ["circle", "x", "circle", "x"]
    np.testing.assert_allclose(np.c_[fig.data[0].x, fig.data[0].y], POINTS[[0, 2]])
    ax = plotting.projection_2d_static(POINTS, np.array(LABELS), MODELS, xlabel="refusal direction").axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == names
    assert ax.get_xlabel() == "refusal direction" and ax.get_ylabel() == "component 2"


def test_token_strip_wraps_rows():
    heat = plotting.token_strip(TOKENS, STRIP, per_row=2).data[0]
    assert np.asarray(heat.z).shape == (3, 2) and math.isnan(heat.z[2][1])
    assert [list(row) for row in heat.text] == [["&lt;|user|&gt;", " how"], [" do", " $5"], [" do", ""]]
    ax = plotting.token_strip_static(TOKENS, torch.tensor(STRIP), per_row=2).axes[0]
    assert [t.get_text() for t in ax.texts] == ["<|user|>", " how", " do", r" \$5", " do"]
    assert [t.get_position() for t in ax.texts][2] == (0, 1)  # third token: first cell of the second row
    ax.figure.canvas.draw()


BAD_INPUTS = [
    ("layer_pos_heatmap", (LAYER_POS, TOKENS[:4]), {}, "4 tokens for 5 positions"),
    ("layer_pos_heatmap", (LAYER_POS[0], TOKENS), {}, r"shape \[layer pos\]"),
    ("layer_pos_heatmap", (LAYER_POS, "hello"), {}, "not one string"),
    ("layer_head_grid", (np.zeros((2, 3, 4)),), {}, r"shape \[layer head\], got shape \(2, 3, 4\)"),
    ("layer_head_grid", (np.zeros((0, 3)),), {}, "empty"),
    ("projection_2d", (POINTS, LABELS[:5], MODELS), {}, "6 points, 5 labels and 6 models"),
    ("projection_2d", (POINTS, LABELS, MODELS[:2]), {}, "6 points, 6 labels and 2 models"),
    ("projection_2d", (np.zeros((6, 3)), LABELS, MODELS), {}, r"\[batch 2\]"),
    ("token_strip", (TOKENS, STRIP[:3]), {}, "5 tokens but 3 values"),
    ("token_strip", (TOKENS, STRIP), {"per_row": 0}, "per_row must be a positive integer"),
    ("layer_curves", ({"base": np.zeros((2, 3, 4))},), {"ylabel": "y"}, r"values\['base'\] must have shape"),
    ("layer_curves", ({},), {"ylabel": "y"}, "no models"),
    ("layer_curves", (CURVES,), {"ylabel": "y", "band": "sem"}, "band must be one of"),
    ("layer_curves", ({"base": [[1, 2], [3]]},), {"ylabel": "y"}, "rectangular list of numbers"),
    ("histogram", ({},), {}, "no values"),
    ("scatter", ({"a": [1, 2]}, {"b": [1, 2]}), {}, "same series"),
    ("scatter", ({"a": [1, 2]}, {"a": [1]}), {}, "hold 2 and 1 values"),
    ("grouped_bars", ({},), {}, "no models"),
]


@pytest.mark.parametrize("backend", [0, 1], ids=["plotly", "matplotlib"])
@pytest.mark.parametrize(("name", "args", "kwargs", "message"), BAD_INPUTS, ids=[b[3] for b in BAD_INPUTS])
def test_bad_input_is_a_clear_value_error(name, args, kwargs, message, backend):
    with pytest.raises(ValueError, match=message):
        both(name)[backend](*args, **kwargs)


@pytest.mark.parametrize("name", KINDS)
def test_save_figure_writes_every_kind(tmp_path, name):
    args, kwargs = KINDS[name](torch.tensor)
    interactive, static = both(name)
    assert [p.name for p in plotting.save_figure(static(*args, **kwargs), name, directory=tmp_path)] == [
        f"{name}.png", f"{name}.svg"
    ]
    (html,) = plotting.save_figure(interactive(*args, **kwargs), name, directory=tmp_path)
    assert html.stat().st_size > 0 and not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_public_names_stay_importable():
    from interp.plotting import FIGURES_ENV, FONT, MODEL_COLORS, figures_dir, model_color, save_figure  # noqa: F401

    assert FIGURES_ENV == "INTERP_FIGURES_DIR" and model_color("dpo") == MODEL_COLORS["dpo"]
    assert model_color("rlhf") == MODEL_COLORS["aligned"]


def test_saving_the_same_figure_twice_gives_the_same_files(tmp_path):
    """Regenerating figures/ must not dirty git when nothing changed (no timestamps, stable ids)."""
    first = plotting.save_figure(plotting.refusal_bars_static(RATES), "a", directory=tmp_path)
    second = plotting.save_figure(plotting.refusal_bars_static(RATES), "b", directory=tmp_path)
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.suffix


def test_transfer_curves_are_dashed_in_both_twins():
    values = {"base": [0.5, 1.0], "base → aligned": [0.5, 0.9], "sft → base": [0.6, 0.8], "dpo → base": [0.6, 0.7]}
    lines = {t.name: t.line.dash for t in plotting.layer_curves(values, ylabel="acc", band=None).data}
    assert lines == {"base": "solid", "base → aligned": "dash", "sft → base": "dash", "dpo → base": "dot"}
    fig = plotting.layer_curves_static(values, ylabel="acc", band=None, xlabel="reply token", legend="prompts")
    assert [line.get_linestyle() for line in fig.axes[0].get_lines()] == ["-", "--", "--", ":"]
    assert fig.axes[0].get_xlabel() == "reply token"
    plt.close(fig)


def test_curves_sharing_a_colour_get_their_own_line_pattern():
    values = {"sft bypass": [1.0, -1.0], "sft induce": [-2.0, 3.0], "dpo bypass": [1.0, -2.0], "dpo induce": [-3, 2]}
    lines = {t.name: t.line.dash for t in plotting.layer_curves(values, ylabel="score", band=None).data}
    assert lines == {"sft bypass": "solid", "sft induce": "dash", "dpo bypass": "solid", "dpo induce": "dash"}
    fig = plotting.layer_curves_static(values, ylabel="score", band=None)
    assert [line.get_linestyle() for line in fig.axes[0].get_lines()] == ["-", "--", "-", "--"]
    plt.close(fig)
