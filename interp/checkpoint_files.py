"""What a checkpoint's files say before any weights load: are they whole, and are two checkpoints the same.

A truncated or damaged ``.safetensors`` file (an interrupted download or copy) is found from
its header alone: the header lists every tensor's byte range, and the file must hold exactly
that many bytes. Two checkpoints are *the same* when they hold the same weight files, byte for
byte; a comparison of sampled chunks tells almost every pair of different checkpoints apart
without reading them whole, and only a pair that passes it is compared in full.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "model.safetensors").write_bytes(b"too short")
9
>>> check_weight_files(folder)  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: ...model.safetensors is not a whole safetensors file: it holds 9 bytes, too few for the header ...
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
CHUNK = 1 << 20
SAMPLES = 64


def weight_files(checkpoint: str | os.PathLike) -> list[Path]:
    """The weight files of a checkpoint directory (top level), or the file itself (a ``.gguf``)."""
    path = Path(checkpoint)
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _damaged(file: Path, why: str) -> ValueError:
    return ValueError(f"{file} is not a whole safetensors file: {why}; it is damaged or was cut short "
                      "(copy or download it again)")


def check_safetensors(file: Path) -> None:
    """The file holds exactly the bytes its header describes (reads the header only)."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8 or size < 8 + struct.unpack("<Q", head)[0]:
            raise _damaged(file, f"it holds {size} bytes, too few for the header it announces")
        (length,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _damaged(file, f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise _damaged(file, "its header is not a JSON object")
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise _damaged(file, f"its header describes {expected} bytes, the file holds {size}")


def check_weight_files(checkpoint: str | os.PathLike) -> None:
    """Every ``.safetensors`` file of a checkpoint directory is whole, and every shard its index names exists."""
    path = Path(checkpoint)
    if not path.is_dir():
        return
    for index in path.glob("*.safetensors.index.json"):
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise ValueError(f"{index} names shards that are not in {path}: {', '.join(missing)} "
                             "(copy or download them again)")
    for file in path.glob("*.safetensors"):
        check_safetensors(file)


def _chunks_equal(a, b, offset: int, size: int) -> bool:
    a.seek(offset)
    b.seek(offset)
    return a.read(size) == b.read(size)


def files_equal(first: Path, second: Path) -> bool:
    """Whether two files hold the same bytes: sizes, then :data:`SAMPLES` chunks spread over the
    files (different weights almost always differ there), then, only if all agree, every byte."""
    size = first.stat().st_size
    if second.stat().st_size != size:
        return False
    with first.open("rb") as a, second.open("rb") as b:
        offsets = {size * i // SAMPLES for i in range(SAMPLES)}
        if not all(_chunks_equal(a, b, offset, 1 << 16) for offset in sorted(offsets)):
            return False
        return all(_chunks_equal(a, b, offset, CHUNK) for offset in range(0, size, CHUNK))


def same_weights(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two local checkpoints (directories or GGUF files) hold the same weight files, byte for byte.

    Two checkpoints without weight files are not called the same.
    """
    a, b = Path(first), Path(second)
    if a.exists() and b.exists() and os.path.samefile(a, b):
        return True
    files_a, files_b = weight_files(a), weight_files(b)
    if not files_a or (a.is_dir() and [f.name for f in files_a] != [f.name for f in files_b]) or \
            len(files_a) != len(files_b):
        return False
    return all(files_equal(x, y) for x, y in zip(files_a, files_b, strict=True))
