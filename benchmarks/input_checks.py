"""What the checks before and during loading cost on a checkpoint of SmolLM2-135M's shape, against loading it.

Issue 31 asks that verifying a checkpoint (files whole, headers sane, tensors fitting the config, not the same model
twice, every weight finite) stay under a second or two on a 135M checkpoint. This builds two random checkpoints of
SmolLM2-135M-Instruct's configuration (no download; 30 layers, d_model 576, vocabulary 49,152: 135M parameters) and
times :func:`interp.models.check_checkpoints` on them (the report runs it before loading; once more with the aligned
checkpoint saved as ``pytorch_model.bin`` in another tensor order, so the weights are compared tensor by tensor, not by
the safetensors layout), :func:`interp.models.check_finite` on each loaded model, and :func:`interp.load_pair` of both.
The reference, measured in the same run: TransformerLens's ``TransformerBridge.boot_transformers`` of both, the load
without any of interp's checks.

    python benchmarks/input_checks.py [--repeat 3] > benchmarks/results/input-checks-cpu.txt
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformer_lens.model_bridge import TransformerBridge
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
        as_bin = shutil.copytree(aligned, Path(tmp) / "aligned-bin")
        state = load_file(as_bin / "model.safetensors")
        (as_bin / "model.safetensors").unlink()
        torch.save(dict(reversed(state.items())), as_bin / "pytorch_model.bin")
        params = sum(t.numel() for t in state.values() if t.is_floating_point())
        plain = median_seconds(lambda: [TransformerBridge.boot_transformers(str(p), device="cpu") for p in (base,
                                                                                                     aligned)],
                               args.repeat)
        checks = median_seconds(lambda: check_checkpoints(base, aligned, "raw"), args.repeat)
        layouts = median_seconds(lambda: check_checkpoints(base, as_bin, "raw"), args.repeat)
        pair = load_pair(base, aligned, device="cpu", prompt_format="raw")
        finite = median_seconds(lambda: [check_finite(m.original_model, name) for name, m in pair], args.repeat)
        both = median_seconds(lambda: load_pair(base, aligned, device="cpu", prompt_format="raw"), args.repeat)
    print(f"# {params / 1e6:.1f}M parameters a checkpoint (SmolLM2-135M's shape), float32; {torch.get_num_threads()} "
          f"threads; median of {args.repeat}; the checks' budget (issue 31): a second or two")
    rows = [("TransformerBridge.boot_transformers, both", plain, "(reference: no interp check)"),
            ("check_checkpoints, both (before loading)", checks, "safetensors, one layout"),
            ("check_checkpoints, safetensors vs .bin", layouts, "tensor by tensor"),
            ("check_finite, both loaded models", finite, ""),
            ("load_pair, both, every check included", both, "")]
    for what, seconds, note in rows:
        print(f"{what:42s} {seconds:6.2f} s  {seconds / plain:5.2f}x the reference  {note}")
    spent = checks + finite
    print(f"checks a report adds (check_checkpoints + check_finite): {spent:.2f} s, "
          f"{spent / plain:.0%} of the plain load")

if __name__ == "__main__":
    main()
