"""Refusal directions: candidates equal per-prompt means, orthogonalized weights equal the ablation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from interp import directions as dirs
from interp import load_model, matmul, weight_edit
from interp.interventions import apply
from interp.organisms import prompts

HARMFUL = [p.text for p in prompts("harmful_train")][:24]
HARMLESS = [p.text for p in prompts("harmless_train")][:24]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, make_checkpoint):
    path = make_checkpoint(request.param, seed=7, n_layers=3)
    return load_model(path, device="cpu")


def test_post_instruction_positions(model):
    assert dirs.post_instruction_positions(model.tokenizer, "chat") == [-1]  # " <|assistant|>"
    assert dirs.post_instruction_positions(model.tokenizer, "raw") == [-1]


def test_candidates_equal_per_prompt_means(model):
    candidates = dirs.candidate_directions(model, HARMFUL[:8], HARMLESS[:8], positions=[-2, -1])
    assert candidates.shape == (2, model.cfg.n_layers, model.cfg.d_model)

    def mean_at(texts, layer, pos):
        rows = []
        for text in texts:
            ids = model.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                      tokenize=False)
            with torch.no_grad():
                _, cache = model.run_with_cache(model.tokenizer(ids, return_tensors="pt",
                                                                add_special_tokens=False).input_ids)
            rows.append(cache[f"blocks.{layer}.hook_resid_pre"][0, pos])
        return torch.stack(rows).mean(0)

    for layer in range(model.cfg.n_layers):
        expected = mean_at(HARMFUL[:8], layer, -2) - mean_at(HARMLESS[:8], layer, -2)
        assert torch.allclose(candidates[0, layer], expected, atol=1e-4)


@pytest.fixture(scope="module")
def found(model):
    return dirs.find_refusal_direction(model, HARMFUL, HARMLESS, refusal_tokens=["sorry"], positions=[-2, -1],
                                       progress=False, exhaustive=True)


@pytest.mark.parametrize("margin", [0.0, 1.0, float("inf")])
def test_the_ranked_search_scores_in_rank_order_until_the_rest_cannot_win(model, found, margin):
    ranked = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, refusal_tokens=["sorry"], positions=[-2, -1],
                                         progress=False, margin=margin, max_scored=100).scores
    eligible = ranked[ranked.informative & (ranked.layer < 0.8 * model.cfg.n_layers)].sort_values("rank")
    scored = eligible.bypass_score.notna().tolist()
    assert scored[0] and scored == sorted(scored, reverse=True)  # a prefix of the rank order
    assert eligible.bypass_estimate.is_monotonic_increasing
    exact = found.scores.set_index(["position", "layer"])
    for row in eligible[eligible.bypass_score.notna()].itertuples():  # the exact scores are the exhaustive ones
        assert abs(row.bypass_score - exact.loc[(row.position, row.layer)].bypass_score) < 1e-5
    passing = eligible[eligible.passed]
    if len(passing) and not all(scored):
        first_left_out = eligible[eligible.bypass_score.isna()].iloc[0]
        assert first_left_out.bypass_estimate > passing.bypass_score.min() + margin
        assert first_left_out.why.startswith("not scored: ranked")
    if margin == float("inf"):
        assert all(scored)
    capped = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, refusal_tokens=["sorry"], positions=[-2, -1],
                                         progress=False, margin=margin, max_scored=1).scores
    assert capped.bypass_score.notna().sum() == 1 and capped.loc[capped["rank"] == 1].bypass_score.notna().all()


def test_search_scores_every_candidate_and_keeps_the_rules(model, found):
    table = found.scores
    n_layers = model.cfg.n_layers
    assert len(table) == 2 * n_layers
    too_deep = table.layer >= 0.8 * n_layers
    assert table[too_deep].bypass_score.isna().all() and not table[too_deep].passed.any()
    assert (table.passed == ((table.induce_score > 0) & (table.kl < 0.1) & ~too_deep)).all()
    assert (table.why == "").equals(table.passed)  # every failing candidate says which filter it fails
    if table.passed.any():
        best = table[table.passed].sort_values("bypass_score").iloc[0]
        assert (found.layer, found.position) == (best.layer, best.position)
        assert found.selected.equals(best)
    elif (table.induce_score > 0).any():
        assert found.selected.induce_score > 0  # the fallback prefers candidates that induce
    assert found.passed_filters == bool(table.passed.any())
    assert torch.allclose(found.direction.norm(), torch.tensor(1.0))


def test_orthogonalized_checkpoint_behaves_like_the_ablation(model, found, tmp_path):
    out = weight_edit.orthogonalize(model, found, tmp_path / "ortho")
    card = json.loads((out / "orthogonalization.json").read_text())
    assert card["layer"] == found.layer and card["max_logit_difference_vs_ablation"] < 1e-4
    edited = load_model(out, device="cpu")
    tokens = model.tokenizer(HARMFUL[:4], return_tensors="pt", padding=True).input_ids
    with torch.no_grad(), apply(model, found.ablation()):
        expected = model(tokens)
    with torch.no_grad():
        got = edited(tokens)
        unchanged = model(tokens)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, unchanged, atol=1e-3)  # the edit did something
    # No residual-stream writer can write the direction any more.
    with torch.no_grad():
        _, cache = edited.run_with_cache(tokens)
    r = found.direction
    for layer in range(model.cfg.n_layers):
        for hook in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out"):
            assert (cache[f"blocks.{layer}.{hook}"] @ r).abs().max() < 1e-4


def test_effects_and_cosines(model, found):
    effects = dirs.refusal_effects(model, found, HARMFUL[:8], HARMLESS[:8], ["sorry"])
    assert set(effects) == {"none", "ablate", "add"} and set(effects["none"]) == {"harmful", "harmless"}
    assert all(0 <= v <= 1 for rates in effects.values() for v in rates.values())
    c = dirs.candidate_directions(model, HARMFUL[:8], HARMLESS[:8], positions=[-1])
    cos = dirs.candidate_cosines(c, 2 * c)
    nonzero = c.norm(dim=-1) > 0
    assert torch.allclose(cos[nonzero], torch.ones(int(nonzero.sum())), atol=1e-5)
    site = dirs.direction_at(model, HARMFUL[:8], HARMLESS[:8], layer=1, position=-1)
    assert torch.allclose(site.vector, c[0, 1], atol=1e-5)


def test_bad_input_fails_before_any_work(model, found, tmp_path):
    with pytest.raises(ValueError, match="at least 8 harmful"):
        dirs.find_refusal_direction(model, HARMFUL[:5], HARMLESS, refusal_tokens=["sorry"])
    with pytest.raises(ValueError, match="refusal_tokens is empty"):
        dirs.find_refusal_direction(model, HARMFUL, HARMLESS, refusal_tokens=[])
    with pytest.raises(ValueError, match="shape"):
        weight_edit.orthogonalize(model, torch.ones(model.cfg.d_model + 1), tmp_path / "bad")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        weight_edit.orthogonalize(model, found, tmp_path / "exists")
    with pytest.raises(ValueError, match="out of range"):
        dirs.direction_at(model, HARMFUL, HARMLESS, layer=99, position=-1)
    assert not (tmp_path / "bad").exists()


# --- on the organisms: the issue's targets, for both aligned organisms ---------------------------------

@pytest.fixture(scope="module")
def organism_directions(organism_zoo):
    from interp import organisms

    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    out = {}
    for variant in ("sft", "dpo"):
        pair = organisms.load_pair(variant, zoo_dir=organism_zoo, device="cpu")
        found = dirs.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=["sorry"], progress=False)
        out[variant] = (pair, found, dirs.refusal_effects(pair.aligned, found, harmful, harmless, ["sorry"]))
    return out, harmful, harmless


@pytest.mark.parametrize("zoo", ["default", "other seed"])
def test_the_ranked_search_selects_what_the_exhaustive_one_does(organism_zoo, organism_zoo_other_seed, zoo):
    """On every organism of two builds: the default search (few candidates scored exactly) picks the exhaustive
    search's candidate."""
    from interp import organisms

    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    for variant in ("sft", "dpo"):
        model = organisms.load_pair(variant, zoo_dir=organism_zoo if zoo == "default" else organism_zoo_other_seed,
                                    device="cpu").aligned
        ranked, exhaustive = (dirs.find_refusal_direction(model, harmful, harmless, refusal_tokens=["sorry"],
                                                          progress=False, exhaustive=e) for e in (False, True))
        assert (ranked.layer, ranked.position) == (exhaustive.layer, exhaustive.position), variant
        assert ranked.scores.bypass_score.notna().sum() < exhaustive.scores.bypass_score.notna().sum()


