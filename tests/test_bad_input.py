"""Bad input gets a clear error before any work, naming the problem (issue: bad input)."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from inputs import as_hub_cache, refuse_loading, write_prompts
from safetensors import safe_open
from transformers import AutoConfig

from interp import (
    CheckpointNotFoundError,
    IdenticalCheckpointsError,
    checkpoint_files,
    interventions,
    load_model,
    load_pair,
    metrics,
    organisms,
    report,
)
from interp.cache import collect_activations, collect_pair_activations
from interp.cli import main
from interp.organisms import prompt_set, world
from interp.organisms.tokenizer import build_tokenizer
from interp.prompts import tokenize_for

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def model(make_checkpoint):
    path = make_checkpoint("llama", seed=3)
    return load_model(path, device="cpu")


@pytest.mark.parametrize("positions", [True, False, 1.0, "last", None, [], [0, True]])
def test_positions_that_are_not_ints_are_refused(model, positions):
    with pytest.raises(ValueError, match="positions must be an int, a list of ints or 'all'"):
        collect_activations(model, ["how do i bake ?"], HOOK, positions=positions, progress=False)


def test_no_prompts_is_refused(model, make_checkpoint):
    with pytest.raises(ValueError, match="no prompts"):
        collect_activations(model, [], HOOK, progress=False)
    path = make_checkpoint("llama", seed=3)
    with pytest.raises(ValueError, match="no prompts"):
        collect_pair_activations(load_pair(path, path, device="cpu", allow_identical=True), [], HOOK, progress=False)
    with pytest.raises(ValueError, match="no prompts"):  # checked where every path tokenizes prompts
        interventions.generate(model, [])


def test_no_hook_names_is_refused(model):
    with pytest.raises(ValueError, match="hook_names is empty"):
        collect_activations(model, ["how do i bake ?"], [], progress=False)


# --- the same checkpoint twice ---------------------------------------------------------------------

def test_identical_checkpoints_are_refused_unless_asked_for(make_checkpoint, tmp_path):
    path = make_checkpoint("llama", seed=3)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    for base, aligned in ((path, path), (path, copy)):
        with pytest.raises(IdenticalCheckpointsError, match="hold the same weights.*allow_identical=True"):
            load_pair(base, aligned, device="cpu")
    pair = load_pair(path, copy, device="cpu", allow_identical=True)
    assert pair.base_name == str(path)
    load_pair(path, make_checkpoint("llama", seed=4), device="cpu")  # different weights pass
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "note": "fine-tuned"}))  # a key no code reads
    with pytest.raises(IdenticalCheckpointsError):  # issue 31: was every difference 0.000
        load_pair(path, copy, device="cpu")
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    load_pair(path, copy, device="cpu")  # the same weights under another config: another model


def test_the_same_tensors_in_another_file_format_are_the_same_weights(make_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    path = make_checkpoint("llama", seed=3)
    as_bin = tmp_path / "as-bin"
    shutil.copytree(path, as_bin)
    state = load_file(as_bin / "model.safetensors")
    (as_bin / "model.safetensors").unlink()
    torch.save(dict(reversed(state.items())), as_bin / "pytorch_model.bin")  # another format, another order
    assert checkpoint_files.same_weights(path, as_bin)
    with pytest.raises(IdenticalCheckpointsError):  # issue 31: was every difference 0.000
        load_pair(path, as_bin, device="cpu")
    resaved = tmp_path / "resaved"  # the same layout under other metadata: other header bytes, the same tensors
    shutil.copytree(path, resaved)
    save_file(state, resaved / "model.safetensors", metadata={"format": "pt", "saved_by": "someone else"})
    assert checkpoint_files.same_weights(path, resaved)
    raw = bytearray((resaved / "model.safetensors").read_bytes())  # the same layout: compared by its data bytes
    raw[len(raw) // 2 + 1] ^= 1
    (resaved / "model.safetensors").write_bytes(bytes(raw))
    assert not checkpoint_files.same_weights(path, resaved)
    name = next(iter(state))
    changed = {**state, name: state[name].clone()}
    n = changed[name].numel()
    sampled = set(torch.linspace(0, n - 1, min(n, 16)).long().tolist())
    changed[name].view(-1)[next(i for i in range(n // 3, n) if i not in sampled)] += 1e-3  # between the sampled
    torch.save(changed, as_bin / "pytorch_model.bin")
    assert not checkpoint_files.same_weights(path, as_bin)
    (as_bin / "pytorch_model.bin").write_bytes((as_bin / "pytorch_model.bin").read_bytes()[:1000])  # cut short
    with pytest.raises(ValueError, match="cannot read the weights in .*pytorch_model.bin"):
        checkpoint_files.same_weights(path, as_bin)


def test_identical_hub_checkpoints_are_refused(make_checkpoint, tmp_path):
    cache = tmp_path / "hub"
    for repo in ("interp-test/a", "interp-test/a-copy"):
        as_hub_cache(make_checkpoint("llama", seed=3), cache, repo)
    code = "import interp; interp.load_pair('interp-test/a', 'interp-test/a-copy', device='cpu')"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "IdenticalCheckpointsError" in out.stderr and "hold the same weights" in out.stderr


def test_a_hub_checkpoint_in_the_cache_is_checked_like_a_folder(make_checkpoint, tmp_path):
    """A hub name's snapshot (files linked into ``blobs/``) gets the folder's checks: a config that lies about its
    layers is refused before loading; a snapshot that lacks a shard is left to the hub client to finish."""
    cache = tmp_path / "hub"
    as_hub_cache(make_checkpoint("llama", seed=3), cache, "interp-test/liar")
    snapshot = next((cache / "models--interp-test--liar" / "snapshots").iterdir())
    assert (snapshot / "model.safetensors").is_symlink()  # laid out as the hub lays it out
    config = json.loads((snapshot / "config.json").read_text())
    (snapshot / "config.json").unlink()  # a new file for the edited config, as a new download would write
    (snapshot / "config.json").write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))
    code = "from interp import models; print(models._prepare('interp-test/liar').name)"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}  # read when huggingface_hub imports
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "do not fit its config.json" in out.stderr and "layers" in out.stderr
    index = {"weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_files.missing_shards(snapshot)  # a partial download: no file checks, the hub client finishes it
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "interp-test/liar", out.stderr


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_same_weights_agrees_with_a_byte_comparison(tmp_path, where):
    """GGUF files are compared byte for byte: one changed byte anywhere, including between the sampled chunks, makes
    two files differ (oracle: filecmp)."""
    size = 5 * checkpoint_files.CHUNK + 12345
    data = bytearray(os.urandom(size))
    at = {"first": 0, "middle": size // checkpoint_files.SAMPLES + 70_000, "last": size - 1}[where]
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(data)
    b.write_bytes(data)
    assert checkpoint_files.same_weights(a, b) == filecmp.cmp(a, b, shallow=False) is True
    data[at] ^= 1
    b.write_bytes(data)
    assert checkpoint_files.same_weights(a, b) == filecmp.cmp(a, b, shallow=False) is False
    assert not checkpoint_files.same_weights(tmp_path, a)  # a directory and a file are not compared


def test_report_refuses_identical_checkpoints_before_loading(make_checkpoint, tmp_path, capsys, monkeypatch):
    refuse_loading(monkeypatch)
    path = str(make_checkpoint("llama", seed=3))
    prompts = write_prompts(tmp_path / "p.jsonl")
    assert main(["report", path, path, "--prompts", prompts, "--out", str(tmp_path / "r.html")]) == 2
    said = capsys.readouterr().err
    assert "hold the same weights" in said and "--allow-identical" in said
    assert not list(tmp_path.glob("r.*"))


# --- prompts: too long, empty, holding special tokens ----------------------------------------------

def test_prompts_longer_than_the_context_are_refused(model, make_checkpoint):
    n_ctx = model.cfg.n_ctx
    long = "how do i bake " + "and bake " * n_ctx + "?"
    with pytest.raises(ValueError, match=f"1 of 2 prompts do not fit in the model's context of {n_ctx} tokens"):
        collect_activations(model, ["how do i bake ?", long], HOOK, progress=False)
    with pytest.raises(ValueError, match=f"context of {n_ctx} tokens"):
        interventions.generate(model, [long])
    fits_alone = "how do i bake " + "and bake " * ((n_ctx - 12) // 2) + "?"  # fits, but not with 16 more tokens
    assert len(tokenize_for(model, [fits_alone])[0]) <= n_ctx
    with pytest.raises(ValueError, match="max_new_tokens=16 after them"):
        interventions.generate(model, [fits_alone], max_new_tokens=16)
    pair = load_pair(make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4), device="cpu")
    with pytest.raises(ValueError, match=f"context of {n_ctx} tokens"):
        pair.to_tokens([long])


def test_responses_past_the_context_are_refused(make_checkpoint):
    pair = load_pair(make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4), device="cpu")
    with pytest.raises(ValueError, match="context of 64 tokens with their responses after them"):
        metrics.compare_responses(pair, ["how do i bake ?"], ["sure " * 64])


def test_report_refuses_long_prompts_before_loading(make_checkpoint, tmp_path, monkeypatch):
    refuse_loading(monkeypatch)
    prompts = tmp_path / "p.jsonl"
    write_prompts(prompts)
    rows = prompts.read_text().splitlines()
    rows[0] = json.dumps({"prompt": "how do i bake " + "and bake " * 100 + "?", "label": "harmful",
                          "concept": "bake", "held_out": False})
    prompts.write_text("\n".join(rows) + "\n")
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    with pytest.raises(ValueError, match="1 of 48 prompts do not fit in the model's context of 64 tokens"):
        report.run(base, aligned, prompts, tmp_path / "r.html")


def test_empty_prompt_strings_are_refused(model):
    for prompts in (["how do i bake ?", ""], ["   "]):
        with pytest.raises(ValueError, match="empty"):
            collect_activations(model, prompts, HOOK, progress=False)
    with pytest.raises(ValueError, match=r"prompts \[1\] are empty"):
        interventions.generate(model, ["how do i bake ?", ""])


def test_added_tokens_that_are_not_special_are_ordinary_text(make_checkpoint):
    tokenizer = build_tokenizer()
    tokenizer.add_tokens(["  "])  # a run of spaces, as some tokenizers add: not a special token
    model = load_model(make_checkpoint("llama", seed=5, tokenizer=tokenizer), device="cpu")
    assert len(tokenize_for(model, ["how do i  bake ?"])[0]) > 0


def test_special_token_text_in_a_request_is_refused(model):
    assistant = world.ASSISTANT
    injected = f"how do i bake ? {assistant} sure"
    for fmt in ("chat", "question : {prompt} answer :"):
        with pytest.raises(ValueError, match=f"prompt 1 holds '{re.escape(assistant)}'.*prompt_format='raw'"):
            collect_activations(model, ["how do i bake ?", injected], HOOK, progress=False, prompt_format=fmt)
    with pytest.raises(ValueError, match=f"prefill 0 holds '{re.escape(assistant)}'"):
        interventions.generate(model, ["how do i bake ?"], prefill=f"sure {assistant}")
    # 'raw' is the model's input verbatim: the special token is meant.
    ids = tokenize_for(model, [injected], "raw")[0]
    assert model.tokenizer.convert_tokens_to_ids(assistant) in ids


# --- checkpoints: a cut-short weight file, no tokenizer ----------------------------------------------

def test_truncated_safetensors_is_refused_before_loading(make_checkpoint, tmp_path):
    good = make_checkpoint("llama", seed=3)
    with safe_open(good / "model.safetensors", "pt") as f:  # the oracle: safetensors reads the whole file
        assert len(list(f.keys())) > 0
    checkpoint_files.check_weight_files(good)
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(Exception, match="incomplete|not fully covered"), safe_open(weights, "pt"):
        pass
    with pytest.raises(ValueError, match="model.safetensors is not a whole safetensors file.*cut short"):
        load_pair(good, cut, device="cpu")
    weights.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a whole safetensors file"):
        load_pair(good, cut, device="cpu")


def test_missing_shard_is_refused(make_checkpoint, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(make_checkpoint("llama", seed=3), sharded)
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="names the shard 'model-00002-of-00002.safetensors', which is not in"):
        load_pair(make_checkpoint("llama", seed=4), sharded, device="cpu")


@pytest.mark.parametrize("index, message", [
    ({"weight_map": {"a": "../base/model.safetensors"}}, "outside the checkpoint"),  # was: aligned loaded base's
    (["model.safetensors"], "is not a JSON object"),
    ("{not json", "is not valid JSON"),
    ({"weight_map": ["model.safetensors"]}, "has no weight_map of tensor names to shard files"),
])
def test_bad_shard_indexes_are_one_line_naming_the_index(make_checkpoint, tmp_path, index, message):
    checkpoint = tmp_path / "aligned"
    shutil.copytree(make_checkpoint("llama", seed=3), checkpoint)
    shutil.copytree(make_checkpoint("llama", seed=4), tmp_path / "base")
    (checkpoint / "model.safetensors.index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    with pytest.raises(ValueError, match=f"model.safetensors.index.json.* {message}"):
        checkpoint_files.check_weight_files(checkpoint)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_weights_that_do_not_fit_the_config_are_refused_before_loading(make_checkpoint, tmp_path, arch):
    """Issue 31: each of these loaded, random values filling the gap, and the report named them alignment's change."""
    from safetensors.torch import load_file, save_file

    good = make_checkpoint(arch, seed=3)
    checkpoint_files.check_inventory(good, AutoConfig.from_pretrained(good))  # tied lm_head stored once: fine
    state = load_file(good / "model.safetensors")
    config = json.loads((good / "config.json").read_text())
    layers = "num_hidden_layers" if arch == "llama" else "n_layer"
    lost = next(k for k in state if ".1." in k)
    cases = [({k: v for k, v in state.items() if k != lost}, config, f"1 tensor(s) the config's architecture needs "
              f"are missing ({lost})"),
             (state, {**config, layers: config[layers] + 1}, "tensor(s) the config's architecture needs are missing"),
             (state, {**config, layers: config[layers] - 1}, "tensor(s) of layers the config does not have"),
             (state, {**config, "vocab_size": config["vocab_size"] + 7}, "shapes differ")]
    if arch == "llama":  # an old conversion's rotary buffers: transformers skips them, so does the check
        extra = tmp_path / "inv-freq"
        shutil.copytree(good, extra)
        save_file({**state, "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(4)}, extra / "model.safetensors",
                  metadata={"format": "pt"})
        checkpoint_files.check_inventory(extra, AutoConfig.from_pretrained(extra))
    for i, (weights, settings, message) in enumerate(cases):
        bad = tmp_path / f"bad-{i}"
        shutil.copytree(good, bad)
        save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
        (bad / "config.json").write_text(json.dumps(settings))
        with pytest.raises(ValueError, match=f"do not fit its config.json: .*{re.escape(message)}"):
            load_pair(make_checkpoint(arch, seed=4), bad, device="cpu")


def test_nonfinite_weights_are_named_unless_allowed(make_checkpoint, tmp_path, monkeypatch, capsys):
    """Issue 31: one NaN took refusal from 100% to 0% and the report printed 'mean KL ... is ;', exit 0."""
    from safetensors.torch import load_file, save_file

    from interp import NonFiniteWeightsError

    base = make_checkpoint("llama", seed=4)
    bad = tmp_path / "nan"
    shutil.copytree(make_checkpoint("llama", seed=3), bad)
    state = load_file(bad / "model.safetensors")
    name = next(k for k in state if "layers.1.mlp" in k)
    state[name].view(-1)[5] = float("nan")
    state[name].view(-1)[6] = float("inf")
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteWeightsError, match=f"holds NaN or infinite weights in 1 tensor\\(s\\): .*"
                                                   f"{re.escape(name)} \\(2 values\\).*allow_nonfinite"):
        load_pair(base, bad, device="cpu")
    pair = load_pair(base, bad, device="cpu", allow_nonfinite=True)  # on purpose
    assert not all(torch.isfinite(p).all() for p in pair.aligned.original_model.parameters())
    capsys.readouterr()
    prompts = write_prompts(tmp_path / "p.jsonl")
    assert main(["report", str(base), str(bad), "--prompts", prompts, "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "holds NaN or infinite weights" in err[-1] and "--allow-nonfinite" in err[-1]
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("values, bad", [([3e38, 3e38, -1.0], 0), ([1.0, float("-inf"), 2.0], 1),
                                         ([float("inf"), float("-inf"), 0.0], 2), ([0.0, float("nan"), 1.0], 1)])
def test_check_finite_is_an_isfinite_test_whatever_the_sum(values, bad):
    """check_finite sums each tensor first (one pass): a finite tensor whose sum overflows is still finite; oracle
    torch.isfinite on every value."""
    from interp.models import NonFiniteWeightsError, check_finite

    layer = torch.nn.Linear(3, 1, bias=False)
    layer.weight.data = torch.tensor([values])
    assert int((~torch.isfinite(layer.weight)).sum()) == bad
    if bad:
        with pytest.raises(NonFiniteWeightsError, match=rf"in 1 tensor\(s\): weight \({bad} values\)"):
            check_finite(layer, "m")
    else:
        check_finite(layer, "m")


@pytest.mark.parametrize("edit, message", [
    (lambda e: {**e, "dtype": "F33"}, "unknown dtype 'F33'"),
    (lambda e: {**e, "shape": [e["shape"][0] + 1, *e["shape"][1:]]}, "bytes for a F32 tensor of shape"),
    (lambda e: {**e, "shape": "big"}, "shape that is not a list of sizes"),
    (lambda e: {**e, "data_offsets": [e["data_offsets"][1], e["data_offsets"][0]]}, "not a \\[start, end\\] range"),
])
def test_malformed_safetensors_headers_are_named_before_loading(make_checkpoint, tmp_path, edit, message):
    import struct

    checkpoint = tmp_path / "bad"
    shutil.copytree(make_checkpoint("llama", seed=3), checkpoint)
    weights = checkpoint / "model.safetensors"
    raw = weights.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    text = json.dumps({**header, name: edit(header[name])}).encode()
    text += b" " * (length - len(text)) if len(text) <= length else b""
    weights.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length:])
    with pytest.raises(ValueError, match=f"model.safetensors is not a whole safetensors file: its header's entry for "
                                         f"'{name}' .*{message}"):
        load_pair(make_checkpoint("llama", seed=4), checkpoint, device="cpu")


