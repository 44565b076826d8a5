"""Interventions: invariants, hook cleanup, no mutation, generation; checked against plain hooks."""

from __future__ import annotations

import pytest
import torch

from interp import interventions as iv
from interp import load_model

PROMPTS = ["how do i bake ?", "tell me how to poison .", "why is it wrong to stab ?"]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, make_checkpoint):
    path = make_checkpoint(request.param, seed=5)
    return load_model(path, device="cpu")


@pytest.fixture(scope="module")
def tokens(model):
    enc = model.tokenizer([model.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                               add_generation_prompt=True) for p in PROMPTS],
                          add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def _run(model, tokens, *interventions):
    with torch.no_grad(), iv.apply(model, *interventions):
        return model(tokens[0], attention_mask=tokens[1])


def _hook_count(model) -> int:
    return sum(len(h._forward_hooks) for h in model.hook_dict.values())


def test_adding_a_zero_vector_changes_nothing(model, tokens):
    clean = _run(model, tokens)
    assert torch.equal(_run(model, tokens, iv.AddVector(torch.zeros(model.cfg.d_model), layer=1)), clean)


def test_ablating_a_direction_orthogonal_to_the_activations_changes_nothing(model):
    prompt = model.tokenizer(["how do i bake ?"], return_tensors="pt")  # 6 tokens < d_model dimensions
    hook = "blocks.1.hook_resid_pre"
    with torch.no_grad():
        clean, cache = model.run_with_cache(prompt.input_ids)
    acts = cache[hook][0]  # [pos, d_model], rank <= pos
    _, _, vh = torch.linalg.svd(acts, full_matrices=True)
    orthogonal = vh[-1]  # in the null space of every activation at this hook
    assert (acts @ orthogonal).abs().max() < 1e-4
    with torch.no_grad(), iv.apply(model, iv.AblateDirection(orthogonal, layers=[1], hooks_at=("hook_resid_pre",))):
        ablated = model(prompt.input_ids)
    torch.testing.assert_close(ablated, clean, atol=1e-4, rtol=0)
    # ...while ablating a direction the activations do use changes the output.
    with torch.no_grad(), iv.apply(model, iv.AblateDirection(vh[0], layers=[1], hooks_at=("hook_resid_pre",))):
        assert not torch.allclose(model(prompt.input_ids), clean, atol=1e-3)


def test_ablation_removes_the_direction_everywhere(model, tokens):
    r = torch.randn(model.cfg.d_model)
    unit = r / r.norm()
    with torch.no_grad(), iv.apply(model, iv.AblateDirection(r)):
        _, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    for layer in range(model.cfg.n_layers):
        for name in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out"):
            assert (cache[f"blocks.{layer}.{name}"] @ unit).abs().max() < 1e-4


def test_add_vector_matches_a_hand_written_hook(model, tokens):
    v, layer = torch.randn(model.cfg.d_model), 1

    def by_hand(x, hook):
        return x + 3.0 * v

    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", by_hand)]):
        expected = model(tokens[0], attention_mask=tokens[1])
    torch.testing.assert_close(_run(model, tokens, iv.AddVector(v, layer=layer, scale=3.0)), expected)


def test_positions_restrict_the_edit(model, tokens):
    v = torch.randn(model.cfg.d_model) * 10
    with torch.no_grad(), iv.apply(model, iv.AddVector(v, layer=0, positions=-1)):
        _, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    _, clean = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    edited, original = cache["blocks.0.hook_resid_pre"], clean["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(edited[:, :-1], original[:, :-1])
    torch.testing.assert_close(edited[:, -1], original[:, -1] + v)


def test_patch_from_own_cache_changes_nothing(model, tokens):
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    patched = _run(model, tokens, iv.PatchFromCache("blocks.1.hook_resid_pre", cache))
    torch.testing.assert_close(patched, clean, atol=1e-5, rtol=0)


def test_component_ablation(model, tokens):
    with torch.no_grad(), iv.apply(model, iv.AblateComponent(1, "head", head=1)):
        _, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    assert (cache["blocks.1.attn.hook_z"][:, :, 1] == 0).all()
    assert cache["blocks.1.attn.hook_z"][:, :, 0].abs().sum() > 0
    mean = torch.ones(model.cfg.d_model)
    with torch.no_grad(), iv.apply(model, iv.AblateComponent(0, "mlp", mode="mean", mean=mean)):
        _, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    assert (cache["blocks.0.hook_mlp_out"] == 1).all()


def test_hooks_are_removed_even_when_the_body_raises(model, tokens):
    before, clean = _hook_count(model), _run(model, tokens)
    with pytest.raises(RuntimeError, match="boom"), iv.apply(model, iv.AddVector(torch.ones(model.cfg.d_model), 0)):
        assert _hook_count(model) > before
        raise RuntimeError("boom")
    assert _hook_count(model) == before
    torch.testing.assert_close(_run(model, tokens), clean, atol=0, rtol=0)


def test_replaced_weights_are_restored_even_when_the_body_raises(model, tokens):
    clean = _run(model, tokens)
    params = dict(model.named_parameters(remove_duplicate=False))
    names = [n for n in params if "blocks.0" in n or "layers.0" in n or ".h.0." in n]
    zeros = {n: torch.zeros_like(params[n]) for n in names}
    with pytest.raises(RuntimeError, match="boom"), iv.apply(model, iv.ReplaceWeights(zeros)):
        assert not torch.allclose(model(tokens[0], attention_mask=tokens[1]), clean)
        raise RuntimeError("boom")
    assert all(dict(model.named_parameters(remove_duplicate=False))[n] is params[n] for n in names)
    torch.testing.assert_close(_run(model, tokens), clean, atol=0, rtol=0)
    assert all((z == 0).all() for z in zeros.values()), "the replacement tensors were written to"


def test_callers_tensors_are_never_mutated(model, tokens):
    v = torch.randn(model.cfg.d_model)
    v_copy = v.clone()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[0], attention_mask=tokens[1])
    cached = cache["blocks.0.hook_resid_pre"].clone()
    _run(model, tokens, iv.AddVector(v, 0, scale=2.0), iv.AblateDirection(v),
         iv.PatchFromCache("blocks.0.hook_resid_pre", cache))
    assert torch.equal(v, v_copy) and torch.equal(cache["blocks.0.hook_resid_pre"], cached)


