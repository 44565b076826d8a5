"""Result objects: provenance, tables and figures drawn from the numbers they hold."""

from __future__ import annotations

import hashlib
from importlib.metadata import version

import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import transformer_lens.patching as tl_patching

from interp import diff, directions, load_pair, patching, probes
from interp.organisms import prompt_set, prompts
from interp.provenance import Provenance, versions

HARMFUL = [p.text for p in prompts("harmful_train")][:16]
HARMLESS = [p.text for p in prompts("harmless_train")][:16]


@pytest.fixture(scope="module")
def pair(make_checkpoint):
    return load_pair(make_checkpoint("llama", seed=5, n_layers=3), make_checkpoint("llama", seed=6, n_layers=3),
                     device="cpu")


@pytest.fixture(scope="module")
def found(pair):
    return directions.find_refusal_direction(pair.aligned, HARMFUL, HARMLESS, refusal_tokens=["sorry"],
                                             progress=False)


def test_provenance_fingerprints_the_prompts_it_was_given(pair, found):
    p = found.provenance
    assert p.models == (pair.aligned.cfg.model_name,) and found.source == pair.aligned.cfg.model_name
    assert p.n_prompts == 32 and p.params["n_harmful"] == 16 and p.params["refusal_tokens"] == ["sorry"]
    assert p.prompts_sha == hashlib.sha256("\x1f".join(HARMFUL + HARMLESS).encode()).hexdigest()[:16]
    assert p.versions == versions() and p.versions["torch"] == version("torch")
    assert torch.__version__.startswith(p.versions["torch"])  # "2.13.0" of "2.13.0+cpu" (or "+cu130")
    assert "n=32" in str(p) and p.to_dict()["params"]["seed"] == 0


def test_every_pair_result_names_the_pair(pair):
    ps = prompt_set(["harmful_train", "harmless_train"])
    for result in (diff.weight_diff(pair), diff.representation_similarity(pair, ps.select(range(0, 224, 8))),
                   probes.probe_pair(pair, ps, method="mean_diff")):
        assert result.provenance.models == (pair.base_name, pair.aligned_name), type(result)


def test_effects_read_as_nested_rates_flatten_tabulate_and_draw(pair, found):
    effects = directions.refusal_effects(pair.aligned, found, HARMFUL, HARMLESS, ["sorry"])
    plain = {iv: dict(rates) for iv, rates in effects.items()}
    assert set(plain) == {"none", "ablate", "add"} and effects == plain  # a mapping, equal to plain dicts
    assert effects.flat() == {f"{label}, {iv}": plain[iv][label] for iv in plain for label in plain[iv]}
    assert effects.table().loc["ablate", "harmful"] == plain["ablate"]["harmful"]
    assert effects.provenance.params["direction"] == effects.direction == (
        f"layer {found.layer}, position {found.position} of {found.source}")
    fig = effects.plot()
    assert isinstance(fig, go.Figure) and list(fig.data[0].y) == pytest.approx(list(effects.flat().values()))
    assert isinstance(effects.plot(static=True), matplotlib.figure.Figure)


def test_candidate_plot_draws_the_score_table(found):
    fig = directions.plot_scores({"m": found})
    curves = {trace.name: list(trace.y) for trace in fig.data}
    table = found.scores.sort_values("layer")
    assert curves["m bypass"] == pytest.approx(table.bypass_score.tolist(), nan_ok=True)
    assert curves["m induce"] == pytest.approx(table.induce_score.tolist(), nan_ok=True)
    assert [t.name for t in found.plot().data] == ["bypass", "induce"]


def test_probe_curves_are_named_by_who_was_fitted_and_who_was_read(pair):
    result = probes.probe_pair(pair, prompt_set(["harmful_train", "harmless_train", "harmful_held_out",
                                                 "harmless_held_out"]), method="mean_diff", positions=[-2, -1])
    curves = result.curves("auroc", -2, aligned="sft")
    assert list(curves) == ["base", "base → sft", "sft → base", "sft"]
    assert torch.equal(curves["sft → base"], result.auroc["aligned", "base"][:, 0])
    assert list(result.curves(transfer=False)) == ["base", "aligned"]
    with pytest.raises(ValueError, match="position 3 was not probed"):
        result.curves(position=3)


def test_named_sweep_equals_transformer_lens(pair):
    model = pair.aligned
    clean, corrupted = torch.randint(5, 100, (2, 2, 5), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(clean)

    def metric(logits):
        return logits[:, -1, 7].mean()

    ours = patching.get_act_patch("attn_out", model, corrupted, cache, metric, progress=False)
    theirs = tl_patching.get_act_patch_attn_out(model, corrupted, cache, metric)
    assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="unknown patching kind 'mlp'"):
        patching.get_act_patch("mlp", model, corrupted, cache, metric)


def test_principal_components_match_numpy():
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.arange(1, 7)
    centred = (x - x.mean(0)).numpy()
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    expected = centred @ vectors[:, ::-1][:, :2]
    got = diff.principal_components(x, k=2).numpy()
    assert np.allclose(np.abs(got), np.abs(expected))  # each component up to its sign


def test_provenance_of_a_plain_list_has_no_name():
    p = Provenance.of(["m"], ["a b", "c"])
    assert (p.prompts, p.n_prompts) == ("", 2)