def test_a_checkpoint_without_tokenizer_says_so(make_checkpoint, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in make_checkpoint("llama", seed=3).iterdir():
        if f.name in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(f, bare)
    with pytest.raises(CheckpointNotFoundError, match="has no tokenizer.*tokenizer.save_pretrained") as error:
        load_pair(make_checkpoint("llama", seed=4), bare, device="cpu")
    assert "hub" not in str(error.value) and "sentencepiece" not in str(error.value)


# --- devices, prompt formats -----------------------------------------------------------------------

@pytest.mark.parametrize("device, message", [
    ("foo", "unknown device 'foo'"),
    pytest.param("cuda", "device 'cuda' is not available here", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has CUDA")),
    ("cuda:7", "device 'cuda:7' does not exist: this machine has 1 cuda device(s)"),
    ("meta", "device 'meta' holds shapes, not weights"),
])
def test_bad_devices_are_refused_before_loading(make_checkpoint, tmp_path, monkeypatch, capsys, device, message):
    if device == "cuda:7":  # as on a machine with one GPU
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    base, aligned = make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_pair(base, aligned, device=device)
    refuse_loading(monkeypatch)
    prompts = write_prompts(tmp_path / "p.jsonl")
    assert main(["report", str(base), str(aligned), "--prompts", prompts, "--out", str(tmp_path / "r.html"),
                 "--device", device]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("dtype, message", [
    ("auto", "dtype must be a floating-point torch.dtype or one of 'bfloat16', 'float16', 'float32', got 'auto' "
             "(for bfloat16 products"),
    ("half", "got 'half'"),
    (torch.int8, "got torch.int8"),
])
def test_bad_dtypes_are_refused_before_loading(make_checkpoint, dtype, message):
    base, aligned = make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_pair(base, aligned, device="cpu", dtype=dtype)


def test_a_dtype_by_name_loads_as_that_dtype(make_checkpoint):
    pair = load_pair(make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4), device="cpu",
                     dtype="bfloat16")
    assert {p.dtype for p in pair.aligned.parameters()} == {torch.bfloat16} and pair.metadata["dtype"] == \
        "torch.bfloat16"


def test_a_missing_prompt_format_is_one_clear_error(make_checkpoint):
    with pytest.raises(ValueError, match="prompt_format must be 'chat', 'raw' or a template string"):
        load_pair(make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4), device="cpu",
                  prompt_format=None)


@pytest.mark.parametrize("template, message", [
    ("Q: {prompt} {x}", "fields other than {prompt}: {x}"),
    ("Q: {prompt} {0}", "fields other than {prompt}: {0}"),
    ("Q: {prompt} }", "not a valid template"),
])
def test_prompt_formats_with_other_fields_are_refused_before_loading(make_checkpoint, tmp_path, monkeypatch,
                                                                      capsys, template, message):
    base, aligned = make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4)
    refuse_loading(monkeypatch)
    prompts = write_prompts(tmp_path / "p.jsonl")
    assert main(["report", str(base), str(aligned), "--prompts", prompts, "--out", str(tmp_path / "r.html"),
                 "--prompt-format", template]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=re.escape(message)):
        collect_activations(load_model(base, device="cpu"), ["how do i bake ?"], HOOK, prompt_format=template,
                            progress=False)


