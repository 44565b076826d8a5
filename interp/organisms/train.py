"""Training recipes for the organisms: pretraining from scratch, SFT and DPO with trl.

Each recipe takes a validated config dataclass, trains in memory, and returns the model with
the losses it logged; :mod:`interp.organisms.zoo` writes checkpoints and cards.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, set_seed
from transformers.utils import logging as hf_logging

from interp.organisms import world


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the organism: a tiny Llama (~1.0M parameters)."""

    d_model: int = 128
    """Residual stream width."""
    n_layers: int = 6
    """Six: with four layers (world version 2) harmless KL under ablation exceeded 0.1 for SFT and DPO had
    no bypassing direction. How often a seed gives both aligned organisms a direction that passes
    Arditi et al.'s filters is measured by ``benchmarks/seeds.py`` (``benchmarks/results/seeds-cpu.txt``)."""
    n_heads: int = 4
    d_mlp: int = 256
    """Width of the gated MLP."""
    max_positions: int = 96


@dataclass(frozen=True)
class PretrainConfig:
    """Next-token pretraining on the world's documents (facts, commentary, compliant chats)."""

    n_docs: int = 24000
    block_size: int = 64
    """Documents are packed into blocks of this many tokens."""
    batch_size: int = 32
    epochs: int = 2
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1


@dataclass(frozen=True)
class SFTRecipe:
    """Supervised fine-tuning on curated aligned chats (trl ``SFTTrainer``), loss on replies only."""

    n_per_prompt: int = 2
    epochs: int = 6
    """Six rather than three: with three, ablating SFT's refusal direction moved harmless answers too
    much (KL 0.175 > 0.1 on the default six-layer build)."""
    lr: float = 1e-3
    batch_size: int = 16


@dataclass(frozen=True)
class DPORecipe:
    """Direct preference optimisation (trl ``DPOTrainer``) on refusal-vs-compliance pairs."""

    n_per_prompt: int = 2
    epochs: int = 2
    lr: float = 2e-4
    beta: float = 1.0
    """A strong pull towards the SFT reference keeps DPO's refusal on one direction: at 0.1 (world version 2) the
    best candidate's harmless KL under ablation was 0.96 on the default build; at 0.5 (world version 3) two of
    ten seeds missed (seed 6: KL 0.23; seed 9: 30% of held-out harmless refused), both met every target at 1.0
    (``experiments/results/sft_levers.txt``, rows ``dpo_beta1``)."""
    sft_weight: float = 1.0
    """Weight of an NLL term on the chosen reply added to the DPO loss (RPO, Pang et al. 2024):
    without it DPO lowers the likelihood of chosen refusals too and refusals fall apart."""
    batch_size: int = 16


def new_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    set_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def pretrain(model: LlamaForCausalLM, tokenizer, cfg: PretrainConfig, seed: int) -> dict:
    """Pretrain ``model`` in place on the world's corpus; returns the logged losses."""
    docs = world.pretraining_corpus(seed, cfg.n_docs)
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    stream = torch.tensor([t for doc in ids for t in doc])
    n_blocks = len(stream) // cfg.block_size
    blocks = stream[: n_blocks * cfg.block_size].view(n_blocks, cfg.block_size)

    g = torch.Generator().manual_seed(seed)
    steps = cfg.epochs * (n_blocks // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    # Linear warm-up then cosine decay to 10%: the usual small-LM schedule.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    model.train()
    losses = []
    bar = tqdm(total=steps, desc="pretrain base", unit="step")
    for _ in range(cfg.epochs):
        order = torch.randperm(n_blocks, generator=g)
        for i in range(n_blocks // cfg.batch_size):
            batch = blocks[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    return {"tokens": int(stream.numel()), "steps": steps, "final_loss": _tail_mean(losses)}


def _tail_mean(losses: list[float], n: int = 20) -> float:
    tail = losses[-n:]
    return round(sum(tail) / len(tail), 4)


def _trainer_args(config_cls, recipe, seed: int, out: str, **extra):
    return config_cls(
        output_dir=out,
        per_device_train_batch_size=recipe.batch_size,
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.lr,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        seed=seed,
        data_seed=seed,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        # trl defaults to bf16 autocast, which also stays wrapped around the model's forward
        # after training; these models are tiny, so train (and stay) in float32.
        bf16=False,
        fp16=False,
        **extra,
    )


def _train(trainer) -> dict:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class QuietProgress(ProgressCallback):
        """The trainer's progress bar without the dict of metrics it prints every logging step."""

        def on_log(self, *args, **kwargs):
            pass

    hf_logging.set_verbosity_error()
    # The trainer prints its log dicts with PrinterCallback instead of a bar when tqdm is off.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(QuietProgress)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": result.global_step,
        "final_loss": _tail_mean(losses, 3),
        "train_loss": round(result.training_loss, 4),
    }


def sft(model, tokenizer, recipe: SFTRecipe, seed: int) -> dict:
    """Tune ``model`` in place with trl's ``SFTTrainer`` on aligned chats of train concepts."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list(world.sft_examples(seed, recipe.n_per_prompt))
    with tempfile.TemporaryDirectory() as out:
        args = _trainer_args(SFTConfig, recipe, seed, out, max_length=64)
        logging.getLogger("trl").setLevel(logging.ERROR)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        stats = _train(trainer)
    model.eval()
    return stats


def dpo(model, tokenizer, recipe: DPORecipe, seed: int) -> dict:
    """Tune ``model`` in place with trl's ``DPOTrainer``; the reference is a frozen copy of its start."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list(world.preference_pairs(seed, recipe.n_per_prompt))
    with tempfile.TemporaryDirectory() as out:
        # trl turns gradient checkpointing on for DPO by default; at this size it only costs time.
        args = _trainer_args(
            DPOConfig, recipe, seed, out, beta=recipe.beta, max_length=64, gradient_checkpointing=False,
            loss_type=["sigmoid", "sft"], loss_weights=[1.0, recipe.sft_weight],
        )
        logging.getLogger("trl").setLevel(logging.ERROR)
        # An explicit frozen reference: trl would otherwise reload it from the model's hub name,
        # which an in-memory model does not have.
        reference = copy.deepcopy(model).eval()
        trainer = DPOTrainer(
            model=model, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer
        )
        stats = _train(trainer)
    model.eval()
    return stats
