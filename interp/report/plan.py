"""What a report will cost, estimated before any model loads: from the checkpoints' shape and the prompts' lengths.

Each section's work is counted as arithmetic (floating-point operations of the forward passes,
generation steps, SVDs and CKA it runs) and block calls (each costs a fixed time besides its
arithmetic: reading the block's weights, Python), and turned into seconds with
:data:`interp.flops.THROUGHPUT` and :data:`interp.flops.CALL_SECONDS`, measured on this project's
2-core CPU (``benchmarks/report.py`` prints estimate and actual side by side). Other machines scale these.

The plan also fixes the defaults that keep a report short on a real model: the number of
harmful prompts patched across the pair is the most (up to :data:`PATCH_PROMPTS`) whose sweep
fits :data:`PATCH_SECONDS`; the page states every such choice.

>>> from interp.report import SECTIONS
>>> shape = Shape(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, n_kv_heads=3, d_head=64, d_vocab=49152)
>>> work = estimate(shape, [37] * 448, [True] * 224 + [False] * 224, list(SECTIONS), 16, "cpu")
>>> list(work) == ["replies", *SECTIONS] and all(w.seconds > 0 for k, w in work.items() if k != "behaviour")
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from interp import directions, flops
from interp.dictionary.diffing import default_layer

SVD_FLOPS = 12.0
"""An ``m x n`` SVD costs about ``SVD_FLOPS * m * n * min(m, n)`` operations."""
PATCH_PROMPTS = 16
"""The most harmful prompts (of one token length) patched across the pair."""
PATCH_SECONDS = 120.0
"""The patching section takes as many prompts as fit this estimate (at least 2)."""
GENERATION_BATCH, KL_BATCH, BATCH = 32, 16, 32
ADL_TOKENS, MINING_K = 3, 10
"""The what-changed section's ADL reads the first 3 tokens of each prompt (most requests have that many); its diff
mining counts the 10 most promoted tokens at each position."""
DICTIONARY_SECONDS = 300.0
"""The dictionary section runs by default only when it is estimated within this (``--dictionary`` forces it)."""
DICTIONARY_CAUSAL = 16
"""The most crosscoder latents the dictionary section checks causally (the most aligned first)."""
DICTIONARY_STEPS, DICTIONARY_BATCH, LATENTS_PER_DIM = 2000, 512, 8
DICTIONARY_EFFICIENCY = 0.5
"""Dictionary training reaches about half of :data:`interp.flops.THROUGHPUT` (measured: 1024 latents on 2 x 128
dimensions, 2000 steps of 512 rows, took 30 s against 15 s of arithmetic on the 2-core CPU): the batch top-k and
the optimizer step are not matrix products."""


def dictionary_config(d_model: int, n_rows: int):
    """The report's crosscoder for ``n_rows`` training token rows: ``LATENTS_PER_DIM`` latents per residual dimension,
    or fewer (a power of two) so that each has its 16 rows, k = latents / 64 (at most 16), 2000 steps; ``None``
    when the rows are too few for 16 latents."""
    from interp.dictionary import DictionaryConfig

    per_latent = DictionaryConfig().min_tokens_per_latent
    if n_rows < 16 * per_latent:
        return None
    n_latents = 2 ** int(math.log2(min(LATENTS_PER_DIM * d_model, n_rows // per_latent)))
    return DictionaryConfig(n_latents=n_latents, k=max(1, min(16, n_latents // 64)), steps=DICTIONARY_STEPS,
                            batch_size=min(DICTIONARY_BATCH, n_rows))


def dictionary_rows(lengths: Sequence[int]) -> int:
    """Training rows of the report's prompts: every token but each prompt's first, less the tenth held back."""
    from interp.dictionary.diffing import training_rows

    return training_rows(sum(n - 1 for n in lengths))


@dataclass(frozen=True)
class Shape:
    """What the cost depends on: the checkpoints' dimensions (both have the same)."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_vocab: int

    @classmethod
    def of_config(cls, config) -> Shape:
        text = config.get_text_config()
        heads = text.num_attention_heads
        return cls(text.num_hidden_layers, text.hidden_size,
                   getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * text.hidden_size,
                   heads, getattr(text, "num_key_value_heads", None) or heads,
                   getattr(text, "head_dim", None) or text.hidden_size // heads, text.vocab_size)

    @property
    def block(self) -> float:
        """Operations for one token through one block."""
        return flops.block(self.d_model, self.n_heads, self.n_kv_heads, self.d_head, self.d_mlp)

    @property
    def unembed(self) -> float:
        """Operations to unembed one token."""
        return flops.unembed(self.d_model, self.d_vocab)

    def matrices(self) -> list[tuple[int, int]]:
        """The shapes of the weight matrices a weight diff decomposes (per layer, then the embedding)."""
        d, q, kv = self.d_model, self.n_heads * self.d_head, self.n_kv_heads * self.d_head
        layer = [(d, q), (d, kv), (d, kv), (q, d), (d, self.d_mlp), (d, self.d_mlp), (self.d_mlp, d)]
        return layer * self.n_layers + [(self.d_vocab, d)]


@dataclass(frozen=True)
class Work:
    """One section's estimated work: arithmetic, block calls, the seconds they take, and what it is."""

    flops: float
    calls: float
    seconds: float
    what: str
    settings: dict = field(default_factory=dict)
    """Choices the plan made for the section (``{"prompts": n}`` for patching)."""


def _forward(shape: Shape, tokens: float, forwards: float, unembedded: float = 0.0) -> tuple[float, float]:
    """Operations and block calls of ``forwards`` passes over ``tokens`` tokens in all, ``unembedded`` unembedded."""
    return tokens * shape.n_layers * shape.block + unembedded * shape.unembed, forwards * shape.n_layers


def patch_prompts(shape: Shape, n_pos: int, available: int, device: str, matmul: str = "float32") -> int:
    """How many harmful prompts the patching section takes: the most (of ``available``, at most
    :data:`PATCH_PROMPTS`) whose sweep is estimated within :data:`PATCH_SECONDS`, and at least 2."""
    kind = flops.device_kind(device)
    fixed = _patch_calls(shape, n_pos) * flops.CALL_SECONDS[kind]
    per_prompt = _patch_flops(shape, n_pos, 1) / flops.throughput(kind, matmul)
    fitting = int((PATCH_SECONDS - fixed) // per_prompt) if per_prompt > 0 else PATCH_PROMPTS
    return max(min(2, available), min(available, PATCH_PROMPTS, fitting))


def _patch_calls(shape: Shape, n_pos: int) -> int:
    """Block calls of a sweep whose passes each take one start (the finest the engine plans)."""
    return shape.n_layers * n_pos


def _patch_flops(shape: Shape, n_pos: int, prompts: int) -> float:
    """An exact resid_pre sweep: each cell recomputes its layer and later ones from its position on."""
    cells = shape.n_layers * (shape.n_layers + 1) / 2 * n_pos * (n_pos + 1) / 2
    return prompts * (cells * shape.block + shape.n_layers * n_pos * shape.unembed)


def estimate(shape: Shape, lengths: Sequence[int], harmful: Sequence[bool], sections: Sequence[str],
             max_new_tokens: int, device: str, *, patch_length: int | None = None, patch_available: int | None = None,
             rank_prompts: int = directions.RANK_PROMPTS, max_scored: int = directions.MAX_SCORED,
             matmul: str = "float32") -> dict[str, Work]:
    """The estimated work of each section in ``sections``, for prompts of ``lengths`` tokens (formatted), after
    ``"replies"``: the greedy replies of both models every report generates first (the behaviour and KL
    sections and the refusal markers' check read them). ``matmul``: the dtype the linear products run in."""
    kind = flops.device_kind(device)
    speed = flops.throughput(kind, matmul)
    plain = speed / flops.THROUGHPUT[kind]  # scales the float32 work (SVDs, CKA, dictionary training) to ``speed``
    n, total = len(lengths), float(sum(lengths))
    mean = total / max(n, 1)
    fit_harmful, fit = sum(harmful), n  # upper bounds: held-out rows are not fitted on
    val_harmful, val_harmless = (max(1, min(round(0.25 * k), directions.PAPER_VALIDATION))
                                 for k in (fit_harmful, fit - fit_harmful))
    out: dict[str, tuple] = {}
    steps = math.ceil(n / GENERATION_BATCH) * (max_new_tokens + 1)
    ops, calls = _forward(shape, total + n * max_new_tokens, steps, n * max_new_tokens)
    out["replies"] = (2 * ops, 2 * calls, f"{max_new_tokens} greedy tokens for {n} prompts, both models")
    if "behaviour" in sections:
        out["behaviour"] = (0.0, 0.0, "refusal log-odds at the answer position, both models, read from the logits the "
                            "replies' first tokens were chosen from")
    if "token_kl" in sections:
        tokens = total + n * max_new_tokens
        ops, calls = _forward(shape, tokens, math.ceil(n / KL_BATCH), tokens)
        out["token_kl"] = (2 * ops, 2 * calls, "both models on every prompt and reply")
    if "what_changed" in sections:
        # the prompts read raw are shorter than formatted: ``total`` is an upper bound; ADL stops after its layer
        adl = _forward(shape, n * (ADL_TOKENS + 1) / 2, math.ceil(n / BATCH) / 2, ADL_TOKENS)
        mining = _forward(shape, total, math.ceil(n / KL_BATCH), total)  # every position unembedded
        shift = _forward(shape, 1.5 * total, 1.5 * math.ceil(n / BATCH))  # the base reads the prompts twice
        out["what_changed"] = (2 * (adl[0] + mining[0] + shift[0]), 2 * (adl[1] + mining[1] + shift[1]),
                               f"ADL on the prompts' first {ADL_TOKENS} tokens, diff mining over every prompt "
                               "position, the prompts on the base's refusal direction, both models")
    if "weights" in sections:
        ops = sum(2 * SVD_FLOPS * m * k * min(m, k) for m, k in shape.matrices())
        out["weights"] = (ops * plain, 0.0, "two SVDs per changed matrix (counted as if every one changed)")
    if "representations" in sections:
        ops, calls = _forward(shape, total, math.ceil(n / BATCH))
        cka = 3 * shape.n_layers * 4 * total * shape.d_model ** 2
        out["representations"] = (2 * ops + cka * plain, 2 * calls, "every layer and token of both models; CKA")
    if "probes" in sections:
        ops, calls = _forward(shape, total, math.ceil(n / BATCH))
        out["probes"] = (2 * ops, 2 * calls, "both models' answer positions; a probe per layer")
    if "direction" in sections:
        candidates = 6 * math.ceil(0.8 * shape.n_layers)  # about 6 post-instruction positions in a chat format
        means = _forward(shape, fit * mean, math.ceil(fit / BATCH))
        ranking = _forward(shape, candidates * rank_prompts * mean, candidates, candidates * rank_prompts)
        val = val_harmful + 2 * val_harmless  # ablated on harmful; added, and ablated for KL, on harmless
        passes = math.ceil(val_harmful / BATCH) + 2 * math.ceil(val_harmless / BATCH)
        scoring = _forward(shape, max_scored * val * mean, max_scored * passes, max_scored * val)
        runs = 2  # interventions run per model (ablated, added); the unablated rates come with the replies
        effects = _forward(shape, 2 * runs * total, 2 * runs * math.ceil(n / BATCH), 2 * runs * n)
        parts = (means, ranking, scoring, effects)
        out["direction"] = (sum(p[0] for p in parts), sum(p[1] for p in parts),
                            f"candidate means, ~{candidates} candidates ranked on {rank_prompts} prompts, at most "
                            f"{max_scored} scored exactly, effects on both models")
    if "patching" in sections:
        length = patch_length or round(mean)
        prompts = patch_prompts(shape, length, PATCH_PROMPTS if patch_available is None else patch_available, kind,
                                matmul)
        out["patching"] = (_patch_flops(shape, length, prompts), _patch_calls(shape, length),
                           f"resid_pre across the pair: {shape.n_layers} layers x {length} positions, "
                           f"{prompts} prompts", {"prompts": prompts})
    if "jailbreak" in sections:
        # upper bounds, each set being part of the file: the directions' means (1 pass); every prompt projected and
        # scored in one pass per model (2); the four patches' sets projected once (1), their targets scored once
        # unpatched (1) and once per patch (2: plain harmful is the target of two)
        ops, calls = _forward(shape, 7 * total, 7 * math.ceil(n / BATCH), 5 * n)
        out["jailbreak"] = (ops, calls, "two directions, every prompt projected in both models, four harmfulness "
                            "patches (nothing without jailbreak or bait rows)")
    if "dictionary" in sections:
        config = dictionary_config(shape.d_model, dictionary_rows(lengths))
        if config is None:
            out["dictionary"] = (0.0, 0.0, "too few tokens for a dictionary: skipped", {"config": None})
        else:
            layers = default_layer(shape.n_layers) + 1
            collect = _forward(shape, total * layers / shape.n_layers, math.ceil(n / 64) * layers / shape.n_layers)
            training = 12 * config.steps * config.batch_size * 2 * shape.d_model * config.n_latents
            # Per checked latent: ablated, added, direction ablated; plus both clean runs and the "all" group's two.
            runs = 3 * DICTIONARY_CAUSAL + 4
            harmful_tokens = sum(length for length, h in zip(lengths, harmful, strict=True) if h)
            checks = _forward(shape, runs * harmful_tokens + fit * mean, runs * math.ceil(fit_harmful / 64), runs * n)
            steps = 2 * config.steps  # each step's top-k and optimizer cost about two block calls
            out["dictionary"] = (2 * collect[0] + training * plain / DICTIONARY_EFFICIENCY + checks[0],
                                 2 * collect[1] + checks[1] + steps,
                                 f"a BatchTopK crosscoder at one layer ({config.n_latents} latents, {config.steps} "
                                 f"steps), up to {DICTIONARY_CAUSAL} latents checked causally",
                                 {"config": config.to_dict()})
    return {key: Work(ops, calls, ops / speed + calls * flops.CALL_SECONDS[kind], *rest)
            for key, (ops, calls, *rest) in out.items()}


def describe(work: dict[str, Work], device: str = "cpu", off: dict[str, str] | None = None,
             matmul: str = "float32") -> str:
    """The plan as lines: each section's estimate and what it counts, then the total of those that will run
    (``off``: sections that will not, with why, shown but not counted)."""
    off = off or {}
    lines = [f"  {key:<16} ~{_duration(w.seconds):>7}  " + (f"off: {off[key]}" if key in off else w.what)
             for key, w in work.items()]
    where = ("this project's 2-core CPU" if flops.device_kind(device) == "cpu" else "a rough GPU figure")
    where += f", linear products in {matmul}"
    running = sum(w.seconds for key, w in work.items() if key not in off)
    return "\n".join([f"estimated cost ({where}; scale for your machine):", *lines,
                      f"  {'total':<16} ~{_duration(running):>7}" + (" (the sections off not counted)" if off else "")])


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plan(config, ids: Sequence[Sequence[int]], labels: Sequence[str], sections: Sequence[str], max_new_tokens: int,
         device: str, matmul: str = "float32") -> dict[str, Work]:
    """:func:`estimate` for a checkpoint's ``config`` and tokenized prompts (``ids``, labelled), as a report runs them:
    the patching section on the harmful prompts of their most common length."""
    harmful = [label == "harmful" for label in labels]
    lengths = Counter(len(row) for row, is_harmful in zip(ids, harmful, strict=True) if is_harmful)
    patch_length, available = lengths.most_common(1)[0] if lengths else (None, 0)
    return estimate(Shape.of_config(config), [len(row) for row in ids], harmful, sections, max_new_tokens,
                    device, patch_length=patch_length, patch_available=available, matmul=matmul)
