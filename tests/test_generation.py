"""Generation through the bridge against outside oracles.

* with no intervention: Hugging Face's ``AutoModelForCausalLM.generate`` on the same checkpoint,
  prompts and left padding, token for token (greedy) and sample for sample (same seed);
* under an intervention: a plain greedy loop that reruns the whole prefix through the bridge at
  every step with a hand-written hook (no KV cache, no code of ours in the loop).

Architectures: Llama (multi-head, untied), Llama with grouped-query attention and tied
embeddings (SmolLM2's layout), GPT-2.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from oracles import hf_generate

from interp import interventions as iv
from interp import kv_cache, load_model
from interp.prompts import pad_batch, pad_id, tokenize

PROMPTS = ["how do i bake ?", "tell me how to poison the well of the town .", "why ?", "how do i knit a hat ?"]
ARCHS = {
    "llama": dict(arch="llama"),
    "llama-gqa-tied": dict(arch="llama", n_heads=4, n_kv_heads=2, tied=True),
    "gpt2": dict(arch="gpt2"),
}


@pytest.fixture(scope="module", params=list(ARCHS))
def checkpoint(request, make_checkpoint):
    return make_checkpoint(seed=11, n_layers=3, **ARCHS[request.param])


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint, device="cpu", prompt_format="chat")


def _cut(row: list[int], tok) -> list[int]:
    stops = {tok.eos_token_id, tok.pad_token_id}
    return row[: next((i for i, t in enumerate(row) if t in stops), len(row))]


def test_the_cached_decoding_check_holds_on_every_architecture(model):
    assert kv_cache.cached_decoding_is_exact(model)


def test_greedy_generation_equals_huggingface(checkpoint, model):
    ours = iv.generate(model, PROMPTS, max_new_tokens=12, batch_size=3, return_ids=True)
    assert ours == hf_generate(checkpoint, PROMPTS, max_new_tokens=12, do_sample=False)
    assert max(len(r) for r in ours) > 1  # the comparison reaches past the first token


def test_sampled_generation_equals_huggingface_with_the_same_seed(checkpoint, model):
    ours = iv.generate(model, PROMPTS, max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, seed=4,
                       batch_size=len(PROMPTS), return_ids=True)
    torch.manual_seed(4)
    hf = hf_generate(checkpoint, PROMPTS, max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, top_k=0)
    assert ours == hf
    other_seed = iv.generate(model, PROMPTS, max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, seed=5,
                             batch_size=len(PROMPTS), return_ids=True)
    assert other_seed != ours  # the seed, and only the seed, changed the samples


def test_generation_without_a_cache_gives_the_same_replies(model, monkeypatch):
    expected = iv.generate(model, PROMPTS, max_new_tokens=8, return_ids=True)
    monkeypatch.setitem(kv_cache._CHECKED, model, False)  # as if the cached path had failed its check
    with pytest.warns(RuntimeWarning, match="without one"):
        assert iv.generate(model, PROMPTS, max_new_tokens=8, return_ids=True) == expected


@torch.no_grad()
def _greedy_oracle(model, prompts, hook_name, hook, steps) -> list[list[int]]:
    """Greedy decoding the slow way: the whole prefix through the bridge at every step, one plain hook."""
    input_ids, mask = pad_batch(tokenize(model.tokenizer, prompts, "chat"), pad_id(model.tokenizer), "left")
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(steps):
        with model.hooks(fwd_hooks=[(hook_name, hook)]):
            logits = model(input_ids, attention_mask=mask)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(done, pad_id(model.tokenizer), nxt)
        done |= nxt == model.tokenizer.eos_token_id
        input_ids = torch.cat([input_ids, nxt[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return [_cut(row.tolist(), model.tokenizer) for row in input_ids[:, -steps:]]


def test_generation_under_an_intervention_equals_a_step_by_step_rerun(model):
    vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 3
    ours = iv.generate(model, PROMPTS, iv.AddVector(vector, layer=1), max_new_tokens=10, return_ids=True)
    oracle = _greedy_oracle(model, PROMPTS, "blocks.1.hook_resid_pre", lambda x, hook: x + vector, steps=10)
    assert ours == oracle
    assert ours != iv.generate(model, PROMPTS, max_new_tokens=10, return_ids=True)  # the edit mattered


def test_replies_with_their_answer_logits_are_the_replies_and_a_plain_forward_s_last_logits(checkpoint, model):
    """The logits the first token was chosen from are Hugging Face's forward at each prompt's last position (one
    unpadded prompt at a time), with and without an intervention; the replies are generate's."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1)) * 3
    for edits in ((), (iv.AddVector(vector, layer=1),)):
        replies, logits = iv.generate_with_answer_logits(model, PROMPTS, *edits, max_new_tokens=6, batch_size=3)
        assert replies == iv.generate(model, PROMPTS, *edits, max_new_tokens=6, batch_size=3)
        assert logits.shape == (len(PROMPTS), model.cfg.d_vocab) and logits.dtype == torch.float32
        if not edits:
            with torch.no_grad():
                expected = torch.cat([hf(torch.tensor([ids])).logits[:, -1]
                                      for ids in tokenize(model.tokenizer, PROMPTS, "chat")])
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
        else:
            from interp.metrics import answer_logits

            torch.testing.assert_close(logits, answer_logits(model, PROMPTS, *edits), atol=1e-4, rtol=1e-4)


def test_generation_leaves_no_hook_behind(model):
    before = [dict(m._forward_pre_hooks) for m in model.modules()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cached path is exact here: no fallback warning
        iv.generate(model, PROMPTS[:2], iv.AddVector(torch.ones(model.cfg.d_model), 0), max_new_tokens=3)
    assert [dict(m._forward_pre_hooks) for m in model.modules()] == before
    assert sum(len(h._forward_hooks) for h in model.hook_dict.values()) == 0


def test_generation_rejects_bad_lengths(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        iv.generate(model, PROMPTS, max_new_tokens=0)
