"""Results too slow to compute twice, kept on disk and keyed by what they were computed from.

:func:`remembered` runs a computation once per key and keeps its result under ``<cache>/results/<kind>/``
(``$INTERP_RESULTS_DIR/<kind>/`` where that is set: the test suite keeps its own there). A key
names a model by a fingerprint of its weights (:func:`weights_fingerprint`), never by its path, and the code by the
source of the modules that compute it (:func:`source_fingerprint`), so that another model, other inputs, other
settings or a changed library compute afresh. Notebooks 05, 07 and 09 share one refusal-direction search this way
(:func:`interp.directions.find_refusal_direction` with ``remember=True``: about 4 minutes on a 135M real pair).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import torch

from interp.gguf import cache_root
from interp.provenance import versions

T = TypeVar("T")
RESULTS_ENV = "INTERP_RESULTS_DIR"


def results_root() -> Path:
    """Where remembered results are kept: ``$INTERP_RESULTS_DIR``, else ``<cache>/results``."""
    return Path(os.environ[RESULTS_ENV]).expanduser() if os.environ.get(RESULTS_ENV) else cache_root() / "results"


def weights_fingerprint(model) -> str:
    """A sha256 over every named parameter and buffer of ``model`` (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(model.named_parameters()), **dict(model.named_buffers())}.items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def source_fingerprint(*modules: ModuleType) -> str:
    """A sha256 over the source of ``modules``: a result computed by changed code is another result."""
    return hashlib.sha256("\x1f".join(inspect.getsource(m) for m in modules).encode()).hexdigest()


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def remembered(kind: str, key: dict, compute: Callable[[], T], *, announce: bool = True) -> T:
    """``compute()``'s result for ``key`` (JSON-able; with the libraries' versions added), computed once: kept in
    ``<results_root()>/<kind>/<digest>.pt`` and read from there afterwards (a file that does not load is computed
    again). ``announce``: say on stderr when a kept result is used, and where it is."""
    path = results_root() / kind / f"{key_digest({**key, 'versions': versions()})}.pt"
    if path.is_file():
        try:
            result = torch.load(path, weights_only=False)
        except Exception:  # a damaged file: compute again
            path.unlink(missing_ok=True)
        else:
            if announce:
                print(f"interp: {kind} read from {path} (computed before from the same weights, inputs and code)",
                      file=sys.stderr)
            return result
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(result, tmp)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return result