@pytest.mark.parametrize("variant", ["sft", "dpo"])
def test_selected_direction_meets_the_issue_targets(organism_directions, variant):
    pair, found, effects = organism_directions[0][variant]
    selected = found.selected
    assert found.passed_filters and selected.kl < 0.1 and found.layer < 0.8 * pair.cfg.n_layers
    assert effects["none"]["harmful"] >= 0.95 and effects["none"]["harmless"] == 0.0
    assert effects["ablate"]["harmful"] <= 0.10
    assert effects["add"]["harmless"] >= 0.80


@pytest.mark.parametrize("variant", ["sft", "dpo"])
def test_orthogonalized_organism_reproduces_the_ablation(organism_directions, variant, tmp_path):
    results, harmful, harmless = organism_directions
    pair, found, effects = results[variant]
    path = weight_edit.orthogonalize(pair.aligned, found, tmp_path / f"{variant}-ortho")
    edited = load_model(path, device="cpu")
    rates = dirs.refusal_effects(edited, found, harmful, harmless, ["sorry"])["none"]
    assert all(abs(rates[k] - effects["ablate"][k]) <= 0.02 for k in rates)


@pytest.mark.parametrize("variant", ["dpo"])
def test_refusal_judged_on_replies_is_hugging_face_generate_judged(organism_directions, organism_zoo, variant,
                                                                   tmp_path):
    """Judged on replies, the rates as they are equal the judge on HF generate's replies of the checkpoint, and the
    ablated rates those of HF generate on the orthogonalized checkpoint (the outside oracle for the ablation)."""
    from interp.metrics import is_refusal
    from interp.organisms.zoo import checkpoint_dir
    from tests.oracles import hf_generate

    results, harmful, harmless = organism_directions
    pair, found, _ = results[variant]
    texts = {"harmful": harmful.prompts[:12], "harmless": harmless.prompts[:12]}
    effects = dirs.refusal_effects(pair.aligned, found, texts["harmful"], texts["harmless"], judge=is_refusal,
                                   max_new_tokens=12)
    assert effects.counts == {"harmful": 12, "harmless": 12}
    assert effects.provenance.params["judge"] == "interp.metrics.is_refusal"
    orthogonalized = weight_edit.orthogonalize(pair.aligned, found, tmp_path / "ortho")
    for intervention, checkpoint in (("none", checkpoint_dir(variant, organism_zoo)), ("ablate", orthogonalized)):
        tok = pair.tokenizer
        for label, prompts_ in texts.items():
            replies = [tok.decode(r, skip_special_tokens=True).strip()
                       for r in hf_generate(checkpoint, prompts_, max_new_tokens=12, do_sample=False)]
            expected = sum(map(is_refusal, replies)) / len(replies)
            assert abs(effects[intervention][label] - expected) <= (0 if intervention == "none" else 1 / 12), (
                intervention, label)
    assert effects.interval("none", "harmful").low <= effects["none"]["harmful"]
    given = {label: [True] + [False] * 11 for label in texts}
    some = dirs.refusal_effects(pair.aligned, found, texts["harmful"], texts["harmless"], judge=is_refusal,
                                max_new_tokens=12, measure={"ablate": ["harmful"]}, as_is=given)
    assert some.rates == {"ablate": {"harmful": effects["ablate"]["harmful"]}, "none": {"harmful": 1 / 12,
                                                                                         "harmless": 1 / 12}}
    with pytest.raises(ValueError, match="measure names"):
        dirs.refusal_effects(pair.aligned, found, texts["harmful"], texts["harmless"], judge=is_refusal,
                             measure={"steer": ["harmful"]})
    with pytest.raises(ValueError, match="not both or neither"):
        dirs.refusal_effects(pair.aligned, found, texts["harmful"], texts["harmless"], ["sorry"], judge=is_refusal)


