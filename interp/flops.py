"""What a forward pass costs: the arithmetic of a block and of the unembedding, and how fast a device does it.

Shared by the patching engine's pass planner (:class:`interp.patching.engine.Costs`) and the
report's plan (:mod:`interp.report.plan`). The device figures were measured on SmolLM2-135M on
this project's 2-core CPU (a token through a block: about 0.036 ms at large batch; a block call
on one token: about 1.8 ms, mostly reading the block's weights); the CUDA ones are rough.

>>> block(d_model=576, n_heads=9, n_kv_heads=3, d_head=64, d_mlp=1536)  # SmolLM2-135M
7077888
"""

from __future__ import annotations

THROUGHPUT = {"cpu": 2.2e11, "cuda": 2e13}
"""Floating-point operations per second a batched forward pass reaches on a device."""
CALL_SECONDS = {"cpu": 1.8e-3, "cuda": 2e-4}
"""Seconds one block call costs beyond its arithmetic (reading the block's weights, Python)."""
BF16_GAIN = {"cpu": 2.5, "cuda": 2.0}
"""How much faster a batched forward runs with its linear products in bfloat16 (:mod:`interp.matmul`): measured on
SmolLM2-135M on this project's CPU (32 prompts of 64 tokens: 3.25 s against 1.30 s, and 3.12 against 1.42 s in
``benchmarks/results/matmul-cpu.txt``); the CUDA figure is rough."""


def throughput(kind: str, matmul: str = "float32") -> float:
    """:data:`THROUGHPUT` of a device kind, times :data:`BF16_GAIN` where the products run in bfloat16."""
    return THROUGHPUT[kind] * (BF16_GAIN[kind] if matmul == "bfloat16" else 1.0)


def block(d_model: int, n_heads: int, n_kv_heads: int, d_head: int, d_mlp: int) -> int:
    """Operations for one token through one block: the query, key, value and output projections and a
    three-matrix MLP, two operations per multiply-add (attention scores are left out: short prompts)."""
    return 2 * d_model * ((2 * n_heads + 2 * n_kv_heads) * d_head + 3 * d_mlp)


def unembed(d_model: int, d_vocab: int) -> int:
    """Operations to unembed one token."""
    return 2 * d_model * d_vocab


def device_kind(device) -> str:
    """``"cpu"`` or ``"cuda"`` (other devices are costed as a CPU)."""
    kind = str(device).split(":")[0]
    return kind if kind in THROUGHPUT else "cpu"
