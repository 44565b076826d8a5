"""Both models' residual streams at one hook, one row per token, streamed to disk for dictionary training.

:func:`paired_tokens` runs :func:`interp.cache.collect_pair_activations` over a list of texts with
``positions="all"`` into a temporary folder (``.npy`` files, memory-mapped), so memory stays bounded
by one batch however many tokens there are; batches are drawn from the files at random. Each text's
first token is left out: it is the beginning-of-sequence token in chat formats, whose residual stream
has a norm far above the rest and says nothing about the text (Minder et al. 2025 leave it out too).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_pair_activations
from interp.checks import check_layer
from interp.data import PromptSet
from interp.models import ModelPair
from interp.prompts import tokenize
from interp.provenance import Provenance

SOURCES = ("base", "aligned")


def site(layer: int) -> str:
    """The hook a dictionary of ``layer`` reads: the residual stream entering the block, where
    :mod:`interp.directions` reads the refusal direction of that layer."""
    return f"blocks.{layer}.hook_resid_pre"


def count_tokens(pair: ModelPair, texts: PromptSet | Sequence[str], prompt_format: str | None = None) -> int:
    """How many token rows :func:`paired_tokens` would give (every text's tokens but its first)."""
    ids = tokenize(pair.tokenizer, texts, prompt_format or pair.prompt_format, n_ctx=pair.n_ctx)
    return sum(len(row) - 1 for row in ids)


@dataclass(eq=False)
class PairedTokens:
    """``[n_tokens, 2, d_model]`` rows (base, aligned) read from memory-mapped files; see the module docstring."""

    arrays: dict[str, Tensor]
    """Per model, ``[n_texts, max_pos, d_model]`` (tokens left-aligned, zero-padded)."""
    index: Tensor
    """The flat ``text * max_pos + pos`` index of every kept token, texts in a seeded random order (each text's
    tokens together), so that any leading share of the rows is a random sample of the texts."""
    layer: int
    provenance: Provenance
    _folder: Path | None = field(default=None, repr=False)

    def __post_init__(self):
        if self._folder is not None:
            weakref.finalize(self, shutil.rmtree, self._folder, True)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def d_model(self) -> int:
        return self.arrays["base"].shape[-1]

    def rows(self, which: Tensor) -> Float[Tensor, "n 2 d_model"]:
        """The token rows at positions ``which`` of :attr:`index` (float32), in file order (rows are exchangeable)."""
        flat = self.index[which].sort().values  # sorted reads are faster on a memory map
        return torch.stack([self.arrays[m].reshape(-1, self.d_model)[flat].float() for m in SOURCES], 1)

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[Tensor]:
        """Random batches of rows, for ever (each pass over the tokens in a new order)."""
        if not 1 <= batch_size <= len(self):
            raise ValueError(f"batch_size must be in 1..{len(self)} (the token rows), got {batch_size}")
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(len(self), generator=generator)
            for start in range(0, len(self) - batch_size + 1, batch_size):
                yield self.rows(order[start : start + batch_size])

    def chunks(self, size: int = 8192, limit: int | None = None) -> Iterator[Tensor]:
        """The rows in order, ``size`` at a time: the first ``limit`` (a random sample of the texts), or all."""
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, size):
            yield self.rows(torch.arange(start, min(start + size, n)))

    def split(self, fraction: float) -> tuple[PairedTokens, PairedTokens]:
        """The first ``fraction`` of the rows and the rest, cut between two texts; both read the same files."""
        cut, text = int(len(self) * fraction), self.index // self.arrays["base"].shape[1]
        while 0 < cut < len(self) and text[cut] == text[cut - 1]:
            cut += 1
        return (PairedTokens(self.arrays, self.index[:cut], self.layer, self.provenance),
                PairedTokens(self.arrays, self.index[cut:], self.layer, self.provenance))


def paired_tokens(
    pair: ModelPair,
    texts: PromptSet | Sequence[str],
    layer: int,
    *,
    prompt_format: str | None = None,
    batch_size: int = 64,
    folder: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> PairedTokens:
    """Both models' residual streams entering ``layer`` (:func:`site`) at every token of ``texts`` but the first.

    ``texts`` are formatted under ``prompt_format`` (default: the pair's policy; ``"raw"`` for text
    that already has its special tokens). The activations go to ``folder`` (default: a temporary
    folder, removed when the result is garbage-collected). The texts are put in an order drawn with ``seed``.
    """
    check_layer(pair.base, layer)
    fmt = prompt_format or pair.prompt_format
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="interp-dictionary-") if own else folder)
    hook = site(layer)
    try:
        acts = collect_pair_activations(pair, texts, hook, positions="all", prompt_format=fmt,
                                        batch_size=batch_size, out_dir=folder, progress=progress)
    except BaseException:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    mask = acts["base"].mask.bool().clone()
    mask[:, 0] = False
    flat = mask.flatten().nonzero()[:, 0]
    n_texts, max_pos = mask.shape
    rank = torch.randperm(n_texts, generator=torch.Generator().manual_seed(seed))  # each text's place in the order
    index = flat[torch.argsort(rank[flat // max_pos] * max_pos + flat % max_pos)]
    provenance = Provenance.of_pair(pair, texts, hook=hook, layer=layer, prompt_format=fmt, n_tokens=len(index),
                                    order_seed=seed)
    return PairedTokens({m: acts[m][hook] for m in SOURCES}, index, layer, provenance, folder if own else None)
