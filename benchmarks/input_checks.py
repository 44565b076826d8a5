"""What the checks before loading cost on a checkpoint of SmolLM2-135M's shape, against loading it.

Issue 31 asks that verifying a checkpoint (files whole, headers sane, tensors fitting the config, not the same model
twice, every weight finite) stay under a second or two on a 135M checkpoint. This builds two random checkpoints of
SmolLM2-135M-Instruct's configuration (no download; 30 layers, d_model 576, vocabulary 49,152: 135M parameters),
times :func:`interp.models.check_checkpoints` on them (the report runs it before loading), the finiteness check on a
loaded model, and, as the reference measured in the same run, ``AutoModelForCausalLM.from_pretrained`` of one of them
and :func:`interp.load_pair` of both.

    python benchmarks/input_checks.py [--repeat 3] > benchmarks/results/input-checks-cpu.txt
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from interp import load_pair
from interp.models import check_checkpoints, check_finite
from interp.organisms.tokenizer import build_tokenizer

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
                    vocab_size=49152)


def median_seconds(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_135M))
    model.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)  # any tokenizer with ids below the vocabulary
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, aligned = checkpoint(Path(tmp) / "base", 0), checkpoint(Path(tmp) / "aligned", 1)
        params = sum(t.numel() for t in AutoModelForCausalLM.from_pretrained(base).parameters())
        load = median_seconds(lambda: AutoModelForCausalLM.from_pretrained(aligned), args.repeat)
        checks = median_seconds(lambda: check_checkpoints(base, aligned, "raw"), args.repeat)
        pair = load_pair(base, aligned, device="cpu", prompt_format="raw")
        finite = median_seconds(lambda: check_finite(pair.aligned.original_model, "aligned"), args.repeat)
        both = median_seconds(lambda: load_pair(base, aligned, device="cpu", prompt_format="raw"), args.repeat)
    print(f"# {params / 1e6:.1f}M parameters (SmolLM2-135M's shape), float32; {torch.get_num_threads()} threads; "
          f"median of {args.repeat}")
    print(f"transformers from_pretrained, one model  {load:6.2f} s (reference)")
    print(f"check_checkpoints, both (before loading) {checks:6.2f} s  {checks / load:5.2f}x one plain load")
    print(f"check_finite, one loaded model           {finite:6.2f} s  {finite / load:5.2f}x one plain load")
    print(f"load_pair, both, every check included    {both:6.2f} s  {both / load:5.2f}x one plain load")


if __name__ == "__main__":
    main()
