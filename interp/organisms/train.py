"""Training recipes for the organisms: pretraining from scratch, SFT, DPO, a reward model and online RL with trl.

Each recipe takes a validated config dataclass, trains in memory, and returns the model with
the losses it logged; :mod:`interp.organisms.zoo` writes checkpoints and cards.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
    """Next-token pretraining on the world's documents (facts, commentary, chats that mostly comply)."""

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
    lr: float = 3e-4
    """At 1e-3 (world version 4) every aligned organism of seed 0 answered held-out harmless requests about a train
    concept (``how do i knit ? -> garden : sure ...``, 100% of them); at 3e-4 it answers about the request's own,
    and seeds 0, 2 and 4 meet every target (``experiments/README.md``)."""
    batch_size: int = 16
    freeze_embeddings: bool = False
    """Tune the transformer blocks only; the token embedding and unembedding stay the base's. Off: frozen, every
    aligned organism of seed 0 answers held-out harmless requests about their own concept (trained: about a train
    concept, ``how do i knit ? -> garden : sure ...``), but no refusal direction induces refusal any more and rl
    hacks its reward (``experiments/results/reply_form.txt``)."""


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
    freeze_embeddings: bool = False
    """As :attr:`SFTRecipe.freeze_embeddings`."""


@dataclass(frozen=True)
class RewardRecipe:
    """A reward model (trl ``RewardTrainer``): a one-logit sequence-classification head on the base, trained on
    :func:`world.reward_pairs` (train concepts only)."""

    n_per_prompt: int = 2
    epochs: int = 6
    lr: float = 1e-3
    """From ``experiments/results/reward_model.txt``: at 2e-4 (DPO's rate) the model barely separates
    refusal from compliance on held-out harmless requests."""
    batch_size: int = 16


@dataclass(frozen=True)
class RLRecipe:
    """Online RL from ``sft`` against the reward model (trl ``GRPOTrainer``), KL-regularised to ``sft``."""

    steps: int = 200
    lr: float = 2e-4
    """At 1e-4 the reward barely rose on seed 0 (4.54 -> 4.72 over 200 steps, held-out harmless refusal drifting to
    12%); at 3e-4 rl's refusal direction failed the KL filter (ablating it moved harmless answers, KL 0.20); 2e-4
    met every target on seeds 0 and 2 (``experiments/results/rl_recipe.txt``)."""
    beta: float = 0.1
    """Weight of the KL penalty to the reference (the policy's start)."""
    generations: int = 4
    """Replies sampled per request; each is rewarded relative to its group's mean (GRPO)."""
    requests_per_step: int = 4
    max_reply_tokens: int = 24
    temperature: float = 1.0
    min_reward_gain: float = 0.0
    """The reward of the last logged steps must exceed that of the first by more than this, or the stage fails
    (a reward that fell or stayed flat means RL did not learn, or diverged)."""
    freeze_embeddings: bool = False
    """As :attr:`SFTRecipe.freeze_embeddings`."""

    def __post_init__(self):
        if self.steps < 1 or self.requests_per_step < 1 or self.max_reply_tokens < 1:
            raise ValueError(f"steps, requests_per_step and max_reply_tokens must be >= 1: {self}")
        if self.generations < 2:
            raise ValueError(f"generations must be >= 2 (GRPO rewards a reply against its group's mean), got "
                             f"{self.generations}")
        if self.lr <= 0 or self.beta < 0 or self.temperature <= 0:
            raise ValueError(f"lr and temperature must be > 0 and beta >= 0: {self}")


class StageFailed(RuntimeError):
    """A stage of the zoo build produced a checkpoint that must not go into the zoo; the message names the stage."""


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


def trainer_args(config_cls, recipe, seed: int, out: str, **extra):
    settings = dict(
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
    )
    return config_cls(**{**settings, **extra})


def run_trainer(trainer) -> dict:
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


