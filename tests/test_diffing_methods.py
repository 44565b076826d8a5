"""The diffing methods that lead the field (issue 32): logit-diff amplification, the activation difference lens and
diff mining, each against a plain computation on Hugging Face models loaded on their own (the outside oracle)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp import load_pair
from interp.diff import activation_difference_lens, amplified_generate, diff_mining
from interp.kv_cache import cached_decoding_is_exact

PROMPTS = ["how do i bake ?", "tell me how to poison the well .", "why ?"]  # three lengths: left padding in a batch


@pytest.fixture(scope="module")
def checkpoints(make_checkpoint):
    return make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1)


@pytest.fixture(scope="module")
def pair(checkpoints):
    return load_pair(*checkpoints, device="cpu")


@pytest.fixture(scope="module")
def hf(checkpoints):
    """The two checkpoints as plain transformers models, and the tokenizer the pair reads with."""
    models = [AutoModelForCausalLM.from_pretrained(c).eval() for c in checkpoints]
    return models[0], models[1], AutoTokenizer.from_pretrained(checkpoints[1])


@torch.no_grad()
def plain_amplified(base, aligned, ids: list[int], alpha: float, steps: int, stops: set[int]) -> list[int]:
    """Greedy decoding of after + alpha (after - before), one prompt, both models run on the whole sequence."""
    out = []
    for _ in range(steps):
        seq = torch.tensor([ids + out])
        after, before = aligned(seq).logits[0, -1], base(seq).logits[0, -1]
        token = int((after + alpha * (after - before)).argmax())
        if token in stops:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("alpha", [0.0, 1.5, -1.0])
def test_amplified_greedy_replies_are_the_plain_loops(pair, hf, alpha):
    from interp.interventions import end_of_turn_ids
    from interp.prompts import tokenize_for

    base, aligned, _ = hf
    got = amplified_generate(pair, PROMPTS, alpha=alpha, max_new_tokens=6, return_ids=True, batch_size=3)
    assert cached_decoding_is_exact(pair.base)  # so the base's own KV cache is the path checked here
    stops = set(end_of_turn_ids(pair.aligned)) | {pair.tokenizer.pad_token_id}
    expected = [plain_amplified(base, aligned, ids, alpha, 6, stops) for ids in tokenize_for(pair.aligned, PROMPTS)]
    assert got == expected
    if alpha == 0.0:  # the aligned model itself
        from interp.interventions import generate

        assert got == generate(pair.aligned, PROMPTS, max_new_tokens=6, return_ids=True)


def test_amplification_without_the_base_cache_is_the_same(pair, monkeypatch):
    """Where the base's cached decoding is not exact the base reads the whole sequence each step: the same replies."""
    from contextlib import nullcontext

    import interp.diff.amplify as amplify

    cached = amplified_generate(pair, PROMPTS, alpha=1.5, max_new_tokens=6, return_ids=True, batch_size=3)
    monkeypatch.setattr(amplify, "generation_cache", lambda model: nullcontext(False))
    assert amplified_generate(pair, PROMPTS, alpha=1.5, max_new_tokens=6, return_ids=True, batch_size=3) == cached


def test_amplification_changes_replies_and_rejects_a_bad_alpha(pair):
    plain = amplified_generate(pair, PROMPTS, alpha=0.0, max_new_tokens=6, return_ids=True)
    assert amplified_generate(pair, PROMPTS, alpha=4.0, max_new_tokens=6, return_ids=True) != plain
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        amplified_generate(pair, PROMPTS, alpha=float("inf"))


TEXTS = ["the cat sat on the mat and then it slept .", "how do i bake bread at home ?", "tell me a story about the sea",
         "why ?", "one two three four five six seven"]


