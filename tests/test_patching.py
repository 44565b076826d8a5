"""Batched patching equals TransformerLens's one-pass-per-cell patching; attribution equals its linear limit."""

from __future__ import annotations

from weakref import WeakKeyDictionary

import pytest
import torch
import transformer_lens.patching as tl_patching
from transformer_lens.tools.analysis.attribution_patching import attribution_patch

from interp import flops, load_model, load_pair
from interp import patching as ours
from interp.patching import engine
from interp.patching.engine import Runner

EVERY = ("block_every", "attn_head_all_pos_every", "attn_head_by_pos_every")
ATOL = 1e-4


@pytest.fixture(scope="module", params=["llama", "llama-gqa", "gpt2"])
def model(request, make_checkpoint):
    arch, _, gqa = request.param.partition("-")
    path = make_checkpoint(arch, seed=3, n_layers=2, **({"n_kv_heads": 2} if gqa else {}))
    return load_model(path, device="cpu")


@pytest.fixture(scope="module")
def tokens():
    generator = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randint(5, 100, (2, 3, 5), generator=generator)
    return clean, corrupted


@pytest.fixture(scope="module")
def clean_cache(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(tokens[0])[1]


def logit_diff(logits):
    """A scalar metric, as TransformerLens's examples use."""
    return (logits[:, -1, 7] - logits[:, -1, 9]).mean()


def per_prompt(logits):
    return logits[:, -1].log_softmax(-1)[:, 7]


def every_position(logits):
    """A metric that reads every position, so the passes must return whole logits."""
    return logits.log_softmax(-1)[..., 7].mean()


@pytest.fixture(params=["merged", "fine"])
def passes(request, monkeypatch):
    """``merged``: the cost model of this machine (tiny models: few big passes from layer 0); ``fine``: no
    overhead, so every (layer, position) gets its own pass, recomputing only what its patches change."""
    if request.param == "fine":
        monkeypatch.setattr(flops, "CALL_SECONDS", {"cpu": 0.0, "cuda": 0.0})
    return request.param


@pytest.mark.parametrize("kind", [*ours.SITES, *EVERY])
def test_every_sweep_equals_transformer_lens(model, tokens, clean_cache, kind, passes):
    name = f"get_act_patch_{kind}"
    expected = getattr(tl_patching, name)(model, tokens[1], clean_cache, logit_diff)
    got = getattr(ours, name)(model, tokens[1], clean_cache, logit_diff, progress=False)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=ATOL)
    assert expected.std() > 0  # the patches do something, so equality means something


@pytest.mark.parametrize("kind", ["resid_pre", "attn_head_out_by_pos", "attn_head_pattern_by_pos",
                                  "attn_head_pattern_dest_src_pos"])
def test_a_sweep_of_the_last_positions_is_those_columns_of_transformer_lens(model, tokens, clean_cache, kind, passes):
    """Only the last positions swept (a real chat's prompts share only the tokens after the request): the columns
    of TransformerLens's whole sweep at those (query) positions, with and without a per-prompt metric."""
    expected = getattr(tl_patching, f"get_act_patch_{kind}")(model, tokens[1], clean_cache, logit_diff)
    pos = ours.SITES[kind].pos_axis + 1
    for last in (1, 3):
        got = ours.get_act_patch(kind, model, tokens[1], clean_cache, logit_diff, last_positions=last, progress=False)
        assert torch.allclose(got, expected.narrow(pos, tokens[1].shape[1] - last, last), atol=ATOL)
    per = ours.get_act_patch(kind, model, tokens[1], clean_cache, per_prompt, reduce="none", last_positions=2,
                             progress=False)
    assert per.values.shape[pos] == 2 and per.values.shape[-1] == tokens[1].shape[0]


@pytest.mark.parametrize("kind", ["resid_pre", "attn_head_k_by_pos", "attn_head_pattern_dest_src_pos"])
def test_a_metric_reading_every_position_equals_transformer_lens(model, tokens, clean_cache, kind, passes):
    assert not engine.reads_last_only({"m": every_position}, model(tokens[1]))
    name = f"get_act_patch_{kind}"
    expected = getattr(tl_patching, name)(model, tokens[1], clean_cache, every_position)
    got = getattr(ours, name)(model, tokens[1], clean_cache, every_position, progress=False)
    assert torch.allclose(got, expected, atol=ATOL) and expected.std() > 0