def _table(rows):
    import pandas as pd

    keys = ("position", "layer", "norm", "informative", "bypass_score", "induce_score", "kl", "passed", "why")
    return pd.DataFrame([dict(zip(keys, r, strict=True)) for r in rows])


def test_selection_prefers_passing_then_bypass_and_induce_then_induce():
    nan = float("nan")
    rows = [
        (-1, 0, 0.0, False, nan, nan, nan, False, "carries no information"),
        (-1, 1, 1.0, True, -9.0, -1.0, 0.01, False, "adding it induces no refusal (score -1.00)"),
        (-1, 2, 1.0, True, 3.0, 2.0, 0.5, False, "ablating it moves harmless answers (KL 0.50 >= 0.1)"),
        (-1, 3, 1.0, True, 1.0, 1.0, 0.9, False, "ablating it moves harmless answers (KL 0.90 >= 0.1)"),
    ]
    table = _table(rows)
    assert dirs.select(table, baseline=2.5).layer == 3  # induces and lowers refusal, though layer 1 bypasses more
    assert dirs.select(table, baseline=0.5).layer == 3  # nothing lowers refusal: lowest bypass among inducers
    assert dirs.select(_table(rows[:2]), baseline=0.5).layer == 1  # nothing induces: lowest bypass of all
    passing = _table(rows + [(-1, 4, 1.0, True, 5.0, 0.5, 0.01, True, "")])
    assert dirs.select(passing, baseline=2.5).layer == 4
    with pytest.raises(ValueError, match="no information"):
        dirs.select(_table(rows[:1]), baseline=0.0)
    found = dirs.RefusalDirection(3, -1, torch.ones(4), scores=table, passed_filters=False)
    text = found.explain()
    assert "no candidate passes" in text and "layer 1, position -1: adding it induces no refusal" in text
    assert "chosen instead: layer 3" in text