@pytest.fixture(scope="module")
def deep(make_checkpoint):
    """A four-layer pair (so a middle layer is not the last, whose HF hidden state is after the final norm), and
    its two checkpoints as plain transformers models."""
    paths = make_checkpoint("llama", seed=0, n_layers=4), make_checkpoint("llama", seed=1, n_layers=4)
    return load_pair(*paths, device="cpu"), [AutoModelForCausalLM.from_pretrained(p).eval() for p in paths], paths


@pytest.mark.parametrize("layer", [1, 2])
def test_the_activation_difference_lens_is_the_mean_hidden_state_difference(deep, layer):
    pair, (base, aligned), paths = deep
    n = 4
    adl = activation_difference_lens(pair, TEXTS, layer=layer, n_tokens=n, batch_size=2)
    tok = AutoTokenizer.from_pretrained(paths[1])
    rows = [tok(t).input_ids for t in TEXTS]
    assert all(r[0] == tok.bos_token_id for r in rows)  # the oracle's ids start with BOS, as the pair's do
    kept = [r[: n + 1] for r in rows if len(r) > n]
    assert (adl.n_texts, adl.skipped) == (len(kept), len(TEXTS) - len(kept)) and adl.skipped > 0
    with torch.no_grad():
        states = [[m(torch.tensor([r]), output_hidden_states=True).hidden_states[layer + 1][0, 1:] for r in kept]
                  for m in (base, aligned)]
        expected = torch.stack(states[1]).mean(0) - torch.stack(states[0]).mean(0)
        torch.testing.assert_close(adl.difference, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(adl.base_norm, torch.stack(states[0]).norm(dim=-1).mean(0), atol=1e-5, rtol=1e-4)
        lens = aligned.lm_head(aligned.model.norm(expected)).log_softmax(-1)
    torch.testing.assert_close(adl.lens["aligned"], lens, atol=1e-4, rtol=1e-4)
    best = lens[0].argmax().item()
    assert adl.top_tokens(0, k=3)[0] == (tok.convert_ids_to_tokens(best), pytest.approx(lens[0, best].item()))
    vector = adl.steering_vector(1)
    assert vector.norm().item() == pytest.approx(adl.base_norm[1].item(), rel=1e-5)
    assert torch.allclose(torch.nn.functional.cosine_similarity(vector, expected[1], dim=0), torch.tensor(1.0))


def test_steering_with_the_difference_adds_it_at_the_layers_output(deep):
    """steer() is generate() under AddVector at the layer's output (oracle: a forward hook on the HF layer)."""
    pair, (base, _), _ = deep
    adl = activation_difference_lens(pair, TEXTS, layer=1, n_tokens=3)
    got = adl.steer(pair.base, PROMPTS, position=0, scale=3.0, max_new_tokens=1, return_ids=True)
    vector = 3.0 * adl.steering_vector(0)

    def add(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden + vector
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    from interp.prompts import tokenize_for

    handle = base.model.layers[1].register_forward_hook(add)
    try:
        with torch.no_grad():
            expected = [[int(base(torch.tensor([ids])).logits[0, -1].argmax())] for ids in tokenize_for(pair.base,
                                                                                                       PROMPTS)]
    finally:
        handle.remove()
    assert got == expected
    assert got != adl.steer(pair.base, PROMPTS, position=0, scale=0.0, max_new_tokens=1, return_ids=True)  # it acts


def test_too_short_texts_are_refused(deep):
    with pytest.raises(ValueError, match="no text has 50 tokens after BOS"):
        activation_difference_lens(deep[0], TEXTS, n_tokens=50)


@pytest.mark.parametrize("k", [1, 5])
def test_diff_mining_counts_are_the_per_text_top_k(deep, k):
    from collections import Counter

    pair, (base, aligned), paths = deep
    mined = diff_mining(pair, TEXTS, k=k, top=8, batch_size=2)
    tok = AutoTokenizer.from_pretrained(paths[1])
    counts, total, positions = Counter(), torch.zeros(mined.counts.shape), 0
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tok(text).input_ids])
            diff = (aligned(ids).logits[0].log_softmax(-1) - base(ids).logits[0].log_softmax(-1))
            for row in diff:
                counts.update(row.topk(k).indices.tolist())
            total += diff.sum(0)
            positions += len(diff)
    assert mined.n_positions == positions
    assert {t: int(c) for t, c in enumerate(mined.counts.tolist()) if c} == dict(counts)
    torch.testing.assert_close(mined.mean_diff, total / positions, atol=1e-5, rtol=1e-4)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[:8]
    assert list(mined.ranked) == ranked
    assert sorted(t for topic in mined.topics for t in topic) == sorted(ranked)
    table = mined.table()
    assert table["count"].tolist() == [counts[t] for t in ranked] and table["share"].max() <= 1