def test_a_metric_blind_to_nan_is_not_taken_for_one_reading_the_last_position_only(model, tokens, clean_cache):
    """A comparison at an earlier position is False for NaN: the random-logits probe still catches it."""
    def earlier(logits):
        return (logits[:, -2, 7] > logits[:, -2, 9]).float().mean()

    logits = model(tokens[1])
    assert not engine.reads_last_only({"m": earlier}, logits)
    assert engine.reads_last_only({"m": logit_diff}, logits)
    expected = tl_patching.get_act_patch_resid_pre(model, tokens[1], clean_cache, earlier)
    assert torch.allclose(ours.get_act_patch_resid_pre(model, tokens[1], clean_cache, earlier, progress=False),
                          expected)
    whole = ours.get_act_patch_resid_pre(model, tokens[1], clean_cache, logit_diff, progress=False, last_only=False)
    assert torch.allclose(whole, tl_patching.get_act_patch_resid_pre(model, tokens[1], clean_cache, logit_diff),
                          atol=ATOL)


def test_a_sweep_under_the_callers_hooks_leaves_later_sweeps_their_shortcuts(make_checkpoint, tokens, monkeypatch):
    """Hooks that need whole positions turn the shortcuts off for that sweep only."""
    monkeypatch.setattr(engine, "_VERIFIED", WeakKeyDictionary())
    model = load_model(make_checkpoint("llama", seed=4, n_layers=2), device="cpu")
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[0])
    n_pos = tokens[1].shape[1]

    def whole_positions(x, hook):
        assert x.shape[1] == n_pos, "this hook needs every position"
        return x

    with model.hooks(fwd_hooks=[("ln_final.hook_scale", whole_positions)]):
        hooked = ours.get_act_patch_resid_pre(model, tokens[1], cache, logit_diff, progress=False)
    assert Runner(model, tokens[1]).suffixes  # not remembered as failing
    unhooked = ours.get_act_patch_resid_pre(model, tokens[1], cache, logit_diff, progress=False)
    assert torch.allclose(hooked, unhooked, atol=ATOL)


def test_fine_passes_start_where_their_patches_do(model, tokens, clean_cache, monkeypatch):
    """With no overhead in the cost model, a pass per position, from that position on, each copy joining at its
    own layer."""
    monkeypatch.setattr(flops, "CALL_SECONDS", {"cpu": 0.0, "cuda": 0.0})
    runs = []
    run = Runner.run
    monkeypatch.setattr(Runner, "run", lambda self, joins, hooks, start=0, last_only=False: (
        runs.append((start, list(joins), last_only)) or run(self, joins, hooks, start, last_only)))
    ours.get_act_patch_attn_head_out_by_pos(model, tokens[1], clean_cache, logit_diff, progress=False)
    n_pos, n_heads = tokens[1].shape[1], model.cfg.n_heads
    joins = [layer for layer in range(model.cfg.n_layers) for _ in range(n_heads)]
    assert sorted(runs) == [(pos, joins, True) for pos in range(n_pos)]


@pytest.mark.parametrize("kind", ["resid_pre", "attn_head_out_by_pos", "attn_head_pattern_all_pos"])
def test_per_prompt_results_equal_transformer_lens(model, tokens, clean_cache, kind):
    name = f"get_act_patch_{kind}"
    metrics = {"logprob": per_prompt, "logit": lambda logits: logits[:, -1, 9]}
    expected = getattr(tl_patching, name)(model, tokens[1], clean_cache, metrics, reduce="none", baseline=True)
    got = getattr(ours, name)(model, tokens[1], clean_cache, metrics, reduce="none", baseline=True, progress=False)
    assert got.axis_names == expected.axis_names and got.metric_names == expected.metric_names
    assert torch.allclose(got.values, expected.values, atol=ATOL)
    assert torch.allclose(got.baseline, expected.baseline, atol=ATOL)
    assert got.index_df.equals(expected.index_df)
    mean = getattr(ours, name)(model, tokens[1], clean_cache, per_prompt, reduce="mean", progress=False)
    assert torch.allclose(mean, expected["logprob"].values.mean(-1), atol=ATOL)


def test_every_with_baseline_stacks_like_transformer_lens(model, tokens, clean_cache):
    expected = tl_patching.get_act_patch_block_every(model, tokens[1], clean_cache, per_prompt, reduce="mean",
                                                     baseline=True)
    got = ours.get_act_patch_block_every(model, tokens[1], clean_cache, per_prompt, reduce="mean", baseline=True,
                                         progress=False)
    assert got.axis_names == expected.axis_names and got.patch_type_names == expected.patch_type_names
    assert torch.allclose(got.values, expected.values, atol=ATOL)
    assert torch.allclose(got.baseline, expected.baseline, atol=ATOL)