def test_a_site_holding_one_token_in_every_prompt_is_never_selectable(model):
    """At layer 0 the stream is the token's embedding (plus GPT-2's position embedding): where every
    prompt has the same token, the difference in means is zero or a length artefact."""
    found = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, refusal_tokens=["sorry"], positions=[-2, -1],
                                        progress=False)
    table = found.scores.set_index(["position", "layer"])
    same_token = table.loc[(-1, 0)]  # -1 is the chat template's <|assistant|> in every prompt
    assert not same_token.informative and pd.isna(same_token.bypass_score)
    assert table.loc[(-2, 0)].informative  # -2 is the request's last word, which varies
    assert (found.layer, found.position) != (0, -1)


def test_a_remembered_search_is_the_search_and_is_read_back_only_for_the_same_weights(
        model, make_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("INTERP_RESULTS_DIR")  # the default place: under the cache
    search = dict(refusal_tokens=["sorry"], positions=[-2, -1], progress=False)
    plain = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, **search)
    first = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, remember=True, **search)
    kept = list((tmp_path / "results" / "refusal-direction").glob("*.pt"))
    assert len(kept) == 1

    def same(a, b):
        assert (a.layer, a.position, a.passed_filters, a.source) == (b.layer, b.position, b.passed_filters, b.source)
        torch.testing.assert_close(a.vector, b.vector, rtol=0, atol=0)
        pd.testing.assert_frame_equal(a.scores, b.scores)

    same(first, plain)

    def not_again(*args, **kwargs):
        raise RuntimeError("searched again")

    monkeypatch.setattr(dirs, "_means", not_again)
    same(dirs.find_refusal_direction(model, HARMFUL, HARMLESS, remember=True, **search), plain)
    assert "refusal-direction read from" in capsys.readouterr().err
    other = load_model(make_checkpoint("llama", seed=8, n_layers=3), device="cpu")  # same shapes, other weights
    for miss in [lambda: dirs.find_refusal_direction(other, HARMFUL, HARMLESS, remember=True, **search),
                 lambda: dirs.find_refusal_direction(model, HARMFUL, HARMLESS[:-1], remember=True, **search),
                 lambda: dirs.find_refusal_direction(model, HARMFUL, HARMLESS, remember=True, kl_threshold=0.2,
                                                     **search)]:
        with pytest.raises(RuntimeError, match="searched again"):
            miss()
    with matmul.using(model, torch.bfloat16), pytest.raises(RuntimeError, match="searched again"):
        dirs.find_refusal_direction(model, HARMFUL, HARMLESS, remember=True, **search)  # other products
    kept[0].write_bytes(b"not a result")  # a damaged file is searched again, not an error
    with pytest.raises(RuntimeError, match="searched again"):
        dirs.find_refusal_direction(model, HARMFUL, HARMLESS, remember=True, **search)


