"""Where a result came from: the models, the prompts, the settings and the library versions.

Every result object of the analyses (:class:`~interp.directions.RefusalDirection`,
:class:`~interp.directions.RefusalEffects`, :class:`~interp.probes.ProbeResult`,
:class:`~interp.diff.RepresentationSimilarity`, :class:`~interp.diff.WeightDiff`) carries one in
its ``provenance`` field, so a number in a figure or a JSON file can be traced back to what made it.

>>> p = Provenance.of(["base", "aligned"], ["how do i bake ?", "how do i rob ?"], "demo", layer=2)
>>> p.models, p.n_prompts, p.params
(('base', 'aligned'), 2, {'layer': 2})
>>> Provenance.of(["m"], ["how do i rob ?", "how do i bake ?"]).prompts_sha == p.prompts_sha  # order matters
False
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("interp", "torch", "transformers", "transformer-lens")


@cache
def versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out


def model_name(model) -> str:
    """A model's name as loaded (a checkpoint path or hub name), for provenance and figure titles."""
    return str(getattr(getattr(model, "cfg", None), "model_name", "") or type(model).__name__)


@dataclass(frozen=True)
class Provenance:
    """The inputs of one result; ``prompts_sha`` fingerprints the prompt texts in order."""

    models: tuple[str, ...]
    prompts: str
    """The prompt set's name ('' when it had none)."""
    n_prompts: int
    prompts_sha: str
    params: dict = field(default_factory=dict)
    """The settings that shaped the result (layer, positions, seed, method, ...)."""
    versions: dict = field(default_factory=versions)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def of(cls, models: Sequence, prompts: Sequence[str] = (), name: str = "", **params) -> Provenance:
        """The provenance of a result computed on ``models`` (names, bridges or a pair) and ``prompts``."""
        names = tuple(m if isinstance(m, str) else model_name(m) for m in models)
        texts = list(getattr(prompts, "prompts", prompts))
        name = name or getattr(prompts, "name", "")
        sha = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
        return cls(names, name, len(texts), sha, dict(params))

    @classmethod
    def of_pair(cls, pair, prompts: Sequence[str] = (), **params) -> Provenance:
        products = getattr(pair, "metadata", {}).get("matmul", "float32")
        if products != "float32":  # a result computed with bfloat16 products says so (interp.matmul)
            params = {"matmul": products, **params}
        return cls.of([pair.base_name, pair.aligned_name], prompts, **params)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        what = f"{self.prompts or 'prompts'} (n={self.n_prompts}, sha {self.prompts_sha})" if self.n_prompts else ""
        settings = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return "; ".join(x for x in (" vs ".join(self.models), what, settings) if x)
