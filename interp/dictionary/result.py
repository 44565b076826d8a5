"""A trained dictionary as a value: the module, where it reads, how it was trained, how well it fits; saved
and loaded with a fingerprint of the pair it was trained on."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.dictionary.batchtopk import BatchTopK
from interp.dictionary.tokens import site
from interp.dictionary.train import DictionaryConfig, Kind, inputs
from interp.provenance import Provenance

TAGS = ("base-only", "shared", "aligned-only", "other")
BASE_ONLY, SHARED, ALIGNED_ONLY = 0.1, (0.4, 0.6), 0.9
"""Relative decoder norm cut-offs of Minder et al. 2025: below 0.1 base-only, 0.4-0.6 shared, above 0.9
aligned-only."""
FILES = ("dictionary.safetensors", "dictionary.json")


def fingerprint(pair) -> str:
    """A short hash of both models' weights (every parameter, sampled at up to 4096 evenly spaced entries):
    another pair, or the same pair with its models swapped, gets another fingerprint."""
    h = hashlib.sha256()
    for name, model in pair:
        h.update(name.encode())
        for pname, p in sorted(model.named_parameters()):
            flat = p.detach().flatten()
            step = max(1, flat.numel() // 4096)
            h.update(pname.encode())
            h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Dictionary:
    """A BatchTopK crosscoder (``kind="crosscoder"``: sources base and aligned) or difference-SAE
    (``"diff_sae"``: one source, aligned minus base) over the residual stream entering ``layer``."""

    kind: Kind
    module: BatchTopK
    layer: int
    config: DictionaryConfig
    fingerprint: str
    stats: dict
    """Measured on held-back tokens by :func:`interp.dictionary.evaluate`: variance explained, L0, dead fraction."""
    log: dict = field(repr=False)
    provenance: Provenance

    @property
    def hook(self) -> str:
        return site(self.layer)

    @property
    def n_latents(self) -> int:
        return self.module.n_latents

    @torch.no_grad()
    def codes(self, base: Float[Tensor, "... d_model"], aligned: Float[Tensor, "... d_model"]) -> Tensor:
        """Each token's codes ``[..., n_latents]`` from both models' activations at :attr:`hook` (thresholded)."""
        shape = base.shape[:-1]
        rows = torch.stack([base.reshape(-1, base.shape[-1]), aligned.reshape(-1, aligned.shape[-1])], 1).float()
        return self.module.encode(inputs(self.kind, rows)).reshape(*shape, self.n_latents)

    def difference_vectors(self) -> Float[Tensor, "n_latents d_model"]:
        """What one unit of each latent's code adds to the aligned stream beyond the base (model units):
        ``d_aligned - d_base`` for a crosscoder, the decoder row for a difference-SAE."""
        vectors = self.module.latent_vectors()
        return vectors[:, 1] - vectors[:, 0] if self.kind == "crosscoder" else vectors[:, 0]

    def _crosscoder_only(self, what: str) -> None:
        if self.kind != "crosscoder":
            raise ValueError(f"{what} needs a crosscoder (one decoder per model); this dictionary is a {self.kind}")

    def relative_norms(self) -> Float[Tensor, " n_latents"]:
        """``((|d_aligned| - |d_base|) / max(|d_aligned|, |d_base|) + 1) / 2`` per latent: 0 base-only, 1
        aligned-only, 1/2 alike in both."""
        self._crosscoder_only("relative decoder norms")
        norms = self.module.decoder_norms().detach()
        base, aligned = norms[:, 0], norms[:, 1]
        return ((aligned - base) / torch.maximum(base, aligned).clamp_min(1e-12) + 1) / 2

    def tags(self) -> list[str]:
        """Each latent's tag from its relative norm (:data:`TAGS`)."""
        return [tag(float(r)) for r in self.relative_norms()]

    def latents(self, which: str) -> list[int]:
        """The indices of latents tagged ``which``."""
        if which not in TAGS:
            raise ValueError(f"which must be one of {TAGS}, got {which!r}")
        return [i for i, t in enumerate(self.tags()) if t == which]

    def leaning_aligned(self) -> list[int]:
        """The latents whose relative norm is above the shared band (aligned-only and the "other" ones on the
        aligned side), most aligned first: the candidates a causal check should cover."""
        relative = self.relative_norms()
        return [int(i) for i in relative.argsort(descending=True) if relative[i] > SHARED[1]]

    def decoder_cosines(self) -> Float[Tensor, " n_latents"]:
        """Cosine between each latent's base and aligned decoder vectors."""
        self._crosscoder_only("decoder cosines")
        w = self.module.W_dec.detach()
        return torch.nn.functional.cosine_similarity(w[:, 0], w[:, 1], dim=-1)

    def plot(self, static: bool = False, title: str = "Crosscoder latents by relative decoder norm"):
        """The histogram of :meth:`relative_norms`, with the tag cut-offs marked."""
        from interp import plotting

        draw = plotting.histogram_static if static else plotting.histogram
        return draw({"latents": self.relative_norms()}, bins=40, value_range=(0, 1),
                    marks=(BASE_ONLY, *SHARED, ALIGNED_ONLY), title=title,
                    xlabel="relative decoder norm (0 base-only, 1 aligned-only)", ylabel="latents")

    def save(self, directory: str | Path) -> Path:
        """Write the weights (safetensors) and everything else (JSON) to ``directory``, atomically."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} exists and is not empty; choose a new folder")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            save_file({k: v.contiguous() for k, v in self.module.state_dict().items()}, tmp / FILES[0])
            meta = {"kind": self.kind, "layer": self.layer, "config": self.config.to_dict(),
                    "fingerprint": self.fingerprint, "stats": self.stats, "log": self.log,
                    "provenance": self.provenance.to_dict(),
                    "shape": [self.module.n_sources, self.module.d_model]}
            (tmp / FILES[1]).write_text(json.dumps(meta, indent=1))
            if directory.exists():
                directory.rmdir()
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory


def tag(relative_norm: float) -> str:
    if relative_norm < BASE_ONLY:
        return "base-only"
    if relative_norm > ALIGNED_ONLY:
        return "aligned-only"
    return "shared" if SHARED[0] <= relative_norm <= SHARED[1] else "other"


class WrongPairError(ValueError):
    """A saved dictionary was given a pair other than the one it was trained on."""


def load_dictionary(directory: str | Path, pair=None) -> Dictionary:
    """A dictionary saved by :meth:`Dictionary.save`; with ``pair``, checked to have been trained on that pair (and
    warned about when that pair multiplied in another dtype, :mod:`interp.matmul`: its activations differ a little)."""
    directory = Path(directory)
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} holds no saved dictionary (missing {', '.join(missing)})")
    meta = json.loads((directory / FILES[1]).read_text())
    theirs = None if pair is None else fingerprint(pair)
    if theirs is not None and theirs != meta["fingerprint"]:
        raise WrongPairError(
            f"the dictionary in {directory} was trained on another pair ({' vs '.join(meta['provenance']['models'])}, "
            f"weights fingerprint {meta['fingerprint']}); this pair ({pair.base_name} vs {pair.aligned_name}) has "
            f"fingerprint {theirs} (the fingerprint hashes the weights as loaded: the same checkpoints in another "
            "dtype differ too). Train one on this pair, or pass pair=None to skip the check")
    if pair is not None:
        trained = meta["provenance"].get("params", {}).get("matmul", "float32")
        now = getattr(pair, "metadata", {}).get("matmul", "float32")
        if trained != now:
            warnings.warn(f"the dictionary in {directory} was trained on this pair with its linear products in "
                          f"{trained}; the pair now multiplies in {now}, so the activations it reads differ a little "
                          "from those it was trained on", stacklevel=2)
    config = DictionaryConfig(**meta["config"])
    n_sources, d_model = meta["shape"]
    module = BatchTopK(n_sources, d_model, config.n_latents, config.k)
    module.load_state_dict(load_file(directory / FILES[0]))
    provenance = Provenance(**{**meta["provenance"], "models": tuple(meta["provenance"]["models"])})
    return Dictionary(meta["kind"], module.eval(), meta["layer"], config, meta["fingerprint"], meta["stats"],
                      meta["log"], provenance)
