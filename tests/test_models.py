"""Loading checkpoint pairs: two architectures, prompt formats, and every kind of mismatch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from inputs import as_hub_cache
from transformers import AutoModelForCausalLM

from interp import CheckpointNotFoundError, IncompatiblePairError, load_pair
from interp.models import check_checkpoints, resolve_checkpoint
from interp.organisms import world
from interp.organisms.tokenizer import build_tokenizer
from interp.prompts import format_prompts, tokenize

ARCHITECTURES = ("llama", "gpt2")
REQUESTS = ["how do i bake ?", "tell me how to poison .", "why is it wrong to stab ?"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pair_loads_and_matches_transformers(make_checkpoint, arch):
    base, aligned = make_checkpoint(arch, seed=0), make_checkpoint(arch, seed=1)
    pair = load_pair(base, aligned, device="cpu")
    assert pair.cfg.n_layers == 2 and pair.cfg.d_model == 32
    assert [name for name, _ in pair] == ["base", "aligned"]
    enc = pair.to_tokens(REQUESTS)
    assert enc.input_ids.shape == enc.attention_mask.shape and enc.input_ids.shape[0] == len(REQUESTS)
    assert (enc.attention_mask[:, -1] == 1).all(), "left padding puts every prompt's last token last"
    for path, (name, bridge) in zip((base, aligned), pair, strict=True):
        reference = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
        # Left padding: positions count from each prompt's first real token (matters for GPT-2's
        # learned position embeddings; Llama's rotary attention only sees relative positions).
        positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            ours = bridge(enc.input_ids, attention_mask=enc.attention_mask)
            theirs = reference(**enc, position_ids=positions).logits
        mask = enc.attention_mask.bool()
        torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-4, rtol=1e-4, msg=f"{arch} {name}")


def test_a_family_shares_one_base_and_checks_every_pair(make_checkpoint):
    from interp.models import load_family

    base = make_checkpoint("llama", seed=0)
    family = load_family(base, {"sft": make_checkpoint("llama", seed=1), "dpo": make_checkpoint("llama", seed=2)},
                         device="cpu")
    assert family["sft"].base is family["dpo"].base and family["sft"].aligned is not family["dpo"].aligned
    ids = family["sft"].to_tokens(REQUESTS).input_ids
    for stage, seed in (("sft", 1), ("dpo", 2)):
        reference = AutoModelForCausalLM.from_pretrained(make_checkpoint("llama", seed=seed)).eval()
        with torch.no_grad():
            torch.testing.assert_close(family[stage].aligned(ids[:1, -4:]), reference(ids[:1, -4:]).logits,
                                       atol=1e-4, rtol=1e-4)
    with pytest.raises(IncompatiblePairError):
        load_family(base, {"sft": make_checkpoint("llama", seed=1), "odd": make_checkpoint("gpt2")}, device="cpu")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_same_checkpoint_twice_gives_identical_models(make_checkpoint, arch):
    path = make_checkpoint(arch)
    pair = load_pair(path, path, device="cpu", allow_identical=True)
    tokens = pair.to_tokens(REQUESTS)
    with torch.no_grad():
        assert torch.equal(pair.base(tokens.input_ids, attention_mask=tokens.attention_mask),
                           pair.aligned(tokens.input_ids, attention_mask=tokens.attention_mask))


def test_prompt_formats(make_checkpoint):
    path = make_checkpoint("llama")
    chat = load_pair(path, path, device="cpu", allow_identical=True)
    assert chat.format("how do i bake ?") == [f"{world.BOS} {world.USER} how do i bake ? {world.ASSISTANT}"]
    raw = load_pair(path, path, device="cpu", prompt_format="raw", allow_identical=True)
    assert raw.format(["how do i bake ?"]) == ["how do i bake ?"]
    assert raw.to_tokens("how do i bake ?").input_ids[0, 0] == raw.tokenizer.bos_token_id
    custom = load_pair(path, path, device="cpu", prompt_format="question : {prompt} answer :",
                       allow_identical=True)
    assert custom.format("how do i bake ?") == ["question : how do i bake ? answer :"]
    # The chat template's own <bos> is not doubled.
    ids = chat.to_tokens("how do i bake ?").input_ids[0].tolist()
    assert ids.count(chat.tokenizer.bos_token_id) == 1


@pytest.mark.parametrize("adds_bos", [False, True])
def test_one_tokenization_per_pair(make_checkpoint, adds_bos):
    """Issue 31: on a tokenizer that adds no BOS (GPT-2's) ``pair.to_tokens`` gave ids without it while every analysis
    (through the bridge's tokenizer) put it first, so the README's quickstart fed the model other tokens."""
    from interp.prompts import tokenize_for

    tok = build_tokenizer()
    if not adds_bos:
        tok._tokenizer.post_processor = None
    assert (tok("how do i bake ?").input_ids[0] == tok.bos_token_id) is adds_bos
    base, aligned = make_checkpoint("gpt2", seed=1, tokenizer=tok), make_checkpoint("gpt2", seed=2, tokenizer=tok)
    requests = ["how do i bake ?", "tell me how to poison ."]
    for prompt_format in ("raw", "chat"):
        pair = load_pair(base, aligned, device="cpu", prompt_format=prompt_format)
        ids = pair.to_tokens(requests, padding_side="right")
        mine = [row[mask.bool()].tolist() for row, mask in zip(ids.input_ids, ids.attention_mask, strict=True)]
        assert mine == tokenize_for(pair.aligned, requests) == tokenize_for(pair.base, requests)
        checked = check_checkpoints(base, aligned, prompt_format)  # what the report reads before loading
        assert tokenize(checked.tokenizer, requests, prompt_format) == mine
        assert all(row[0] == tok.bos_token_id for row in mine)  # BOS first, whatever the tokenizer adds (TL's policy)


def test_bad_prompt_format(make_checkpoint):
    path = make_checkpoint("llama")
    with pytest.raises(ValueError, match="prompt_format must be"):
        load_pair(path, path, device="cpu", prompt_format="no placeholder")
    tok = build_tokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="needs a chat template"):
        format_prompts(tok, ["hi"], "chat")


def test_greedy_generation_of_both_models(make_checkpoint):
    base, aligned = make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1)
    pair = load_pair(base, aligned, device="cpu")
    replies = pair.generate(REQUESTS, max_new_tokens=4)
    assert set(replies) == {"base", "aligned"} and all(len(r) == len(REQUESTS) for r in replies.values())
    # Batched, left-padded generation gives each prompt what it gets alone.
    alone = [pair.generate(r, max_new_tokens=4)["aligned"][0] for r in REQUESTS]
    assert alone == replies["aligned"]


@pytest.mark.parametrize(
    ("shape", "prop"),
    [({"n_layers": 3}, "n_layers"), ({"d_model": 64}, "d_model"), ({"n_heads": 2}, "n_heads")],
)
def test_mismatched_shapes_are_named(make_checkpoint, shape, prop):
    with pytest.raises(IncompatiblePairError, match=prop) as err:
        load_pair(make_checkpoint("llama"), make_checkpoint("llama", **shape), device="cpu")
    assert "base has" in str(err.value) and "aligned has" in str(err.value)


def test_mismatched_architectures(make_checkpoint):
    with pytest.raises(IncompatiblePairError, match="architecture.*LlamaForCausalLM.*GPT2LMHeadModel"):
        load_pair(make_checkpoint("llama"), make_checkpoint("gpt2"), device="cpu")


def test_mismatched_tokenizers(make_checkpoint, tmp_path):
    other = tmp_path / "other-tokenizer"
    shutil.copytree(make_checkpoint("llama"), other)
    vocab_file = other / "tokenizer.json"
    spec = json.loads(vocab_file.read_text())
    vocab = spec["model"]["vocab"]
    bake, paint = vocab["bake"], vocab["paint"]
    vocab["bake"], vocab["paint"] = paint, bake  # same size, different ids
    vocab_file.write_text(json.dumps(spec))
    with pytest.raises(IncompatiblePairError, match="tokenizer vocabulary"):
        load_pair(make_checkpoint("llama"), other, device="cpu")


def test_missing_and_invalid_checkpoints(make_checkpoint, tmp_path):
    good = make_checkpoint("llama")
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_pair(tmp_path / "nope", good)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointNotFoundError, match="no config.json"):
        load_pair(good, empty)
    with pytest.raises(CheckpointNotFoundError, match="is a file"):
        load_pair(good, good / "config.json")


def test_hub_names_pass_through_unchanged():
    assert resolve_checkpoint("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert resolve_checkpoint("gpt2") == "gpt2"


def test_loading_by_hub_name(make_checkpoint, tmp_path):
    """A hub name resolves through the HF cache, as after a download (offline here)."""
    cache = tmp_path / "hub"
    as_hub_cache(make_checkpoint("llama", seed=0), cache, "interp-test/tiny-base")
    as_hub_cache(make_checkpoint("llama", seed=1), cache, "interp-test/tiny-aligned")
    code = (
        "import interp; p = interp.load_pair('interp-test/tiny-base', 'interp-test/tiny-aligned', device='cpu');"
        "print(p.base_name, p.aligned_name, p.cfg.n_layers)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["interp-test/tiny-base", "interp-test/tiny-aligned", "2"]


def test_unknown_hub_name_gets_a_clear_error(make_checkpoint, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = "import interp; interp.load_pair('interp-test/missing', 'interp-test/missing')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "CheckpointNotFoundError" in out.stderr and "could not load the config and tokenizer" in out.stderr
