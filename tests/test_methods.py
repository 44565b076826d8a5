"""interp.methods: probe transfer across several models, against the pair probes of interp.probes; cosines."""

from __future__ import annotations

import math

import pytest
import torch

from interp import methods, organisms
from interp.probes import concept_split, probe_pair


@pytest.fixture(scope="module")
def pair(organism_zoo):
    return organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")


def test_probe_transfer_equals_the_pair_probes(pair):
    """Two models: the same numbers as probe_pair (fitted per model, tested on both) at the answer position."""
    prompts = organisms.prompt_set(["harmful_train", "harmless_train", "harmful_held_out", "harmless_held_out"])
    split = concept_split(prompts, test_fraction=0.0)
    ours = methods.probe_transfer({"base": pair.base, "aligned": pair.aligned}, prompts, split=split)
    expected = probe_pair(pair, prompts, method="mean_diff", positions=-1, split=split)
    for fitted in ("base", "aligned"):
        for tested in ("base", "aligned"):
            torch.testing.assert_close(ours.auroc[fitted, tested], expected.auroc[fitted, tested][:, 0])
            torch.testing.assert_close(ours.accuracy[fitted, tested], expected.accuracy[fitted, tested][:, 0])
    matrix = ours.matrix(layer=2)
    assert matrix.loc["base", "aligned"] == pytest.approx(expected.auroc["base", "aligned"][2, 0].item())
    assert ours.test_groups == expected.test_groups


def test_models_of_other_shapes_are_refused(pair):
    class Other:
        class cfg:  # noqa: N801
            n_layers, d_model = 3, 64

    with pytest.raises(ValueError, match=r"differ in \(n_layers, d_model\)"):
        methods.resid_post({"base": pair.base, "other": Other()}, ["how do i bake ?"])


def test_cosines_and_chance():
    g = torch.Generator().manual_seed(1)
    vectors = {name: torch.randn(16, generator=g) for name in "abc"}
    table = methods.cosines(vectors)
    expected = torch.nn.functional.cosine_similarity(vectors["a"], vectors["b"], dim=0).item()
    assert table.loc["a", "b"] == pytest.approx(expected, abs=1e-6) and table.loc["c", "c"] == pytest.approx(1.0)
    # |cosine| of random directions in d dimensions is about |N(0, 1/d)|: its 99% quantile is about 2.576 / sqrt(d)
    assert methods.chance_cosine(1024) == pytest.approx(2.576 / math.sqrt(1024), rel=0.05)