def test_chunking_and_the_fallbacks_give_the_same_numbers(model, tokens, clean_cache, monkeypatch):
    sweep = ours.get_act_patch_attn_head_out_by_pos
    reference = sweep(model, tokens[1], clean_cache, logit_diff, progress=False)
    runner = Runner(model, tokens[1])
    assert runner.replays and runner.suffixes  # both architectures can start mid-model and mid-sequence
    one_cell = sweep(model, tokens[1], clean_cache, logit_diff, max_batch=3, progress=False)  # replayed passes
    assert torch.allclose(one_cell, reference, atol=ATOL)
    for kind in ("position", "layer"):  # no mid-sequence start, then no mid-model start either
        monkeypatch.setattr(engine, "_VERIFIED", WeakKeyDictionary())
        monkeypatch.setattr(Runner, "_matches",
                            lambda self, layer, start, kind=kind: (start == 0) == (kind == "position"))
        runner = Runner(model, tokens[1])
        assert not runner.suffixes and runner.replays == (kind == "position")
        fallback = sweep(model, tokens[1], clean_cache, logit_diff, max_batch=3, progress=False)
        assert torch.allclose(fallback, reference, atol=ATOL)


def _costs(overhead: float) -> engine.Costs:
    return engine.Costs(n_layers=3, n_pos=5, batch=2, overhead=overhead, unembed=1.0, last_only=True)


def test_plan_covers_every_cell_once_in_bounded_passes():
    items = [(layer, pos, (layer, pos, head)) for layer in range(3) for pos in range(5) for head in range(2)]
    for overhead, per_pass in ((0.0, 4), (1e6, 4), (1e6, 100), (3.0, 7)):
        passes = engine.plan(items, per_pass, _costs(overhead))
        assert sorted(item for group in passes for item in group) == sorted(items)
        assert all(0 < len(group) <= per_pass for group in passes)
        assert all([i[0] for i in group] == sorted(i[0] for i in group) for group in passes)  # joins ascend
    assert len(engine.plan(items, 100, _costs(1e6))) == 1  # overhead dominates: one pass
    fine = engine.plan(items, 100, _costs(0.0))  # arithmetic only: a pass per position, every layer in it
    assert sorted((g[0][1], len(g)) for g in fine) == [(pos, 6) for pos in range(5)]
    assert all(len({item[1] for item in group}) == 1 for group in fine)


def test_the_cost_model_counts_what_a_pass_computes():
    costs = _costs(overhead=10.0)  # 3 layers, 5 positions, batch 2, unembed 1, last position only
    # two copies from position 1: one joins at layer 0 (3 blocks), one at layer 2 (1 block)
    assert costs.of(first_layer=0, start=1, copies=2, block_tokens=4) == 4 * 10.0 + 4 * 2 * 4 + 1.0 * 2 * 2
    assert list(engine._chunked([2, 0, 3], per_pass=2)) == [(0, 2, 6), (2, 2, 2), (2, 1, 1)]


@pytest.mark.parametrize("kind", ["resid_pre", "mlp_out", "attn_head_out_by_pos", "attn_head_v_all_pos"])
def test_patching_clean_into_clean_changes_nothing(model, tokens, clean_cache, kind):
    result = getattr(ours, f"get_act_patch_{kind}")(model, tokens[0], clean_cache, per_prompt, reduce="none",
                                                    baseline=True, progress=False)
    assert torch.allclose(result.effect(), torch.zeros(()), atol=1e-5)


def test_cross_model_patching_equals_transformer_lens_with_the_other_models_cache(make_checkpoint, tokens):
    path_a, path_b = make_checkpoint("llama", seed=3, n_layers=2), make_checkpoint("llama", seed=4, n_layers=2)
    pair = load_pair(path_a, path_b, device="cpu")
    with torch.no_grad():
        _, aligned_cache = pair.aligned.run_with_cache(tokens[1])
    for kind in ("resid_pre", "attn_head_out_all_pos"):
        expected = getattr(tl_patching, f"get_act_patch_{kind}")(pair.base, tokens[1], aligned_cache, logit_diff)
        got = ours.patch_across(pair.aligned, pair.base, tokens[1], logit_diff, kind, progress=False)
        assert torch.allclose(got, expected, atol=ATOL)
    # a model patched with itself is unchanged
    same = ours.patch_across(pair.base, pair.base, tokens[1], per_prompt, "resid_pre", reduce="none", baseline=True,
                             progress=False)
    assert torch.allclose(same.effect(), torch.zeros(()), atol=1e-5)