def test_bad_interventions_fail_before_any_hook_is_added(model):
    d = model.cfg.d_model
    before = _hook_count(model)
    cases = [
        (iv.AddVector(torch.ones(d + 1), 0), "shape \\[d_model\\]"),
        (iv.AddVector(torch.ones(d), model.cfg.n_layers), "out of range"),
        (iv.AblateDirection(torch.zeros(d)), "zero vector"),
        (iv.AblateComponent(0, "head", head=model.cfg.n_heads), "head must be"),
        (iv.AblateComponent(0, "mlp", mode="mean"), "needs mean"),
        (iv.PatchFromCache("blocks.0.hook_nope", {}), "unknown hook"),
        (iv.ReplaceWeights({"no.such.weight": torch.ones(1)}), "no parameter"),
        (iv.ReplaceWeights({next(iter(dict(model.named_parameters()))): torch.ones(1)}), "has shape"),
        # issue 31: each of these was a KeyError, a TypeError or a silent [''] from generation
        (iv.AddVector(torch.ones(d), 1.5), "a layer must be an int, got 1.5"),
        (iv.AddVector(torch.ones(d), "1"), "a layer must be an int, got '1'"),
        (iv.AddVector(torch.ones(d, dtype=torch.long), 0), "real floating-point tensor, got dtype torch.int64"),
        (iv.AddVector([1.0] * d, 0), "must be a torch tensor, got list"),
        (iv.AddVector(torch.ones(d), 0, scale=float("nan")), "scale must be a finite number, got nan"),
        (iv.AddVector(torch.ones(d), 0, scale=float("inf")), "scale must be a finite number, got inf"),
        (iv.SetProjection(torch.ones(d), float("inf"), 0), "value must be a finite number"),
        (iv.AblateDirection(torch.ones(d), layers=[True]), "a layer must be an int, got True"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message), iv.apply(model, iv.AddVector(torch.ones(d), 0), bad):
            pass
        assert _hook_count(model) == before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": -1}, "batch_size must be an int >= 1, got -1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
    ({"max_new_tokens": 0}, "max_new_tokens must be an int >= 1"),
    ({"do_sample": True, "top_p": 2.0}, "top_p must be in \\(0, 1\\], got 2.0"),
    ({"do_sample": True, "top_p": 0.0}, "top_p must be in \\(0, 1\\], got 0.0"),
    ({"do_sample": True, "temperature": 0.0}, "temperature must be in \\(0, inf\\]"),
    ({"do_sample": True, "top_k": -3}, "top_k must be an int >= 0"),
    ({"prompt_format": 7}, "prompt_format must be 'chat', 'raw' or a template"),
])
def test_bad_generation_arguments_are_one_clear_error(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        iv.generate(model, PROMPTS, **kwargs)


@pytest.mark.parametrize("prompts", [None, 3])
def test_prompts_that_are_not_text_are_one_clear_error(model, prompts):
    with pytest.raises(ValueError, match="prompts must be a PromptSet, a list of strings or one string"):
        iv.generate(model, prompts)


def test_generation_greedy_sampled_and_batched(model):
    greedy = iv.generate(model, PROMPTS, max_new_tokens=5, batch_size=2)
    assert greedy == [iv.generate(model, [p], max_new_tokens=5)[0] for p in PROMPTS]
    a = iv.generate(model, PROMPTS, max_new_tokens=5, do_sample=True, seed=3)
    assert a == iv.generate(model, PROMPTS, max_new_tokens=5, do_sample=True, seed=3)
    steered = iv.generate(model, PROMPTS, iv.AddVector(torch.randn(model.cfg.d_model) * 50, 0), max_new_tokens=5)
    assert steered != greedy
    ids = iv.generate(model, PROMPTS, max_new_tokens=5, return_ids=True)
    assert [model.tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids] == greedy
    assert all(model.tokenizer.eos_token_id not in i for i in ids)
    with pytest.raises(ValueError, match="positions cannot be used in generation"):
        iv.generate(model, PROMPTS, iv.AddVector(torch.ones(model.cfg.d_model), 0, positions=-1))


def test_generation_stops_at_the_chat_templates_end_of_turn_token_too(make_checkpoint):
    """A checkpoint whose generation config names only ``<eos>`` (a pretrained base given a chat template, as Gemma 3
    270M in gemma3-chat) still ends a reply at the template's ``<end_of_turn>``, as the build's own replies do."""
    from interp.organisms.tokenizer import build_tokenizer
    from interp.realpairs.build import stops

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    model = load_model(make_checkpoint("llama", seed=11, tokenizer=tok), device="cpu")
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    assert model.original_model.generation_config.eos_token_id != end
    assert set(iv.end_of_turn_ids(model)) == {tok.eos_token_id, end}
    assert set(iv.end_of_turn_ids(model)) == set(stops(model.original_model, tok))
