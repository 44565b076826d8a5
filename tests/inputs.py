"""Inputs the tests share: prompt files, a hub cache laid out on disk, a guard against loading models."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from interp import report
from interp.organisms import world


def write_prompts(path, n_train: int = 16, n_held: int = 8) -> str:
    """A prompt file from the organism world: ``n_train`` fitting and ``n_held`` held-out prompts per label."""
    rows = [{"prompt": p.text, "label": p.label, "concept": p.concept, "held_out": p.held_out}
            for split, n in (("harmful_train", n_train), ("harmless_train", n_train),
                             ("harmful_held_out", n_held), ("harmless_held_out", n_held))
            for p in world.prompts(split)[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def as_hub_cache(checkpoint, cache, repo_id: str) -> None:
    """Lay a local checkpoint out as the Hugging Face hub cache holds a downloaded repo: each file in ``blobs/``
    under its hash, linked from the snapshot by a relative symbolic link (``../../blobs/HASH``)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    for file in sorted(p for p in Path(checkpoint).rglob("*") if p.is_file()):
        blob = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / blob)
        link = snapshot / file.relative_to(checkpoint)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


def refuse_loading(monkeypatch) -> None:
    """Make any attempt by the report to load a model fail the test: errors must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(report, "load_checked", refuse)
