"""interp.methods: probe transfer across several models, against the pair probes of interp.probes; cosines."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp import methods, organisms
from interp.probes import concept_split
from interp.prompts import format_prompts


@pytest.fixture(scope="module")
def pair(organism_zoo):
    return organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")


def _pairwise_auroc(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Slow and plain: the share of (harmful, harmless) pairs ranked right, ties counting half."""
    pos, neg = scores[y == 1].tolist(), scores[y == 0].tolist()
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_probe_transfer_against_hidden_states_and_pairwise_auroc(organism_zoo, pair):
    """Oracle: each model's transformers hidden states at the last prompt token, one unpadded prompt at a time;
    a difference-in-means probe fitted by hand on the train concepts; AUROC by counting pairs."""
    prompts = organisms.prompt_set(["harmful_train", "harmless_train", "harmful_held_out", "harmless_held_out"])
    split = concept_split(prompts, test_fraction=0.0)
    ours = methods.probe_transfer({"base": pair.base, "aligned": pair.aligned}, prompts, split=split)
    train, test = split
    y = torch.tensor([label == "harmful" for label in prompts.labels]).long()
    hidden = {}
    for name, path in (("base", organism_zoo / "base"), ("aligned", organism_zoo / "sft")):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        rows = []
        for text in format_prompts(tokenizer, prompts.prompts, "chat"):
            with torch.no_grad():
                states = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False),
                               output_hidden_states=True).hidden_states
            rows.append(torch.stack([h[0, -1] for h in states[1:-1]]))  # after blocks 0..n-2 (the last is normed)
        hidden[name] = torch.stack(rows)  # [n, layer, d]
    n_checked = hidden["base"].shape[1]
    for fitted in ("base", "aligned"):
        x = hidden[fitted][train]
        pos, neg = x[y[train] == 1].mean(0), x[y[train] == 0].mean(0)
        weight, bias = pos - neg, -((pos - neg) * (pos + neg) / 2).sum(-1)
        for tested in ("base", "aligned"):
            scores = hidden[tested][test] @ weight.T  # [n, layer, layer]: keep the diagonal
            scores = scores.diagonal(dim1=1, dim2=2) + bias
            expected = [_pairwise_auroc(scores[:, layer], y[test]) for layer in range(n_checked)]
            assert ours.auroc[fitted, tested][:n_checked].tolist() == pytest.approx(expected, abs=0.01), fitted
    assert ours.matrix(layer=2).loc["base", "aligned"] == pytest.approx(ours.auroc["base", "aligned"][2].item())
    assert set(ours.test_groups) == {p.concept for p in organisms.prompts("harmful_held_out")} | {
        p.concept for p in organisms.prompts("harmless_held_out")}


def test_models_with_another_tokenizer_are_refused(pair):
    from types import SimpleNamespace

    from transformers import AutoTokenizer as Tokenizer

    from interp.models import IncompatiblePairError

    tokenizer = Tokenizer.from_pretrained(pair.base.cfg.model_name)
    tokenizer.add_tokens(["zebra"])
    other = SimpleNamespace(cfg=pair.base.cfg, tokenizer=tokenizer)  # checked before any forward
    with pytest.raises(IncompatiblePairError, match=f"tokenizer vocabulary: base has {len(tokenizer) - 1} tokens"):
        methods.resid_post({"base": pair.base, "other": other}, ["how do i bake ?"])


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