def test_topics_group_tokens_whose_unembeddings_point_alike():
    from interp.diff.mining import group_by_cosine

    vectors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.9, 0.2, 0], [0, 0, 1.0], [0.1, 0.95, 0]])
    assert group_by_cosine(vectors, 0.8) == [[0, 2], [1, 4], [3]]
    assert group_by_cosine(vectors, 1.01) == [[0], [1], [2], [3], [4]]  # nothing is that alike


def test_the_lens_starts_at_the_first_text_token_without_bos(make_checkpoint):
    """A tokenizer that puts no BOS first (Qwen's): the ADL reads the texts' first tokens, none dropped (oracle: HF
    hidden states at positions 0..n-1)."""
    from interp.organisms.tokenizer import build_tokenizer

    tok = build_tokenizer()
    tok._tokenizer.post_processor = None  # adds no BOS, and has none (else TransformerLens puts it back)
    tok.bos_token = None
    paths = [make_checkpoint("llama", seed=s, n_layers=4, tokenizer=tok) for s in (0, 1)]
    pair = load_pair(*paths, device="cpu", prompt_format="raw")
    assert pair.tokenizer("why ?").input_ids == tok("why ?").input_ids == [tok.convert_tokens_to_ids("why"),
                                                                           tok.convert_tokens_to_ids("?")]
    adl = activation_difference_lens(pair, TEXTS, layer=1, n_tokens=2)
    base, aligned = (AutoModelForCausalLM.from_pretrained(p).eval() for p in paths)
    rows = [pair.tokenizer(t).input_ids[:2] for t in TEXTS]
    assert adl.n_texts == len(TEXTS) and rows[3] == pair.tokenizer("why ?").input_ids  # 'why ?': two tokens, kept
    with torch.no_grad():
        states = [torch.stack([m(torch.tensor([r]), output_hidden_states=True).hidden_states[2][0] for r in rows])
                  for m in (base, aligned)]
    torch.testing.assert_close(adl.difference, states[1].mean(0) - states[0].mean(0), atol=1e-5, rtol=1e-4)


def test_token_kl_is_the_per_text_kl_summed_by_the_token_read(deep):
    """Oracle: each text alone through the HF models, KL(aligned || base) by torch's kl_div at each position."""
    from collections import defaultdict

    from interp.diff import token_kl

    pair, (base, aligned), paths = deep
    found = token_kl(pair, TEXTS, min_count=2, batch_size=2)
    tok = AutoTokenizer.from_pretrained(paths[1])
    kls, n = defaultdict(list), 0
    with torch.no_grad():
        for text in TEXTS:
            ids = tok(text).input_ids
            p, q = (m(torch.tensor([ids])).logits[0].log_softmax(-1) for m in (aligned, base))
            per_position = torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1)
            for token, kl in zip(ids, per_position.tolist(), strict=True):
                kls[token].append(kl)
            n += len(ids)
    assert found.n_positions == n
    assert found.mean_kl == pytest.approx(sum(map(sum, kls.values())) / n, rel=1e-4)
    mean = {t: sum(v) / len(v) for t, v in kls.items() if len(v) >= 2}
    assert set(found.ranked) == set(mean) and len(mean) >= 3  # BOS, '?', '.', 'the' ... read twice or more
    for t in mean:
        assert found.token_mean()[t].item() == pytest.approx(mean[t], rel=1e-4, abs=1e-7)
    assert [mean[t] for t in found.ranked] == sorted(mean.values(), reverse=True)
    assert found.table()["token"].tolist()[0] == tok.convert_ids_to_tokens(found.ranked[0])