def test_cross_model_patching_refuses_different_shapes(make_checkpoint, tokens):
    narrow = load_model(make_checkpoint("llama", n_layers=2), device="cpu")
    wide_path = make_checkpoint("llama", n_layers=2, d_model=48)
    wide = load_model(wide_path, device="cpu")
    with pytest.raises(ValueError, match="d_model is 48 in the source and 32 in the target"):
        ours.patch_across(wide, narrow, tokens[1], logit_diff, progress=False)


def test_attribution_is_exact_for_a_metric_linear_in_the_last_mlp(model, tokens, clean_cache):
    """With the final norm's scale frozen, logits are affine in the last MLP's output: first order is exact."""
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(tokens[1])
    scale = corrupted_cache["ln_final.hook_scale"]

    def frozen(x, hook):
        return scale.repeat(x.shape[0] // scale.shape[0], *([1] * (x.ndim - 1)))

    with model.hooks(fwd_hooks=[("ln_final.hook_scale", frozen)]):
        estimate = ours.attribute(model, tokens[1], clean_cache, per_prompt_logit, ["mlp_out"], reduce="none")
        exact = ours.get_act_patch_mlp_out(model, tokens[1], clean_cache, per_prompt_logit, reduce="none",
                                           progress=False)
    last = model.cfg.n_layers - 1
    assert torch.allclose(estimate["mlp_out"][last], exact.values[last], atol=1e-5)
    assert not torch.allclose(estimate["mlp_out"][last], estimate.baseline, atol=1e-3)  # the patch matters


def per_prompt_logit(logits):
    return logits[:, -1, 7] - logits[:, -1, 9]


def test_attribution_equals_transformer_lens_node_scores(model, tokens, clean_cache):
    estimate = ours.attribute(model, tokens[1], clean_cache, per_prompt_logit,
                              ["attn_head_out_by_pos", "mlp_out"], reduce="mean")
    nodes = attribution_patch(model, tokens[0], tokens[1], lambda logits: per_prompt_logit(logits)[0]).node_scores
    for node, score in nodes.items():
        if node.kind == "attn_head_out":
            ours_score = estimate.effect("attn_head_out_by_pos")[node.layer, node.position, node.head]
        elif node.kind == "mlp_out":
            ours_score = estimate.effect("mlp_out")[node.layer, node.position]
        else:
            continue
        assert ours_score.item() == pytest.approx(score, abs=1e-5)


def test_attribution_layouts_and_reductions_agree(model, tokens, clean_cache):
    none = ours.attribute(model, tokens[1], clean_cache, per_prompt_logit, reduce="none")
    mean = ours.attribute(model, tokens[1], clean_cache, per_prompt_logit, reduce="mean")
    scalar = ours.attribute(model, tokens[1], clean_cache, lambda logits: per_prompt_logit(logits).sum())
    for kind in ("resid_pre", "attn_head_out_by_pos"):
        exact = getattr(ours, f"get_act_patch_{kind}")(model, tokens[1], clean_cache, per_prompt_logit,
                                                       reduce="mean", progress=False)
        assert mean[kind].shape == exact.shape
        assert torch.allclose(mean[kind], none[kind].mean(-1), atol=1e-5)
        assert torch.allclose(scalar.effect(kind), none.effect(kind).sum(-1), atol=1e-4)
    by_pos = none.effect("attn_head_out_by_pos")
    assert torch.allclose(none.effect("attn_head_out_all_pos"), by_pos.sum(1), atol=1e-5)  # linear: sums


def test_attribution_of_clean_onto_clean_is_zero(model, tokens, clean_cache):
    estimate = ours.attribute(model, tokens[0], clean_cache, per_prompt_logit, reduce="none")
    for kind in estimate.values:
        assert torch.allclose(estimate.effect(kind), torch.zeros(()), atol=1e-6)


# --- bad input: clear errors before the sweep -------------------------------------------------------------


def counting(metric):
    calls = []

    def counted(logits):
        calls.append(1)
        return metric(logits)

    return counted, calls


def test_bad_input_is_refused_before_the_sweep(model, tokens, clean_cache):
    with pytest.raises(ValueError, match="integer tensor"):
        ours.get_act_patch_resid_pre(model, tokens[1].float(), clean_cache, logit_diff)
    longer = torch.randint(5, 100, (3, 6))
    with pytest.raises(ValueError, match="same number of prompts and of tokens"):
        ours.get_act_patch_resid_pre(model, longer, clean_cache, logit_diff, progress=False)
    partial = {k: v for k, v in clean_cache.items() if k != "blocks.1.hook_mlp_out"}
    with pytest.raises(ValueError, match="no 'blocks.1.hook_mlp_out'"):
        ours.get_act_patch_mlp_out(model, tokens[1], partial, logit_diff, progress=False)
    metric, calls = counting(per_prompt)
    with pytest.raises(ValueError, match="must return a scalar"):
        ours.get_act_patch_attn_head_out_by_pos(model, tokens[1], clean_cache, metric, progress=False)
    assert len(calls) == 1  # checked on the unpatched run, before any patched pass
    with pytest.raises(ValueError, match=r"one value per prompt, shape \[3\]"):
        ours.get_act_patch_resid_pre(model, tokens[1], clean_cache, logit_diff, reduce="mean", progress=False)
    with pytest.raises(ValueError, match="reduce must be one of"):
        ours.get_act_patch_resid_pre(model, tokens[1], clean_cache, logit_diff, reduce="sum")
    with pytest.raises(ValueError, match="last_positions must be an int from 1 to the prompts' 5 tokens, got 6"):
        ours.get_act_patch_resid_pre(model, tokens[1], clean_cache, logit_diff, last_positions=6)
    with pytest.raises(ValueError, match="last_positions needs a sweep by position"):
        ours.get_act_patch_attn_head_out_all_pos(model, tokens[1], clean_cache, logit_diff, last_positions=2)
    with pytest.raises(ValueError, match="one metric"):
        ours.attribute(model, tokens[1], clean_cache, {"a": logit_diff, "b": logit_diff})
    with pytest.raises(ValueError, match="unknown sweep"):
        ours.attribute(model, tokens[1], clean_cache, logit_diff, ["resid_post"])


def test_prompt_tokens_need_one_length(model):
    with pytest.raises(ValueError, match="different lengths"):
        ours.prompt_tokens(model, ["how do i bake ?", "tell me how to bake ."])
    assert ours.prompt_tokens(model, ["how do i bake ?", "how do i knit ?"]).shape[0] == 2
    clean, corrupted = ours.equal_length_pairs(model, ["how do i bake ?", "tell me how to bake .", "hi"],
                                               ["how do i knit ?", "tell me how to knit .", "tell me more ."])
    assert clean.shape == corrupted.shape and clean.shape[0] == 1
    with pytest.raises(ValueError, match="paired in order"):
        ours.equal_length_pairs(model, ["a"], ["a", "b"])


def test_length_matched_pairs_pair_by_length_at_the_length_pairing_most(model):
    clean = ["how do i bake ?", "tell me how to bake .", "how do i rob ?", "hi", "tell me how to rob ."]
    corrupted = ["tell me more about it .", "how do i knit ?", "tell me how to knit .", "tell me how to sew ."]
    # five words pair once, six words twice (clean 1 and 4 with corrupted 0 and 2, in order), one word never
    a, b = ours.length_matched_pairs(model, clean, corrupted)
    assert torch.equal(a, ours.prompt_tokens(model, [clean[1], clean[4]]))
    assert torch.equal(b, ours.prompt_tokens(model, [corrupted[0], corrupted[2]]))
    a, b = ours.length_matched_pairs(model, clean, corrupted, limit=1)
    assert torch.equal(a, ours.prompt_tokens(model, clean[1:2])) and b.shape == a.shape
    # a tie goes to the shorter length
    a, _ = ours.length_matched_pairs(model, clean[:2], corrupted[:2])
    assert torch.equal(a, ours.prompt_tokens(model, clean[:1]))
    with pytest.raises(ValueError, match="nothing to pair"):
        ours.length_matched_pairs(model, ["hi"], ["tell me how to knit ."])


def test_common_length_tokens_keeps_the_most_common_length(model):
    prompts = ["how do i bake ?", "how do i knit ?", "how do i sew ?", "tell me how to bake ."]
    tokens = ours.common_length_tokens(model, prompts)
    assert tokens.shape[0] == 3 and torch.equal(tokens, ours.prompt_tokens(model, prompts[:3]))
    assert torch.equal(ours.common_length_tokens(model, prompts, limit=2), tokens[:2])
