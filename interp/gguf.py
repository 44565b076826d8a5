"""GGUF checkpoints as ordinary Hugging Face directories.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, with the ``gguf``
package) and dequantizes every tensor to floating point; :func:`materialize` saves that result
once as a standard checkpoint directory (config, safetensors, tokenizer with its chat template)
in the cache, with a card ``gguf.json`` recording the source file, its size and hash, and the
quantization types it held. Everything downstream (``load_pair``, the report, the tests) then
reads an ordinary directory, and :func:`quantization_note` says where its weights came from.

The dequantized weights are the quantized model's weights exactly (no re-quantization); they
are *not* the original full-precision checkpoint's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from interp.checks import unwritable

CARD = "gguf.json"
_MATERIALIZED: dict[tuple, Path] = {}


def is_gguf(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(".gguf")


def cache_root() -> Path:
    """``$INTERP_CACHE_DIR``, else ``$XDG_CACHE_HOME/interp`` (``~/.cache/interp``)."""
    if os.environ.get("INTERP_CACHE_DIR"):
        return Path(os.environ["INTERP_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "interp"


def check_gguf_file(path: str | os.PathLike) -> Path:
    """A readable GGUF file holding a causal LM, or a clear error (reads the header only)."""
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"GGUF file {os.fspath(path)!r} does not exist")
    if not file.is_file():
        raise FileNotFoundError(f"{os.fspath(path)!r} is not a file; give the path of the .gguf file itself")
    with file.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{file} is not a GGUF file (it does not start with the GGUF magic bytes)")
    reader = _reader(file)
    architecture = _field(reader, "general.architecture")
    if architecture is None:
        raise ValueError(f"{file} names no general.architecture: not a language model GGUF")
    return file


def _reader(file: Path):
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise ImportError(
            "reading GGUF files needs the 'gguf' package: pip install -e '.[real]' (or pip install gguf)"
        ) from e
    try:
        return GGUFReader(file)
    except Exception as e:  # a truncated or corrupt file fails deep inside numpy
        raise ValueError(f"{file} is not a readable GGUF file ({type(e).__name__}: {e})") from e


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def describe(path: str | os.PathLike) -> dict:
    """What a GGUF file holds: architecture, name, and how many tensors of each quantization type."""
    file = check_gguf_file(path)
    reader = _reader(file)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"file": file.name, "architecture": _field(reader, "general.architecture"),
            "name": _field(reader, "general.name"), "tensor_types": dict(sorted(types.items())),
            "bytes": file.stat().st_size}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_cache_writable(folder: Path) -> None:
    """``folder`` (under :func:`cache_root`) exists or can be made, and can be written, else a ``PermissionError``
    naming the variable that chose it."""
    if why := unwritable(folder, make=True):
        chosen = "$INTERP_CACHE_DIR" if os.environ.get("INTERP_CACHE_DIR") else "$XDG_CACHE_HOME (or ~/.cache)"
        raise PermissionError(f"cannot write the GGUF cache {str(folder)!r} ({why}): set {chosen} to a folder you "
                              "can write")


def materialize(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """The GGUF file at ``path`` as a Hugging Face checkpoint directory, written once.

    ``out_dir`` defaults to ``<cache>/gguf/<file stem>-<first 12 hex of its sha256>``; a
    complete directory there is reused. The directory appears complete or not at all.
    """
    file = check_gguf_file(path).resolve()
    if out_dir is None:
        check_cache_writable(cache_root() / "gguf")  # before hashing a file of hundreds of MB
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns, str(out_dir))
    if key in _MATERIALIZED and (_MATERIALIZED[key] / CARD).is_file():
        return _MATERIALIZED[key]  # hashed already in this process
    info = describe(file)
    digest = _sha256(file)
    out = Path(out_dir).expanduser() if out_dir else cache_root() / "gguf" / f"{file.stem}-{digest[:12]}"
    if (out / CARD).is_file():
        _MATERIALIZED[key] = out
        return out
    if out.exists():
        raise FileExistsError(f"{out} exists but holds no {CARD}: remove it to materialize {file.name} there")
    out.parent.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; its weights are
    # already plain float tensors, so drop the marker and save them as they are.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card = {**info, "source": str(file), "sha256": digest, "dequantized_to": "float32"}
        (tmp / CARD).write_text(json.dumps(card, indent=1))
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _MATERIALIZED[key] = out
    return out


def quantization_note(checkpoint: str | os.PathLike) -> str | None:
    """``"dequantized from X.gguf (F32 x 61, Q4_1 x 210, Q8_0 x 1)"`` for a materialized GGUF checkpoint, else None."""
    card = Path(os.fspath(checkpoint)).expanduser() / CARD
    if not card.is_file():
        return None
    info = json.loads(card.read_text())
    types = ", ".join(f"{name} x {n}" for name, n in info["tensor_types"].items())
    return f"dequantized from {info['file']} ({types})"