def test_an_architecture_that_norms_block_outputs_is_not_orthogonalized_and_truly_cannot_be(tmp_path):
    """Gemma 3 normalises each attention and MLP output before adding it to the stream: ``orthogonalize`` refuses it
    up front, saying so, and the oracle agrees: Arditi et al.'s edit of every residual writer, done anyway, moves the
    logits far from the hook ablation's (the same edit of the Llama and the tied GPT-2 above matches it)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from interp.organisms.tokenizer import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                              sliding_window=16, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id)
    hf = Gemma3ForCausalLM(config)
    for name, p in hf.named_parameters():
        if name.endswith("norm.weight"):  # random gains, as a trained model's are
            torch.nn.init.normal_(p, std=0.5)
    hf.save_pretrained(tmp_path / "gemma")
    tok.save_pretrained(tmp_path / "gemma")
    model = load_model(tmp_path / "gemma", device="cpu")
    direction = torch.randn(model.cfg.d_model)
    with pytest.raises(weight_edit.NotOrthogonalizable, match="post_feedforward_layernorm"):
        weight_edit.orthogonalize(model, direction, tmp_path / "ortho")
    assert not (tmp_path / "ortho").exists()
    edited = weight_edit.orthogonalized_model(model, direction, check_architecture=False)
    with pytest.raises(RuntimeError, match="do not reproduce the ablation"):
        weight_edit._check_matches_ablation(model, edited, direction, 1e-4)


def test_max_val_holds_back_at_most_that_many_prompts_of_each_class(model):
    """24 prompts a class: a quarter (6) are held back to validate on by default, ``max_val`` of them when fewer."""
    search = dict(refusal_tokens=["sorry"], positions=[-1], progress=False)
    assert dirs.find_refusal_direction(model, HARMFUL, HARMLESS, **search).provenance.params["validation"] == [6, 6]
    capped = dirs.find_refusal_direction(model, HARMFUL, HARMLESS, max_val=4, **search)
    assert capped.provenance.params["validation"] == [4, 4]
    with pytest.raises(ValueError, match="max_val"):
        dirs.find_refusal_direction(model, HARMFUL, HARMLESS, max_val=0, **search)
