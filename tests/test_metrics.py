"""Behaviour metrics on tiny pairs (against direct computations) and on the organisms."""

from __future__ import annotations

import pytest
import torch

from interp import interventions as iv
from interp import load_pair, metrics

PROMPTS = ["how do i bake ?", "tell me how to poison .", "why is it wrong to stab ?"]


@pytest.fixture(scope="module")
def tiny_pair(make_checkpoint):
    return load_pair(make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1), device="cpu")


def test_refusal_score_is_log_odds():
    logits = torch.randn(4, 10)
    p = logits.softmax(-1)[:, [2, 7]].sum(-1)
    torch.testing.assert_close(metrics.refusal_score(logits, [2, 7]), torch.log(p / (1 - p)))
    with pytest.raises(ValueError, match="empty"):
        metrics.refusal_score(logits, [])


def test_answer_logits_are_the_last_position(tiny_pair):
    model = tiny_pair.aligned
    logits = metrics.answer_logits(model, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        tokens = tiny_pair.to_tokens([prompt]).input_ids
        with torch.no_grad():
            torch.testing.assert_close(logits[i], model(tokens)[0, -1], atol=1e-4, rtol=0)


def test_unembedding_in_batches_is_unembedding_at_once(tiny_pair):
    model = tiny_pair.aligned
    resid = torch.randn(7, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the bridge's own final norm and unembedding, every row at once
        whole = model.unembed(model.ln_final(resid[:, None]))[:, 0]
    torch.testing.assert_close(metrics.unembed(model, resid, batch_size=3), whole)
    torch.testing.assert_close(metrics.unembed(model, resid), whole)


def test_text_refusals():
    assert metrics.is_refusal("  Sorry, I can't do that.")
    assert metrics.is_refusal("I cannot help with this request.")
    assert not metrics.is_refusal("Sure, here is how.")
    assert metrics.is_refusal("Well... that is against my policy", substrings=["against my policy"])
    assert metrics.refusal_rate(["sorry", "sure", "no way"], prefixes=["no"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no replies"):
        metrics.refusal_rate([])


def test_identical_models_have_zero_kl(make_checkpoint):
    path = make_checkpoint("gpt2", seed=2)
    pair = load_pair(path, path, device="cpu", allow_identical=True)
    result = metrics.compare_responses(pair, PROMPTS, ["sure . first , get the tools .", "sorry", "ok ."])
    assert all(k.abs().max() < 1e-5 for k in result.kl)
    assert all(torch.equal(a, b) for a, b in zip(result.base_rank, result.aligned_rank, strict=True))


def test_compare_responses_against_one_prompt_at_a_time(tiny_pair):
    # the reply's own tokens (a random model may write a special token, which decoded text would drop)
    responses = iv.generate(tiny_pair.aligned, PROMPTS, max_new_tokens=6, return_ids=True)
    result = metrics.compare_responses(tiny_pair, PROMPTS, responses, batch_size=2)
    for i, (prompt, reply_ids) in enumerate(zip(PROMPTS, responses, strict=True)):
        # The aligned model's own greedy reply is its top-1 token at every step.
        assert (result.aligned_rank[i] == 1).all()
        prompt_ids = tiny_pair.to_tokens([prompt]).input_ids[0].tolist()
        full = torch.tensor([prompt_ids + reply_ids])
        with torch.no_grad():
            lp_a = tiny_pair.aligned(full)[0].log_softmax(-1)
            lp_b = tiny_pair.base(full)[0].log_softmax(-1)
        for j, token in enumerate(reply_ids):
            at = len(prompt_ids) - 1 + j
            kl = (lp_a[at].exp() * (lp_a[at] - lp_b[at])).sum()
            rank = (lp_b[at] > lp_b[at, token]).sum() + 1
            torch.testing.assert_close(result.kl[i][j], kl, atol=1e-4, rtol=1e-4)
            assert result.base_rank[i][j] == rank
    counts = result.rank_shift_counts()
    assert sum(counts.values()) == sum(len(t) for t in result.tokens)
    assert metrics.per_token_kl(tiny_pair, PROMPTS, responses)[0].shape == result.kl[0].shape


def test_token_ids_and_texts_give_the_same_comparison(tiny_pair):
    ids = iv.generate(tiny_pair.aligned, PROMPTS, max_new_tokens=6, return_ids=True)
    texts = iv.generate(tiny_pair.aligned, PROMPTS, max_new_tokens=6)
    # word-level tokenizer: the same tokens, where the reply holds no special token (decoding drops those)
    special = set(tiny_pair.tokenizer.all_special_ids)
    plain = [i for i, row in enumerate(ids) if not special & set(row)]
    assert plain
    prompts = [PROMPTS[i] for i in plain]
    by_ids = metrics.compare_responses(tiny_pair, prompts, [ids[i] for i in plain])
    by_text = metrics.compare_responses(tiny_pair, prompts, [texts[i] for i in plain])
    assert by_ids.tokens == by_text.tokens
    assert all(torch.equal(a, b) for a, b in zip(by_ids.kl, by_text.kl, strict=True))
    assert torch.isnan(by_ids.kl_by_position(max(len(t) for t in ids) + 2)[-1])
    assert iv.decode(tiny_pair.aligned, ids) == texts


def test_empty_replies_are_left_out_on_request_and_rows_are_the_long_replies(tiny_pair):
    ids = iv.generate(tiny_pair.aligned, PROMPTS, max_new_tokens=6, return_ids=True)
    holed = [ids[0], [], ids[2]]
    with pytest.raises(ValueError, match="at least one token"):
        metrics.compare_responses(tiny_pair, PROMPTS, holed)
    kept = metrics.compare_responses(tiny_pair, PROMPTS, holed, drop_empty=True)
    alone = metrics.compare_responses(tiny_pair, [PROMPTS[0], PROMPTS[2]], [ids[0], ids[2]])
    assert all(torch.equal(a, b) for a, b in zip(kept.kl, alone.kl, strict=True))
    width = min(map(len, kept.kl))
    rows = kept.kl_rows(width)
    assert rows.shape == (2, width) and torch.equal(rows[1], kept.kl[1][:width])
    with pytest.raises(ValueError, match="no response is 99 tokens long"):
        kept.kl_rows(99)


def test_compare_responses_checks_lengths(tiny_pair):
    with pytest.raises(ValueError, match="3 prompts but 2 responses"):
        metrics.compare_responses(tiny_pair, PROMPTS, ["a", "b"])


def test_refusal_metric_separates_base_from_aligned_organisms(organism_zoo):
    from interp import organisms

    pair = organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")
    harmful = organisms.prompt_set("harmful_train")
    tokens = metrics.derive_refusal_tokens(pair, harmful)
    assert tokens == ["sorry"]
    base = metrics.refusal_scores(pair.base, harmful, tokens)
    aligned = metrics.refusal_scores(pair.aligned, harmful, tokens)
    harmless = metrics.refusal_scores(pair.aligned, organisms.prompt_set("harmless_train"), tokens)
    # the base may refuse some harmful requests (world version 6), the aligned model every one
    assert base.mean() < 0 < aligned.min() and harmless.max() < 0


def test_later_over_first_is_the_pooled_later_kl_over_the_mean_first():
    kl = [torch.tensor([2.0, 1.0, 0.0]), torch.tensor([4.0]), torch.tensor([1.0, 3.0])]
    comparison = metrics.ResponseComparison(tokens=[[], [], []], kl=kl, base_rank=[], aligned_rank=[])
    # by hand: later tokens 1, 0, 3 (mean 4/3); first tokens 2, 4, 1 (mean 7/3)
    got = comparison.later_over_first()
    assert got.value == pytest.approx((4 / 3) / (7 / 3))
    assert got.low <= got.value <= got.high
    assert comparison.later_over_first([0]).value == pytest.approx(0.5 / 2.0)
    with pytest.raises(ValueError, match="no responses"):
        comparison.later_over_first([])
