"""Damaged checkpoints and prompt files drawn by a seeded generator (issue 31, item 7): each is a clear error, one
line, before any weights are trusted, or it loads as a model whose every tensor is present and finite (a changed byte
inside a weight's data is another model, not damage anyone can see)."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
from inputs import refuse_loading, write_prompts

from interp import CheckpointNotFoundError, load_pair
from interp.cli import main

CLEAR = (ValueError, OSError, CheckpointNotFoundError)


def _damage(rng: random.Random, folder: Path) -> str:
    """One random damage to a copied checkpoint; returns what was done."""
    weights, config = folder / "model.safetensors", folder / "config.json"
    raw = weights.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    kind = rng.choice(["truncate", "header-byte", "data-byte", "config-key", "config-size", "index", "empty",
                       "tokenizer"])
    if kind == "truncate":
        weights.write_bytes(raw[:rng.randrange(0, len(raw))])
    elif kind == "header-byte":
        at = rng.randrange(8, 8 + length)
        weights.write_bytes(raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1:])
    elif kind == "data-byte":
        at = rng.randrange(8 + length, len(raw))
        weights.write_bytes(raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1:])
    elif kind in ("config-key", "config-size"):
        settings = json.loads(config.read_text())
        key = rng.choice(["num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads"]
                         if kind == "config-size" else ["max_position_embeddings", "rms_norm_eps", "note"])
        settings[key] = rng.choice([0, 1, 3, 7, 64, -1, None, "x", 1e-9])
        config.write_text(json.dumps(settings))
    elif kind == "index":
        (folder / "model.safetensors.index.json").write_text(rng.choice(
            ['{"weight_map": {"a": "../x.safetensors"}}', "[1, 2]", "{", '{"weight_map": 3}',
             '{"weight_map": {"a": "missing.safetensors"}}']))
    elif kind == "empty":
        weights.write_bytes(b"")
    else:
        (folder / "tokenizer.json").write_text(rng.choice(["{", "[]", '{"model": 1}', ""]))
    return kind


@pytest.mark.parametrize("seed", range(48))
def test_damaged_checkpoints_are_a_clear_error_or_a_whole_model(make_checkpoint, tmp_path, seed):
    rng = random.Random(seed)
    damaged = tmp_path / "damaged"
    shutil.copytree(make_checkpoint("llama", seed=3), damaged)
    kind = _damage(rng, damaged)
    try:
        pair = load_pair(make_checkpoint("llama", seed=4), damaged, device="cpu")
    except CLEAR as e:
        assert str(e).strip() and "\n" not in str(e).strip(), (kind, e)  # one line...
        assert str(damaged) in str(e) or "aligned" in str(e), (kind, e)  # ...naming the damaged checkpoint
        return
    # it loaded: then nothing may be missing or non-finite (a changed data byte is another, whole model)
    assert kind in ("data-byte", "config-key"), f"{kind} damage loaded"
    assert all(torch.isfinite(p).all() for p in pair.aligned.original_model.parameters())


@pytest.mark.parametrize("seed", range(32))
def test_damaged_prompt_files_are_one_line_or_pass_the_checks(make_checkpoint, tmp_path, monkeypatch, capsys, seed):
    rng = random.Random(seed)
    refuse_loading(monkeypatch)
    base, aligned = str(make_checkpoint("llama", seed=3)), str(make_checkpoint("llama", seed=4))
    good = Path(write_prompts(tmp_path / "p.jsonl")).read_bytes()
    suffix = rng.choice([".jsonl", ".csv"])
    if suffix == ".csv":
        rows = [json.loads(line) for line in good.decode().splitlines()]
        good = ("prompt,label,concept,held_out\n" + "".join(
            f'"{r["prompt"]}",{r["label"]},{r["concept"]},{r["held_out"]}\n' for r in rows)).encode()
    data = bytearray(good)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data))
        action = rng.choice(["cut", "flip", "insert", "bom"])
        if action == "cut":
            data = data[:at]
        elif action == "flip":
            data[at] = rng.randrange(256)
        elif action == "insert":
            data[at:at] = rng.choice([b'"', b",", b"\n", b"\x00", "\u2028".encode(), b"{", b"\r\n"])
        else:
            data = bytearray(b"\xef\xbb\xbf") + data
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(bytes(data))
    capsys.readouterr()
    try:
        code = main(["report", base, aligned, "--prompts", str(path), "--out", str(tmp_path / "r.html")])
    except AssertionError as e:  # refuse_loading: the file passed every check, as a valid file may
        assert "a model was loaded" in str(e)
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err and err[-1].startswith("interp: error: ") and "Traceback" not in "\n".join(err)