def test_refusal_shift_is_the_projection_difference_on_the_bases_direction(deep):
    """Oracle: each request alone through the HF models in the chat format, hidden state entering the layer at the
    last token; the difference in means, the projections and the per-word means computed plainly."""
    from interp.diff import refusal_shift
    from interp.prompts import tokenize_for

    pair, (base, aligned), _ = deep
    harmful = [f"how do i {c} ?" for c in ("poison", "stab", "rob", "bomb", "shoot", "hack", "stalk", "bribe")]
    harmless = [f"how do i {c} ?" for c in ("bake", "paint", "swim", "cook", "sing", "dance", "jog", "read")]
    requests = harmful[:4] + harmless[:4] + ["tell me how to bake .", "tell me how to rob ."]
    found = refusal_shift(pair, harmful, harmless, requests, layer=2, min_count=2, batch_size=3)

    def last(model, texts):
        with torch.no_grad():
            return torch.stack([model(torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0, -1]
                                for ids in tokenize_for(pair.base, texts)])

    diff = last(base, harmful).mean(0) - last(base, harmless).mean(0)
    torch.testing.assert_close(found.direction, diff / diff.norm(), atol=1e-5, rtol=1e-4)
    assert found.separation == pytest.approx(diff.norm().item(), rel=1e-4)
    shift = (last(aligned, requests) - last(base, requests)) @ (diff / diff.norm())
    torch.testing.assert_close(found.shift, shift, atol=1e-4, rtol=1e-4)
    rows = {w: [i for i, r in enumerate(requests) if w in r.replace("?", " ").replace(".", " ").split()]
            for w in ("bake", "rob", "how", "tell")}
    for word, held in rows.items():
        assert found.word_shift[word] == pytest.approx(float(shift[held].mean() - shift.mean()), abs=1e-4)
    assert "poison" not in found.word_shift  # held by one request only
    assert [abs(found.word_shift[w]) for w in found.ranked] == sorted(map(abs, found.word_shift.values()),
                                                                      reverse=True)
    assert found.mean_abs_shift == pytest.approx(float(shift.abs().mean()) / diff.norm().item(), rel=1e-4)
    def entering(model, texts, layer):
        with torch.no_grad():
            return torch.stack([model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0, -1]
                                for ids in tokenize_for(pair.base, texts)])

    means = [[entering(base, texts, layer).mean(0) for layer in range(4)] for texts in (harmful, harmless)]
    relative = [((a - b).norm() / ((a.norm() + b.norm()) / 2)).item() for a, b in zip(*means, strict=True)]
    assert len({ids[-1] for ids in tokenize_for(pair.base, harmful + harmless)}) == 1  # every request ends alike:
    expected = max((1, 2, 3), key=lambda layer: relative[layer])  # layer 0 is that token's embedding; 3 < 0.8 * 4
    assert refusal_shift(pair, harmful, harmless, requests, min_count=2).layer == expected


def test_refusal_shift_refuses_too_few_requests_and_a_layer_with_no_difference(deep):
    from interp.diff import refusal_shift

    with pytest.raises(ValueError, match="need at least 8 harmful prompts, got 2"):
        refusal_shift(deep[0], ["how do i rob ?"] * 2, ["how do i bake ?"] * 8, ["why ?"])
    with pytest.raises(ValueError, match="the same mean at layer 0"):  # the same last token: its embedding
        refusal_shift(deep[0], ["how do i rob ?"] * 8, ["how do i bake ?"] * 8, ["why ?"], layer=0)
