"""Bad input gets a clear error before any work, naming the problem (issue: bad input)."""

from __future__ import annotations

import pytest

from interp import interventions, load_pair
from interp.cache import collect_activations, collect_pair_activations

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def model(make_checkpoint):
    path = make_checkpoint("llama", seed=3)
    return load_pair(path, path, device="cpu").aligned


@pytest.mark.parametrize("positions", [True, False, 1.0, "last", None, [], [0, True]])
def test_positions_that_are_not_ints_are_refused(model, positions):
    with pytest.raises(ValueError, match="positions must be an int, a list of ints or 'all'"):
        collect_activations(model, ["how do i bake ?"], HOOK, positions=positions, progress=False)


def test_no_prompts_is_refused(model, make_checkpoint):
    with pytest.raises(ValueError, match="no prompts"):
        collect_activations(model, [], HOOK, progress=False)
    path = make_checkpoint("llama", seed=3)
    with pytest.raises(ValueError, match="no prompts"):
        collect_pair_activations(load_pair(path, path, device="cpu"), [], HOOK, progress=False)
    with pytest.raises(ValueError, match="no prompts"):  # checked where every path tokenizes prompts
        interventions.generate(model, [])


def test_no_hook_names_is_refused(model):
    with pytest.raises(ValueError, match="hook_names is empty"):
        collect_activations(model, ["how do i bake ?"], [], progress=False)
