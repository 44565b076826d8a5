"""Probes: batched fits equal one-at-a-time fits, AUROC equals its definition, splits keep concepts apart."""

from __future__ import annotations

import pytest
import torch

from interp import intervals, load_pair, organisms
from interp.probes import (
    auroc,
    binary_labels,
    concept_split,
    evaluate_probes,
    fit_probes,
    probe_pair,
    shuffled_accuracy,
)
from interp.prompts import tokenize


def _blobs(n=40, d=6, slots=3, seed=0):
    """Two Gaussian classes per slot, separated along a different axis in each slot."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, slots, d, generator=g)
    for s in range(slots):
        x[:, s, s] += 3.0 * (2 * y - 1)
    return x, y


@pytest.mark.parametrize("method", ["mean_diff", "logistic"])
def test_batched_fit_equals_one_probe_at_a_time(method):
    x, y = _blobs()
    together = fit_probes(x, y, method)
    for s in range(x.shape[1]):
        alone = fit_probes(x[:, s], y, method)
        assert torch.allclose(together.weight[s], alone.weight, atol=1e-3)
        assert torch.allclose(together.bias[s], alone.bias, atol=1e-3)


@pytest.mark.parametrize("method", ["mean_diff", "logistic"])
def test_probes_find_the_separating_axis(method):
    x, y = _blobs()
    probes = fit_probes(x, y, method)
    accuracy, area = evaluate_probes(probes, *_blobs(seed=1))
    assert (accuracy > 0.9).all() and (area > 0.95).all()
    assert all(probes.directions()[s].abs().argmax() == s for s in range(3))


@pytest.mark.parametrize("method", ["mean_diff", "logistic"])
def test_probes_fitted_on_shuffled_labels_read_no_better_than_chance(method):
    """The control: on blobs every probe reads the held-out half; fitted on permuted labels, about half of it."""
    x, y = _blobs(n=400)
    train = torch.arange(400) < 200
    real = evaluate_probes(fit_probes(x[train], y[train], method), x[~train], y[~train])[0]
    control = shuffled_accuracy(x, y, train, ~train, method, draws=64)
    assert (real > 0.9).all() and control.shape == (64, *real.shape) and (control.mean(0) - 0.5).abs().max() < 0.12


def test_a_probe_accuracy_interval_is_wilsons_over_the_held_out_prompts(twin_pair):
    ps = organisms.prompt_set(["harmful_train", "harmful_held_out", "harmless_train", "harmless_held_out"])
    result = probe_pair(twin_pair, ps, method="mean_diff", positions=[-1])
    train, test = concept_split(ps)
    assert result.n_test == int(test.sum()) and set(result.shuffled) == {"base", "aligned"}
    # counted by hand: the probe's scores on the held-out prompts' streams after layer 1, a plain forward each
    y = binary_labels(ps, "harmful")[test]
    texts = [ps.prompts[i] for i in test.nonzero().flatten().tolist()]
    hook = "blocks.1.hook_resid_post"
    streams = torch.stack([twin_pair.aligned.run_with_cache(
        torch.tensor(tokenize(twin_pair.tokenizer, [t], twin_pair.prompt_format)), names_filter=hook)[1][hook][0, -1]
        for t in texts])
    probe = result.probes["aligned"]
    right = int((((streams @ probe.weight[1, 0] + probe.bias[1, 0]) > 0).long() == y).sum())
    assert result.accuracy_interval("aligned", "aligned", 1) == intervals.rate(right, len(texts))


def test_logistic_solution_is_stationary():
    """The L2-regularised logistic loss has zero gradient at the returned (standardised) solution."""
    x, y = _blobs(slots=1)
    x = x[:, 0]
    probes = fit_probes(x, y, "logistic", l2=0.1)
    mu, sigma = x.mean(0), x.std(0)
    w = (probes.weight * sigma).clone().requires_grad_(True)
    b = (probes.bias + (probes.weight * mu).sum()).clone().requires_grad_(True)
    z = (x - mu) / sigma
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y.float()) + 0.1 * w.square().sum() / 2
    loss.backward()
    assert w.grad.abs().max() < 1e-3 and b.grad.abs() < 1e-3


def test_auroc_equals_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randint(0, 5, (30,), generator=g).float(), torch.arange(30) % 2
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
    assert auroc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))


def test_concept_split_keeps_concepts_apart_and_held_out_in_test():
    ps = organisms.prompt_set(["harmful_train", "harmful_held_out", "harmless_train", "harmless_held_out"])
    train, test = concept_split(ps, seed=3)
    concepts = ps.column("concept")
    train_concepts = {concepts[i] for i in train.nonzero().flatten().tolist()}
    test_concepts = {concepts[i] for i in test.nonzero().flatten().tolist()}
    assert not train_concepts & test_concepts
    held = {c for c, h in zip(concepts, ps.column("held_out"), strict=True) if h}
    assert held <= test_concepts and held.isdisjoint(train_concepts)
    assert test_concepts - held  # some train-split concepts are tested too
    assert torch.equal(concept_split(ps, seed=3)[0], train)  # deterministic


def test_bad_labels_fail_clearly():
    ps = organisms.prompt_set("harmful_train")
    with pytest.raises(ValueError, match="exactly two labels"):
        binary_labels(ps, "harmful")
    x, y = _blobs(n=10)
    with pytest.raises(ValueError, match="at least 8"):
        fit_probes(x, y)
    with pytest.raises(ValueError, match="unknown probe method"):
        fit_probes(*_blobs(), "svm")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def twin_pair(request, make_checkpoint):
    path = make_checkpoint(request.param, seed=2)
    return load_pair(path, path, device="cpu", allow_identical=True)


def test_probe_pair_on_identical_models(twin_pair):
    ps = organisms.prompt_set(["harmful_train", "harmful_held_out", "harmless_train", "harmless_held_out"])
    result = probe_pair(twin_pair, ps, method="mean_diff", positions=[-2, -1])
    n_layers = twin_pair.cfg.n_layers
    assert result.accuracy["base", "base"].shape == (n_layers, 2)
    assert torch.allclose(result.accuracy["base", "aligned"], result.accuracy["base", "base"])
    assert torch.allclose(result.cosine(), torch.ones(n_layers, 2), atol=1e-5)
    assert set(result.test_groups) >= {"strangle", "knit"} and "strangle" not in result.train_groups
    table = result.table()
    assert len(table) == 4 * n_layers * 2 and set(table.columns) >= {"train_model", "test_model", "accuracy", "auroc"}


def test_a_family_probes_every_stage_and_method_like_one_pair_at_a_time(make_checkpoint):
    from interp.models import load_family
    from interp.probes import probe_family

    base = make_checkpoint("llama", seed=0)
    family = load_family(base, {"sft": make_checkpoint("llama", seed=1), "dpo": make_checkpoint("llama", seed=2)},
                         device="cpu")
    ps = organisms.prompt_set(["harmful_train", "harmful_held_out", "harmless_train", "harmless_held_out"])
    together = probe_family(family, ps, positions=[-2, -1])
    assert set(together) == {(s, m) for s in family for m in ("mean_diff", "logistic")}
    for (stage, method), result in together.items():
        alone = probe_pair(family[stage], ps, method=method, positions=[-2, -1])
        for key in alone.auroc:
            torch.testing.assert_close(result.auroc[key], alone.auroc[key])
            torch.testing.assert_close(result.accuracy[key], alone.accuracy[key])
        torch.testing.assert_close(result.cosine(), alone.cosine(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown probe method"):
        probe_family(family, ps, methods=("svm",))