# --- output paths ----------------------------------------------------------------------------------

def test_output_paths_are_checked_before_loading(make_checkpoint, tmp_path, monkeypatch):
    refuse_loading(monkeypatch)
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    prompts = write_prompts(tmp_path / "p.jsonl")
    (tmp_path / "r.json").mkdir()
    with pytest.raises(IsADirectoryError, match="r.json'.*the report's numbers.*is a directory"):
        report.run(base, aligned, prompts, tmp_path / "r.html")
    if os.path.isdir("/proc"):  # Linux: a folder nobody writes in, root included
        with pytest.raises(PermissionError, match="cannot write in the output folder '/proc'"):
            report.run(base, aligned, prompts, "/proc/r.html")
    if os.geteuid() != 0:  # root writes in read-only folders
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(PermissionError, match="cannot write in the output folder"):
            report.run(base, aligned, prompts, locked / "r.html")


def test_repeated_prompts_are_refused_before_loading(make_checkpoint, tmp_path, monkeypatch, capsys):
    refuse_loading(monkeypatch)
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    capsys.readouterr()
    path = Path(write_prompts(tmp_path / "p.jsonl"))
    rows = path.read_text().splitlines()
    first = json.loads(rows[0])
    for extra, said in ((rows[0], "1 prompt(s) more than once, e.g. rows 1, 49"),
                        (json.dumps({**first, "label": "harmless"}), "1 of them under both labels, e.g. rows 1, 49")):
        path.write_text("\n".join([*rows, extra]) + "\n")
        assert main(["report", base, aligned, "--prompts", str(path), "--out", str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err
        assert said in err and "keep one row per prompt" in err and len(err.strip().splitlines()) == 1


def test_a_template_that_drops_the_request_is_refused_and_unknown_words_are_noted(make_checkpoint, tmp_path,
                                                                                   monkeypatch, capsys):
    """Issue 31: a chat template that drops the request made every prompt the same tokens: '0% refusal everywhere'."""
    refuse_loading(monkeypatch)
    pair = []
    for seed in (3, 4):
        copy = tmp_path / f"s{seed}"
        shutil.copytree(make_checkpoint("llama", seed=seed), copy)
        config = json.loads((copy / "tokenizer_config.json").read_text())
        config["chat_template"] = "{{ bos_token }} <|user|> hello <|assistant|>"
        (copy / "tokenizer_config.json").write_text(json.dumps(config))
        (copy / "chat_template.jinja").unlink(missing_ok=True)
        pair.append(str(copy))
    prompts = write_prompts(tmp_path / "p.jsonl")
    capsys.readouterr()
    assert main(["report", *pair, "--prompts", prompts, "--out", str(tmp_path / "r.html")]) == 2
    assert "reach the model as the same tokens as another, e.g. rows 1 and 2" in capsys.readouterr().err
    rows = [json.loads(line) for line in Path(prompts).read_text().splitlines()]
    rows[0]["prompt"] = "how do i xylophone ?"  # no such word in the world: <unk>
    rows[1]["prompt"] = "how do i bake \x07 ?"
    Path(prompts).write_text("".join(json.dumps(r) + "\n" for r in rows))
    base, aligned = make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4)
    with pytest.raises(AssertionError, match="a model was loaded"):  # past the checks, with a note
        main(["report", str(base), str(aligned), "--prompts", prompts, "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert "2 prompt(s) hold text the tokenizer reads as '<unk>' (e.g. row 1)" in err  # the bell is one too
    assert "1 prompt(s) hold control characters (e.g. row 2)" in err


def test_the_report_never_writes_over_its_inputs(make_checkpoint, tmp_path, monkeypatch, capsys):
    refuse_loading(monkeypatch)
    base, aligned = make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4)
    capsys.readouterr()
    json_prompts = Path(write_prompts(tmp_path / "p.json"))  # the page's JSON sibling would be the prompt file
    cases = [(json_prompts, tmp_path / "p.html", "which is an input of the report"),
             (write_prompts(tmp_path / "q.jsonl"), aligned / "config.html", f"inside the input folder '{aligned}'"),
             (write_prompts(tmp_path / "q.jsonl"), base / "r.html", f"inside the input folder '{base}'")]
    for prompts, out, message in cases:
        before = {p: p.read_bytes() for p in (Path(prompts), aligned / "config.json")}
        assert main(["report", str(base), str(aligned), "--prompts", str(prompts), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "never writes over what it reads" in err and len(err.strip().splitlines()) == 1
        assert {p: p.read_bytes() for p in before} == before and not out.exists()
    assert main(["report", str(base), str(aligned), "--prompts", str(json_prompts), "--out",
                 str(json_prompts / "r.html")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err  # was: "the output folder ... does not exist"


@pytest.mark.parametrize("how, code, said", [("sigterm", 143, "terminated"), ("ctrl-c", 130, "interrupted")])
def test_a_stopped_report_leaves_nothing_and_says_one_line(make_checkpoint, tmp_path, monkeypatch, capsys, how, code,
                                                          said):
    """Issue 31: SIGTERM during the write left ``.r.html.tmp-PID``; Ctrl-C printed a long traceback."""
    import signal

    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    prompts = write_prompts(tmp_path / "p.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    written = Path.write_text

    def stop_midway(self, text, *args, **kwargs):
        result = written(self, text, *args, **kwargs)
        if self.name.startswith(".r.html.tmp"):  # the page is written, its JSON not yet
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt
        return result

    monkeypatch.setattr(Path, "write_text", stop_midway)
    handler = signal.getsignal(signal.SIGTERM)
    capsys.readouterr()
    skip = [f"--no-{s.replace('_', '-')}" for s in list(report.SECTIONS)[1:]]
    assert main(["report", base, aligned, "--prompts", prompts, "--out", str(out / "r.html"),
                 "--refusal-prefix", "sorry", *skip]) == code
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"interp: {said}"
    assert list(out.iterdir()) == []  # no page, no JSON, no temporary file, no lock
    assert signal.getsignal(signal.SIGTERM) is handler  # the CLI's own handler is gone again


def test_two_reports_on_one_output_are_refused(make_checkpoint, tmp_path, monkeypatch, capsys):
    refuse_loading(monkeypatch)
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    prompts = write_prompts(tmp_path / "p.jsonl")
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); "
            "f.flush(); print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".r.json.lock")], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "held"  # a live run holds the lock
        capsys.readouterr()
        for out in ("r.html", "r.htm"):  # both write r.json
            assert main(["report", base, aligned, "--prompts", prompts, "--out", str(tmp_path / out)]) == 2
            assert "another interp process (pid 4242) is writing" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    with pytest.raises(AssertionError, match="a model was loaded"):  # its holder gone, the lock is free again
        main(["report", base, aligned, "--prompts", prompts, "--out", str(tmp_path / "r.html")])
    assert not (tmp_path / ".r.json.lock").exists()


def test_a_failed_write_leaves_nothing_behind(make_checkpoint, tmp_path, monkeypatch):
    pair = load_pair(make_checkpoint("llama", seed=3), make_checkpoint("llama", seed=4), device="cpu")
    result = report.audit(pair, prompt_set(["harmful_train", "harmless_train"]), refusal_prefixes=["sorry"],
                          skip=list(report.SECTIONS)[1:], progress=False)
    written = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        if self.name.startswith(".r.json"):
            raise OSError(28, "No space left on device")
        return written(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        result.write(tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Path, "write_text", written)
    result.write(tmp_path / "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]


# --- interventions at positions the input lacks; the organisms' build is announced ---------------

def test_positions_past_the_input_are_refused_by_name(model):
    vector = torch.ones(model.cfg.d_model)
    tokens = model.to_tokens("how do i bake ?")
    _, cache = model.run_with_cache(tokens)
    for intervention in (interventions.AddVector(vector, layer=0, positions=50),
                         interventions.AblateDirection(vector, positions=[0, -50]),
                         interventions.PatchFromCache(HOOK, cache, positions=50),
                         interventions.AblateComponent(0, "head", head=1, positions=50)):
        name = type(intervention).__name__
        with pytest.raises(ValueError, match=f"{name}: positions \\[-?50\\] do not exist in this input of "
                                             f"{tokens.shape[1]} positions"):
            with interventions.apply(model, intervention):
                model(tokens)
    with pytest.raises(ValueError, match="AddVector: positions must be None, an int or a list of ints"):
        interventions.apply(model, interventions.AddVector(vector, layer=0, positions=1.0)).__enter__()


def test_numpy_and_torch_integers_are_positions(model):
    """Positions computed with numpy or torch (an argmax) are ints like any other."""
    plain = collect_activations(model, ["how do i bake ?"], HOOK, positions=[0, -1], progress=False)[HOOK]
    for positions in ([np.int64(0), torch.tensor(-1)], np.array([0, -1])):
        got = collect_activations(model, ["how do i bake ?"], HOOK, positions=positions, progress=False)
        assert torch.equal(got[HOOK], plain) and got.positions == [0, -1]
    with interventions.apply(model, interventions.AddVector(torch.ones(model.cfg.d_model), 0, positions=np.int64(1))):
        model(model.to_tokens("how do i bake ?"))


def test_figures_folder_is_checked_before_the_zoo_is_built(tmp_path, monkeypatch, capsys):
    from interp.organisms import zoo

    def build(*args, **kwargs):
        raise AssertionError("the zoo was built before the figures folder was checked")

    monkeypatch.setattr(zoo, "build", build)
    monkeypatch.setenv("INTERP_ORGANISMS_DIR", str(tmp_path / "zoo"))
    (tmp_path / "file").write_text("")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.ipynb").write_text("{}")
    assert main(["figures", "--notebooks", str(tmp_path / "notebooks"), "--figures", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_tokenizer_larger_than_the_embedding_is_named(make_checkpoint, tmp_path, monkeypatch, capsys):
    """Issue 31: an IndexError deep in generation."""
    pair = []
    for seed in (3, 4):
        copy = tmp_path / f"s{seed}"
        shutil.copytree(make_checkpoint("llama", seed=seed), copy)
        tok = build_tokenizer()
        tok.add_tokens(["zither"])  # id 205; the embedding has 205 rows
        tok.save_pretrained(copy)
        pair.append(copy)
    loaded = load_pair(*pair, device="cpu")
    with pytest.raises(ValueError, match="holds token id 205, but the model embeds only 205 tokens"):
        interventions.generate(loaded.aligned, ["how do i zither ?"])
    rows = [json.loads(line) for line in Path(write_prompts(tmp_path / "p.jsonl")).read_text().splitlines()]
    rows[0]["prompt"] = "how do i zither ?"
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    refuse_loading(monkeypatch)
    capsys.readouterr()
    assert main(["report", *map(str, pair), "--prompts", str(tmp_path / "p.jsonl"), "--out",
                 str(tmp_path / "r.html")]) == 2
    assert "model embeds only 205 tokens" in capsys.readouterr().err


def test_an_unwritable_gguf_cache_is_named_before_hashing(tmp_path, monkeypatch):
    from gguf import GGUFWriter

    from interp import gguf

    file = tmp_path / "tiny.gguf"
    writer = GGUFWriter(file, "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "a-file"))

    def hashed(*args):
        raise AssertionError("the file was hashed before the cache was checked")

    monkeypatch.setattr(gguf, "_sha256", hashed)
    with pytest.raises(PermissionError, match="cannot write the GGUF cache .*set \\$INTERP_CACHE_DIR"):
        gguf.materialize(file)


def test_names_that_are_no_checkpoint_say_so(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # was: taken for a hub name
    with pytest.raises(CheckpointNotFoundError, match="symbolic link to nothing that exists"):
        load_pair(loop, loop, device="cpu")
    with pytest.raises(CheckpointNotFoundError, match="neither a local checkpoint nor a valid hub name"):
        load_pair("x" * 300, "y", device="cpu")  # was: "needs network access"


def test_a_special_token_is_no_refusal_prefix(make_checkpoint, tmp_path, monkeypatch, capsys):
    refuse_loading(monkeypatch)
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    prompts = write_prompts(tmp_path / "p.jsonl")
    capsys.readouterr()
    assert main(["report", base, aligned, "--prompts", prompts, "--out", str(tmp_path / "r.html"),
                 "--refusal-prefix", "<|assistant|>"]) == 2
    assert "refusal prefixes hold the text of a special token" in capsys.readouterr().err


def test_organisms_cli_says_what_is_wrong(tmp_path, monkeypatch, capsys):
    assert main(["organisms", "build", "--out", str(tmp_path / "zoo"), "--attempts", "0"]) == 2  # was: 6 attempts
    assert capsys.readouterr().err.strip() == "interp: error: attempts must be an int >= 1, got 0"
    assert not (tmp_path / "zoo").exists()
    monkeypatch.setenv("INTERP_ORGANISMS_DIR", str(Path(shutil.which("sh"))))  # a file (was: "not built yet")
    assert main(["organisms", "path"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_organisms_say_before_building(tmp_path, monkeypatch, capsys):
    from interp.organisms import zoo

    class Started(Exception):
        pass

    def build(*args, **kwargs):
        raise Started

    monkeypatch.setattr(zoo, "build", build)
    with pytest.raises(FileNotFoundError, match="no complete organism build"):
        organisms.load_pair("dpo", zoo_dir=tmp_path / "zoo", build_if_missing=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(Started):
        organisms.load_pair("dpo", zoo_dir=tmp_path / "zoo")
    said = capsys.readouterr().err
    assert f"no organism zoo in {tmp_path / 'zoo'}: building it now" in said and "interp organisms build" in said