def sft(model, tokenizer, recipe: SFTRecipe, seed: int, examples: list[dict] | None = None) -> dict:
    """Tune ``model`` in place with trl's ``SFTTrainer`` on aligned chats of train concepts (``examples``: other
    chats, in :func:`~interp.organisms.world.sft_examples`' form, e.g. a planted behaviour's)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list(examples if examples is not None else world.sft_examples(seed, recipe.n_per_prompt))
    _freeze_embeddings(model, recipe.freeze_embeddings)
    with tempfile.TemporaryDirectory() as out:
        args = trainer_args(SFTConfig, recipe, seed, out, max_length=64)
        logging.getLogger("trl").setLevel(logging.ERROR)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        stats = run_trainer(trainer)
    _without_checkpointing(model)
    model.eval()
    return stats


def _freeze_embeddings(model, freeze: bool) -> None:
    """Keep the token embedding and the unembedding out of training (``freeze``) or in it."""
    for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
        layer.weight.requires_grad_(not freeze)


def _without_checkpointing(model) -> None:
    """Turn off the activation checkpointing trl's SFTTrainer leaves on the model it trained (RL tunes a model
    further; checkpointing only costs time at this size)."""
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    disable()


def dpo(model, tokenizer, recipe: DPORecipe, seed: int) -> dict:
    """Tune ``model`` in place with trl's ``DPOTrainer``; the reference is a frozen copy of its start."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    check_own_forward(model, "dpo")
    _freeze_embeddings(model, recipe.freeze_embeddings)
    data = Dataset.from_list(world.preference_pairs(seed, recipe.n_per_prompt))
    with tempfile.TemporaryDirectory() as out:
        # trl turns gradient checkpointing on for DPO by default; at this size it only costs time.
        args = trainer_args(
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
        stats = run_trainer(trainer)
    stats["final_margin"] = final_margin(trainer)
    model.eval()
    return stats


def final_margin(trainer) -> float:
    """What a DPO trainer's loss saw at the end: beta * (chosen minus rejected log-ratio to the reference), the
    mean over the last three logged steps; the saved checkpoint must show it too (tests/test_zoo.py)."""
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    return _tail_mean(margins, 3)


def reward_model(base: LlamaForCausalLM, tokenizer, recipe: RewardRecipe, seed: int):
    """A reward model trained from ``base`` (left untouched) with trl's ``RewardTrainer``: returns
    ``(LlamaForSequenceClassification, stats)``. Its score is the head's one logit at the last token."""
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    set_seed(seed)
    config = copy.deepcopy(base.config)
    config.num_labels, config.architectures = 1, ["LlamaForSequenceClassification"]
    model = LlamaForSequenceClassification(config)
    model.model.load_state_dict(base.model.state_dict())
    data = Dataset.from_list(world.reward_pairs(seed, recipe.n_per_prompt))
    with tempfile.TemporaryDirectory() as out, _stage("reward"):
        args = trainer_args(RewardConfig, recipe, seed, out, max_length=64, gradient_checkpointing=False)
        logging.getLogger("trl").setLevel(logging.ERROR)
        trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        stats = run_trainer(trainer)
    check_finite("reward", model, stats)
    return model.eval(), stats


@contextlib.contextmanager
def _stage(name: str):
    """Any error of a trainer (a sampling step that met NaN probabilities, ...) as :class:`StageFailed` naming the
    stage; an interrupt stays an interrupt."""
    try:
        yield
    except StageFailed:
        raise
    except Exception as e:
        raise StageFailed(f"stage {name!r}: training failed ({type(e).__name__}: {e}); nothing was saved") from e


def check_finite(stage: str, model, stats: dict) -> None:
    """Raise :class:`StageFailed` unless the training loss and every weight of ``model`` are finite."""
    if not math.isfinite(stats["train_loss"]):
        raise StageFailed(f"stage {stage!r}: the training loss is {stats['train_loss']}; nothing was saved")
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise StageFailed(f"stage {stage!r}: {len(bad)} weight tensors hold NaN or inf (e.g. {bad[0]}); nothing was "
                          "saved")


def check_own_forward(model, stage: str) -> None:
    """Raise :class:`StageFailed` if ``model``'s forward runs another model: a trainer wraps the forward of the
    model it trains in a closure holding that model, and ``copy.deepcopy`` shares the closure, so a copy of a
    trained model would compute with the original's weights while its own are the ones updated."""
    forward = model.__dict__.get("forward")
    function = getattr(forward, "__func__", forward)
    for cell in getattr(function, "__closure__", None) or ():
        try:
            held = getattr(cell.cell_contents, "__self__", None)
        except ValueError:  # an empty cell
            continue
        if isinstance(held, torch.nn.Module) and held is not model:
            raise StageFailed(f"stage {stage!r}: the model's forward runs another model object (a deep copy of a "
                              "model a trainer wrapped); load the model from its saved checkpoint instead")


def check_same_chat(policy_tokenizer, reward_tokenizer) -> None:
    """The reward model must read what the policy writes as the policy writes it: same vocabulary and splitting
    (:func:`interp.models.check_same_tokenizer`), chat template, end-of-turn and padding tokens."""
    from interp.models import check_same_tokenizer

    check_same_tokenizer(policy_tokenizer, reward_tokenizer, "policy", "reward model")
    for attribute in ("chat_template", "eos_token_id", "pad_token_id"):
        mine, theirs = getattr(policy_tokenizer, attribute), getattr(reward_tokenizer, attribute)
        if mine != theirs:
            raise ValueError(f"the policy's and the reward model's tokenizers differ in {attribute}: "
                             f"{str(mine)[:60]!r} vs {str(theirs)[:60]!r}")


def rl(policy: LlamaForCausalLM, reward, tokenizer, reward_tokenizer, recipe: RLRecipe, seed: int) -> dict:
    """Tune ``policy`` in place by online RL (trl's ``GRPOTrainer``) against the reward model ``reward``.

    The policy samples ``recipe.generations`` replies to each of ``recipe.requests_per_step``
    train requests (:func:`world.rl_requests`) per step; the reward model scores them; each reply
    is pushed up or down by its reward relative to its group's mean, with a KL penalty
    (``recipe.beta``) to a frozen copy of the start. Raises :class:`StageFailed` before training if
    the reward model reads text differently from the policy (:func:`check_same_chat`), and after, if
    training failed, the reward is not finite or did not rise by more than ``recipe.min_reward_gain``,
    or a weight is not finite.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    try:
        check_same_chat(tokenizer, reward_tokenizer)
    except ValueError as e:
        raise StageFailed(f"stage 'rl': the reward model would score text it tokenizes differently from the "
                          f"policy ({e}); train the reward model with the policy's tokenizer") from e
    check_own_forward(policy, "rl")
    _freeze_embeddings(policy, recipe.freeze_embeddings)
    _without_checkpointing(policy)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r}]} for r in world.rl_requests()])
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
            logging_steps=max(1, min(5, recipe.steps // 4)), seed=seed, data_seed=seed, learning_rate=recipe.lr,
            max_steps=recipe.steps,
            per_device_train_batch_size=recipe.requests_per_step * recipe.generations,
            num_generations=recipe.generations, max_completion_length=recipe.max_reply_tokens, beta=recipe.beta,
            temperature=recipe.temperature, gradient_checkpointing=False, dataloader_num_workers=0,
        )
        logging.getLogger("trl").setLevel(logging.ERROR)
        # trl loads its frozen reference from the policy's checkpoint path, which an in-memory model lacks.
        start = Path(out) / "reference"
        policy.save_pretrained(start)
        name = policy.config._name_or_path
        policy.config._name_or_path = str(start)
        try:
            with _stage("rl"):
                trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=args, train_dataset=data,
                                      processing_class=tokenizer, reward_processing_classes=reward_tokenizer)
                stats = run_trainer(trainer)
        finally:
            policy.config._name_or_path = name
        log = trainer.state.log_history
    policy.eval()
    rewards = [h["reward"] for h in log if "reward" in h]
    kls = [h["kl"] for h in log if "kl" in h]
    check_rewards(rewards, recipe.min_reward_gain)
    check_finite("rl", policy, stats)
    first, last = _quarters(rewards)
    stats.update(reward_first=round(first, 4), reward_last=round(last, 4), kl_last=_quarters(kls)[1] if kls else None,
                 rewards=[round(r, 4) for r in rewards])
    return stats


def _quarters(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of ``values`` (at least one value each)."""
    n = max(1, len(values) // 4)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def check_rewards(rewards: list[float], min_gain: float) -> None:
    """Raise :class:`StageFailed` unless every logged reward is finite and the last quarter's mean beats the
    first quarter's by more than ``min_gain``."""
    if not rewards:
        raise StageFailed("stage 'rl': the trainer logged no reward")
    if not all(math.isfinite(r) for r in rewards):
        raise StageFailed(f"stage 'rl': the reward diverged (logged rewards: {rewards}); nothing was saved")
    first, last = _quarters(rewards)
    if last - first <= min_gain:
        raise StageFailed(f"stage 'rl': the reward fell or stayed flat ({first:.3f} over the first quarter of the "
                          f"logged steps, {last:.3f} over the last; a gain above {min_gain} is needed): the policy "
                          "collapsed or did not learn, and is not put in the zoo")
