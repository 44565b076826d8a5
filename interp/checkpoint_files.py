"""What a checkpoint's files say before any weights load: are they whole, and are two checkpoints the same.

A truncated or damaged ``.safetensors`` file (an interrupted copy) is found from its header
alone: the header lists every tensor's byte range, and the file must hold exactly that many
bytes. Two checkpoints hold *the same weights* when the weight files transformers loads
(``model*.safetensors``, else ``pytorch_model*.bin``) hold the same tensors, whatever the format,
sharding or order (two ``.gguf`` files: the same bytes); a few values of every tensor tell almost
every pair of different checkpoints apart, and only a pair that passes is compared in full.
Configs are not compared here (:func:`interp.models.check_not_identical` does).

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
import re
import struct
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import torch

WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
"""The weight files transformers loads from a checkpoint directory, in order of preference."""
CHUNK = 1 << 20
SAMPLES = 64


def weight_files(checkpoint: str | os.PathLike) -> list[Path]:
    """The weight files of a checkpoint directory (the first of :data:`WEIGHT_PATTERNS` that matches), or the
    file itself (a ``.gguf``)."""
    path = Path(checkpoint)
    if path.is_file():
        return [path]
    for pattern in WEIGHT_PATTERNS:
        found = sorted(p for p in path.glob(pattern) if p.is_file())
        if found:
            return found
    return []


DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1, "F8_E8M0": 1, "U16": 2, "U32": 4,
               "U64": 8, "C64": 8}
"""Bytes per element of each safetensors dtype."""
PACKED_DTYPES = ("F4", "F6_E2M3", "F6_E3M2")
"""Safetensors dtypes of less than a byte an element: known, their byte ranges not checked here."""


def _bad_entry(entry) -> str | None:
    """What is wrong with one tensor's safetensors header entry (dtype, shape, data_offsets that hold exactly
    the tensor), or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES and dtype not in PACKED_DTYPES:
        return f"has an unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        return f"has a shape that is not a list of sizes: {shape!r}"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        return f"has data_offsets that are not a [start, end] range: {offsets!r}"
    numel = 1
    for n in shape:
        numel *= n
    if dtype in DTYPE_BYTES and offsets[1] - offsets[0] != numel * DTYPE_BYTES[dtype]:
        return (f"has {offsets[1] - offsets[0]} bytes for a {dtype} tensor of shape {shape} "
                f"({numel * DTYPE_BYTES[dtype]} needed)")
    return None


def _damaged(file: Path, why: str) -> ValueError:
    return ValueError(f"{file} is not a whole safetensors file: {why}; it is damaged or was cut short "
                      "(copy or download it again)")


def check_safetensors(file: Path) -> dict:
    """The file holds exactly the bytes its header describes (reads the header only); its header, less
    ``__metadata__``."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else size
        if size < 8 + length:
            raise _damaged(file, f"it holds {size} bytes, too few for the header it announces")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _damaged(file, f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise _damaged(file, "its header is not a JSON object")
    entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, entry in entries.items():
        why = _bad_entry(entry)
        if why:
            raise _damaged(file, f"its header's entry for {name!r} {why}")
    ends = [entry["data_offsets"][1] for entry in entries.values()]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise _damaged(file, f"its header describes {expected} bytes, the file holds {size}")
    return entries


def check_weight_files(checkpoint: str | os.PathLike) -> None:
    """Every ``.safetensors`` file of a checkpoint directory is whole, and every shard its index names exists."""
    path = Path(checkpoint)
    if not path.is_dir():
        return
    if missing := missing_shards(path):
        index, shard = missing[0]
        raise ValueError(f"{index} names the shard {shard!r}, which is not in {path} (copy or download it again)")
    for file in path.glob("*.safetensors"):
        check_safetensors(file)


def missing_shards(checkpoint: Path) -> list[tuple[Path, str]]:
    """``(index, shard)`` for each shard a checkpoint directory's index names that is not there; a shard named
    outside the checkpoint (an absolute path, ``..``) is a ``ValueError``."""
    missing = []
    for index in [*checkpoint.glob("*.safetensors.index.json"), *checkpoint.glob("pytorch_model*.bin.index.json")]:
        for shard in _shards(index):
            if PurePosixPath(shard).is_absolute() or ".." in PurePosixPath(shard).parts:  # not resolve(): a hub
                # snapshot links every file into ../../blobs
                raise ValueError(f"{index} names the shard {shard!r}, outside the checkpoint {checkpoint}: a "
                                 "checkpoint's weights must be its own files")
            if not (checkpoint / shard).is_file():
                missing.append((index, shard))
    return missing


def _shards(index: Path) -> list[str]:
    """The shard files a checkpoint's index names, or a ``ValueError`` naming the index when it is malformed."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        why = "is not a JSON object" if isinstance(e, AttributeError) else f"is not valid JSON ({e})"
        raise ValueError(f"the shard index {index} {why}; copy or download it again") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"the shard index {index} has no weight_map of tensor names to shard files")
    return sorted(set(weight_map.values()))


def _equal_at(first: Path, second: Path, offsets, size: int, shift: tuple[int, int] = (0, 0)) -> bool:
    """Whether two files hold the same ``size`` bytes at each of ``offsets`` (past ``shift`` bytes of each)."""
    with first.open("rb") as a, second.open("rb") as b:
        for offset in offsets:
            a.seek(shift[0] + offset)
            b.seek(shift[1] + offset)
            if a.read(size) != b.read(size):
                return False
    return True


def _data_start(file: Path) -> int:
    """Where a safetensors file's tensor bytes begin (after its 8-byte length and its header)."""
    with file.open("rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def same_weights(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two local checkpoints, both directories or both GGUF files, hold the same weights: the same tensors
    (names, shapes, dtypes, every value), whatever files hold them (``model.safetensors`` or ``pytorch_model.bin``,
    shards or one file, any order); two GGUF files, byte for byte. Files of one safetensors layout are compared by
    their data bytes (sampled chunks first); otherwise tensor by tensor, the first row of every tensor first
    (different weights almost always differ there), every value only if all of those agree. Checkpoints without
    weight files are not called the same.
    """
    a, b = Path(first), Path(second)
    if a.is_dir() != b.is_dir():
        return False
    if os.path.samefile(a, b):
        return True
    files_a, files_b = weight_files(a), weight_files(b)
    if not files_a or not files_b:
        return False
    if not a.is_dir():
        return _same_bytes(files_a, files_b)
    if all(f.suffix == ".safetensors" for f in files_a + files_b):  # the headers first: no tensor read
        headers = [[check_safetensors(f) for f in files] for files in (files_a, files_b)]
        kinds = [{k: (v["dtype"], v["shape"]) for h in hs for k, v in h.items()} for hs in headers]
        if kinds[0] != kinds[1]:
            return False
        if headers[0] == headers[1]:  # the same layout: the same data bytes are the same tensors
            return _same_bytes(files_a, files_b, data_only=True)
    with ExitStack() as stack:  # tensor by tensor, never two whole checkpoints in memory
        ta, tb = _lazy_tensors(files_a, stack), _lazy_tensors(files_b, stack)
        if ta.keys() != tb.keys() or any(ta[k].kind != tb[k].kind for k in ta):
            return False
        return (all(torch.equal(ta[k].read(first_row=True), tb[k].read(first_row=True)) for k in ta)
                and all(torch.equal(ta[k].read(), tb[k].read()) for k in ta))


@dataclass(frozen=True)
class _LazyTensor:
    """One stored tensor, read when asked: whole, or its first row only (a cheap first comparison)."""

    kind: tuple  # (dtype, shape)
    get: Callable[[], torch.Tensor]
    get_slice: Callable[[], object] | None = None  # safetensors' slice reader, which reads only what it is asked

    def read(self, first_row: bool = False) -> torch.Tensor:
        if first_row and self.kind[1]:
            return self.get_slice()[:1] if self.get_slice is not None else self.get()[:1]
        return self.get()


def _unreadable(file: Path, e: Exception) -> ValueError:
    return ValueError(f"cannot read the weights in {file} ({type(e).__name__}: {e}); it is damaged, cut short "
                      "or not a weight file (copy or download it again)")


def _lazy_tensors(files: list[Path], stack: ExitStack) -> dict[str, _LazyTensor]:
    """Every tensor of a checkpoint's weight files by name, unread: safetensors files opened (headers only),
    ``pytorch_model*.bin`` files memory-mapped where their format allows (read with ``weights_only``)."""
    from safetensors import safe_open

    out = {}
    for file in files:
        try:
            if file.suffix == ".safetensors":
                handle = stack.enter_context(safe_open(file, framework="pt"))
                for name in handle.keys():  # noqa: SIM118 - a safe_open handle has no __iter__
                    entry = handle.get_slice(name)
                    out[name] = _LazyTensor((entry.get_dtype(), tuple(entry.get_shape())),
                                            partial(handle.get_tensor, name), partial(handle.get_slice, name))
            else:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
                out.update({name: _LazyTensor((_SAFETENSORS_DTYPE.get(t.dtype, str(t.dtype)), tuple(t.shape)),
                                              partial(_itself, t)) for name, t in state.items()})
        except Exception as e:  # noqa: BLE001 - any reader's failure is the file's: name it
            raise _unreadable(file, e) from None
    return out


def _itself(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


_SAFETENSORS_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                      torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
                      torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64", torch.complex64: "C64"}
"""The safetensors name of a torch dtype, so a ``.bin`` tensor and a ``.safetensors`` one compare by kind."""


def _same_bytes(files_a: list[Path], files_b: list[Path], data_only: bool = False) -> bool:
    """Whether two lists of files hold the same bytes (with ``data_only``, safetensors files past their headers):
    sizes, :data:`SAMPLES` chunks of each, then every byte."""
    if len(files_a) != len(files_b):
        return False
    pairs = list(zip(files_a, files_b, strict=True))
    shifts = [(_data_start(x), _data_start(y)) if data_only else (0, 0) for x, y in pairs]
    sizes = [x.stat().st_size - shift[0] for (x, _), shift in zip(pairs, shifts, strict=True)]
    if any(y.stat().st_size - shift[1] != size for (_, y), shift, size in zip(pairs, shifts, sizes, strict=True)):
        return False
    samples = [sorted({size * i // SAMPLES for i in range(SAMPLES)}) for size in sizes]
    if not all(_equal_at(x, y, offsets, 1 << 16, shift)
               for (x, y), offsets, shift in zip(pairs, samples, shifts, strict=True)):
        return False
    return all(_equal_at(x, y, range(0, size, CHUNK), CHUNK, shift)
               for (x, y), size, shift in zip(pairs, sizes, shifts, strict=True))


def stored_shapes(checkpoint: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint directory's weight files hold, with its shape, from safetensors headers (no tensor
    read) or ``pytorch_model*.bin`` files (memory-mapped)."""
    shapes = {}
    for file in weight_files(checkpoint):
        if file.suffix == ".safetensors":
            shapes.update({k: tuple(v["shape"]) for k, v in check_safetensors(file).items()})
        else:
            with ExitStack() as stack:
                shapes.update({k: t.kind[1] for k, t in _lazy_tensors([file], stack).items()})
    return shapes


def check_inventory(checkpoint: str | os.PathLike, config) -> None:
    """The tensors a checkpoint directory holds fit its config's architecture (the class its ``architectures`` names,
    built on the ``meta`` device): a tensor missing (transformers would fill it with random values), a layer more
    than the config counts, or a tensor of another shape (a config that lies about a size) is a ``ValueError``
    naming them. Tied weights may be stored once, buffers and extra tensors transformers skips (``inv_freq``,
    ``masked_bias``) are let through, and a checkpoint whose names follow another convention (tensors both missing
    and unknown: transformers renames or fuses them on load) is left to transformers."""
    stored = stored_shapes(checkpoint)
    model = _skeleton(config, checkpoint) if stored else None
    if model is None:
        return
    tied: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        tied.setdefault(id(parameter), []).append(name)
    known = {name: tuple(t.shape) for name, t in model.state_dict(keep_vars=True).items()}
    prefix = f"{model.base_model_prefix}."
    if not any(k.startswith(prefix) for k in stored):  # a base model's weights, as transformers also loads them
        known = {k.removeprefix(prefix): v for k, v in known.items() if k.startswith(prefix)}
        tied = {i: [n.removeprefix(prefix) for n in names] for i, names in tied.items()}
    missing = [k for names in tied.values() if not any(n in stored for n in names) for k in names[:1] if k in known]
    unknown = [k for k in stored if k not in known]
    modules = {_layerless(k) for k in known}
    extra_layers = [k for k in unknown if _layerless(k) in modules]  # the same tensor, at an index the config lacks
    if missing and len(extra_layers) < len(unknown):
        return  # another naming convention: transformers maps it on load, and says what it could not
    wrong = [f"{k} {list(stored[k])} (the config implies {list(known[k])})" for k in stored
             if k in known and stored[k] != known[k]]
    problems = ([f"{len(missing)} tensor(s) the config's architecture needs are missing ({_some(missing)})"]
                if missing else []) + ([f"{len(extra_layers)} tensor(s) of layers the config does not have "
                                        f"({_some(extra_layers)})"] if extra_layers else []) + (
        [f"shapes differ: {_some(wrong)}"] if wrong else [])
    if problems:
        raise ValueError(f"the weights of {checkpoint} do not fit its config.json: {'; '.join(problems)}. A "
                         "config that does not describe its weights (the number of layers or a size) or a weight file "
                         "that lost tensors gives numbers about random matrices: fix the checkpoint")


def _skeleton(config, checkpoint):
    """The model class ``config.architectures`` names (else a causal LM), built on the ``meta`` device."""
    import transformers

    name = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, name, None) if name else None
    try:
        with torch.device("meta"):
            return cls._from_config(config) if cls is not None else transformers.AutoModelForCausalLM.from_config(
                config)
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise ValueError(f"the config.json of {checkpoint} does not describe a model transformers can build "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None


def _layerless(name: str) -> str:
    """A tensor's name with its layer (and expert) indices blanked: ``model.layers.#.mlp.up_proj.weight``."""
    return re.sub(r"\.\d+\.", ".#.", name)


def _some(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
