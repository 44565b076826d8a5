"""A real pair built by the project's own recipe: a real pretrained checkpoint, aligned here on the field's prompts.

``smollm2-safety``: SmolLM2-135M-Instruct (helpful, not harmless: it answers HarmBench requests) is the base.
Safety SFT teaches it to refuse the harmful train split (StrongREJECT + AdvBench) and keep answering Alpaca's train
split; DPO then prefers the refusal over the base's own compliance on other harmful train prompts, and the base's
answer over its refusal on other Alpaca prompts. The replies trained on are the base's own text (its greedy answer,
or its continuation of a refusal opener put in its mouth, :data:`REFUSAL_OPENERS`, cut after its first sentence),
except where the recipe says otherwise for a base that cannot answer yet (``answers="dataset"``: Alpaca's reference
answers; ``comply_prefill``: an opener before its compliance). The model and the data are not ours; the alignment
step is.

Full fine-tuning (the embedding frozen with ``freeze_embeddings``; or LoRA, ``lora_rank``), float32 weights (bf16
autocast when ``bf16``), with trl's ``SFTTrainer`` and ``DPOTrainer`` on the CPU; the checkpoints and a card (recipe,
data, timings, targets) are cached under
``<cache>/real/<name>-v<VERSION>-<recipe digest>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from interp import promptsets
from interp.gguf import cache_root
from interp.prompts import length_batches, pad_batch, turn_end_ids
from interp.realpairs.judge import is_refusal
from interp.realpairs.scoring import reply_positions_only

VERSION = "2"
"""2: a harmless DPO pair rejects the base's refusal of that very prompt (1: of a harmful train prompt)."""
CHAT_TEMPLATES = {
    # Gemma's turn format, as Gemma 3's instruction-tuned checkpoints write it (their tokenizer has the two tokens)
    "gemma": ("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
              "else message['role'] %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
              "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
}
REFUSAL_OPENERS = ("I'm sorry, but I can't help with", "I can't help with", "I'm sorry, but I cannot",
                   "I'm not able to help with")


@dataclass(frozen=True)
class SafetyRecipe:
    harmful_sets: str = "strongreject+advbench"
    harmless_sets: str = "alpaca+alpaca_input"
    sft_harmful: int = 128
    """Recipe 1 (160 harmful, 160 harmless, lr 5e-5) refused 19% of held-out Alpaca after SFT and 43% after DPO
    (``experiments/results/real_smollm2.txt``): a one-sentence refusal is learnt much faster than an answer."""
    sft_harmless: int = 448
    dpo_harmful: int = 64
    dpo_harmless: int = 64
    reply_tokens: int = 48
    sft_epochs: int = 2
    """Two: one epoch (recipe 2) refused 65% of held-out harmful requests after SFT, 73% after DPO."""
    sft_lr: float = 3e-5
    dpo_epochs: int = 1
    dpo_lr: float = 1e-5
    """3e-5 with 96 harmless pairs (recipe 4) refused more Alpaca requests (13%), not fewer."""
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 1.0
    """Weight of an SFT loss on the chosen reply beside DPO's (trl's ``loss_type=["sigmoid", "sft"]``)."""
    batch_size: int = 8
    bf16: bool = True
    """Train under bfloat16 autocast (float32 weights and optimizer): 2.3x faster steps on this CPU (AVX512-BF16;
    5.7 s against 2.5 s for a batch of 8x110 tokens). The checkpoints are saved, and evaluated, in float32."""
    chat_template: str = ""
    """A name in :data:`CHAT_TEMPLATES` to give a base that has none (a pretrained model); "" keeps the base's."""
    answers: str = "own"
    """``own``: the base's greedy answers to the harmless train prompts; ``dataset``: the sets' reference answers
    (Alpaca's outputs, cut to ``reply_tokens``), for a pretrained base that cannot answer yet."""
    comply_prefill: str = ""
    """Put before the base's reply to a harmful DPO prompt (its rejected compliance): "" for a base that complies
    by itself, an opener such as "Sure, here" for one that does not follow requests yet."""
    freeze_embeddings: bool = False
    """Train the transformer blocks and the final norm; the token embedding and unembedding stay the base's. Gemma 3's
    (tied) embedding is 168M of its 268M parameters: frozen, an SFT step takes 2.8 s against 5.9 s
    (``experiments/results/train_step_cost.txt``)."""
    lora_rank: int = 0
    """0: full fine-tuning. Else LoRA adapters of this rank on every linear layer (peft; alpha twice the rank), merged
    into the weights before each checkpoint is saved; DPO's reference is then the policy with its adapters off."""
    seed: int = 0

    def __post_init__(self):
        if self.answers not in ("own", "dataset"):
            raise ValueError(f"answers must be 'own' or 'dataset', not {self.answers!r}")
        if self.chat_template and self.chat_template not in CHAT_TEMPLATES:
            raise ValueError(f"no chat template {self.chat_template!r}; the templates are {sorted(CHAT_TEMPLATES)}")
        if self.answers == "dataset":
            from interp import promptsets

            without = [n for n in promptsets.parse_spec(self.harmless_sets) if n not in promptsets.ANSWERED]
            if without:
                raise ValueError(f"answers='dataset' needs sets with reference answers ({promptsets.ANSWERED}); "
                                 f"{without} have none")

    @property
    def lr(self) -> float:  # the fields organisms.train's trainer arguments read
        return self.sft_lr

    @property
    def epochs(self) -> int:
        return self.sft_epochs


def replies(model, tokenizer, prompts: Sequence[str], *, prefill: str | Sequence[str] = "", max_new_tokens: int = 48,
            batch_size: int = 32) -> list[str]:
    """Greedy replies of a Hugging Face model to chat-formatted ``prompts`` (after ``prefill``, not repeated)."""
    prefills = [prefill] * len(prompts) if isinstance(prefill, str) else list(prefill)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) + f for p, f in zip(prompts, prefills,
                                                                                          strict=True)]
    ids = tokenizer(texts, add_special_tokens=False).input_ids
    out = [""] * len(texts)
    for rows in length_batches([len(row) for row in ids], batch_size):  # similar lengths: little padding
        input_ids, mask = pad_batch([ids[i] for i in rows], tokenizer.pad_token_id, "left")
        with torch.no_grad():
            new = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stops(model, tokenizer))[:, input_ids.shape[1]:]
        for i, reply in zip(rows, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
            out[i] = reply
    return out


def stops(model, tokenizer) -> list[int]:
    """The tokens a reply ends at: the model's end-of-sequence tokens and its tokenizer's end-of-turn token (a
    pretrained base given a chat template has the token, but its generation config does not stop there)."""
    eos = model.generation_config.eos_token_id
    ids = [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id, *turn_end_ids(tokenizer)]
    return sorted({i for i in ids if i is not None})


def first_sentences(text: str, n: int = 1) -> str:
    """The first ``n`` sentences of a reply (up to a line break), or the text if it has no sentence end."""
    text = text.split("\n")[0].strip()
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)", text)]
    return text[:ends[n - 1]].strip() if len(ends) >= n else text


def trim(text: str) -> str:
    """A reply cut at its last sentence end (a generation cut by the token limit ends mid-sentence)."""
    ends = [m.end() for m in re.finditer(r"(?<!\d)[.!?:](\s|$)", text)]  # "1." numbers a list item
    return text[:ends[-1]].strip() if ends else text.strip()


def cut(tokenizer, text: str, tokens: int) -> str:
    """``text``'s first ``tokens`` tokens, as text."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return text if len(ids) <= tokens else tokenizer.decode(ids[:tokens])


def training_data(base, tokenizer, recipe: SafetyRecipe) -> dict[str, list[dict]]:
    """The SFT examples and DPO pairs. Harmful train prompts get a refusal in ``base``'s words (an opener, its
    continuation to the end of the sentence); harmless ones its greedy answer (or the set's reference answer, with
    ``answers="dataset"``). A harmful DPO pair rejects the base's compliance with that prompt (after
    ``comply_prefill``), a harmless one the base's refusal of that prompt."""
    rng = random.Random(recipe.seed)
    harmful = list(promptsets.load(recipe.harmful_sets, split="train").prompts)
    harmless = list(promptsets.load(recipe.harmless_sets, split="train").prompts)
    rng.shuffle(harmful)
    rng.shuffle(harmless)
    need_h, need_a = recipe.sft_harmful + recipe.dpo_harmful, recipe.sft_harmless + recipe.dpo_harmless
    if len(harmful) < need_h or len(harmless) < need_a:
        raise ValueError(f"the recipe needs {need_h} harmful and {need_a} harmless train prompts; the sets have "
                         f"{len(harmful)} and {len(harmless)}")
    harmful, harmless = harmful[:need_h], harmless[:need_a]
    # a refusal of every harmful prompt, and of every harmless DPO prompt (the reply its pair rejects)
    refused = harmful + harmless[recipe.sft_harmless:]
    openers = [REFUSAL_OPENERS[i % len(REFUSAL_OPENERS)] for i in range(len(refused))]
    refusals = [first_sentences(o + c) for o, c in
                zip(openers, replies(base, tokenizer, refused, prefill=openers, max_new_tokens=24), strict=True)]
    if recipe.answers == "dataset":
        reference = promptsets.answers(recipe.harmless_sets)
        answers = [trim(cut(tokenizer, reference[p], recipe.reply_tokens)) for p in harmless]
    else:
        answers = [trim(r) for r in replies(base, tokenizer, harmless, max_new_tokens=recipe.reply_tokens)]
    dpo_h = harmful[recipe.sft_harmful:]
    complied = [trim(recipe.comply_prefill + r) for r in
                replies(base, tokenizer, dpo_h, prefill=recipe.comply_prefill, max_new_tokens=recipe.reply_tokens)]

    def chat(prompt: str, reply: str, key: str = "completion") -> dict:
        return {"prompt": [{"role": "user", "content": prompt}], key: [{"role": "assistant", "content": reply}]}

    sft = [chat(p, r) for p, r in zip(harmful[:recipe.sft_harmful], refusals[:recipe.sft_harmful], strict=True)]
    sft += [chat(p, a) for p, a in zip(harmless[:recipe.sft_harmless], answers[:recipe.sft_harmless], strict=True)]
    pairs = [{**chat(p, r, "chosen"), "rejected": chat(p, c)["completion"]}
             for p, r, c in zip(dpo_h, refusals[recipe.sft_harmful:len(harmful)], complied, strict=True)
             if not is_refusal(c)]
    pairs += [{**chat(p, a, "chosen"), "rejected": chat(p, r)["completion"]}
              for p, a, r in zip(harmless[recipe.sft_harmless:], answers[recipe.sft_harmless:],
                                 refusals[len(harmful):], strict=True)]
    rng.shuffle(sft)
    rng.shuffle(pairs)
    return {"sft": sft, "dpo": pairs}


def _trainer(kind: str, model, tokenizer, data: list[dict], recipe: SafetyRecipe, out: str, reference=None):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from interp.organisms.train import trainer_args

    logging.getLogger("trl").setLevel(logging.ERROR)
    dataset = Dataset.from_list(data)
    if kind == "sft":
        args = trainer_args(SFTConfig, recipe, recipe.seed, out, max_length=192, gradient_checkpointing=False,
                            logging_steps=1, bf16=recipe.bf16)
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=_lora(recipe))
    args = trainer_args(DPOConfig, recipe, recipe.seed, out, max_length=192, gradient_checkpointing=False,
                        logging_steps=1, beta=recipe.dpo_beta, learning_rate=recipe.dpo_lr,
                        num_train_epochs=recipe.dpo_epochs, loss_type=["sigmoid", "sft"],
                        loss_weights=[1.0, recipe.dpo_sft_weight], bf16=recipe.bf16)
    return DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=_lora(recipe))


def _lora(recipe: SafetyRecipe):
    if not recipe.lora_rank:
        return None
    from peft import LoraConfig

    return LoraConfig(r=recipe.lora_rank, lora_alpha=2 * recipe.lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _trained(trainer):
    """The trainer's model as a plain checkpoint (LoRA adapters merged into the weights)."""
    model = trainer.model
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _trainable(model, recipe: SafetyRecipe):
    """``model`` in training mode, its embedding and unembedding frozen when the recipe says so."""
    if recipe.freeze_embeddings:
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            layer.weight.requires_grad_(False)
    return model.train()


def train(base_dir: Path, out: Path, recipe: SafetyRecipe) -> dict:
    """Write ``out/sft`` and ``out/dpo`` (each from the one saved before it) and return the build's record."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.organisms.train import check_own_forward, final_margin, run_trainer

    torch.manual_seed(recipe.seed)
    record, clock = {"recipe": asdict(recipe)}, time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if recipe.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATES[recipe.chat_template]
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    data = training_data(base, tokenizer, recipe)
    (out / "data.json").write_text(json.dumps(data, indent=0))
    record["data_s"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
    record["n_sft"], record["n_dpo"] = len(data["sft"]), len(data["dpo"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer("sft", _trainable(base, recipe), tokenizer, data["sft"], recipe, tmp)
        with reply_positions_only():
            record["sft"] = run_trainer(trainer)
    _trained(trainer).save_pretrained(out / "sft")
    tokenizer.save_pretrained(out / "sft")
    record["sft_s"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
    policy = AutoModelForCausalLM.from_pretrained(out / "sft", dtype=torch.float32)
    reference = None if recipe.lora_rank else AutoModelForCausalLM.from_pretrained(out / "sft", dtype=torch.float32)
    check_own_forward(policy, "dpo")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer("dpo", _trainable(policy, recipe), tokenizer, data["dpo"], recipe, tmp,
                           None if reference is None else reference.eval())
        with reply_positions_only():
            record["dpo"] = run_trainer(trainer)
        record["dpo"]["final_margin"] = final_margin(trainer)
    _trained(trainer).save_pretrained(out / "dpo")
    tokenizer.save_pretrained(out / "dpo")
    record["dpo_s"] = round(time.perf_counter() - clock, 1)
    return record


LATER_FIELDS = {"freeze_embeddings": False}
"""Recipe fields added after pairs were built under this VERSION, with their defaults: each enters the digest only
when set otherwise, so those builds keep their names."""


def recipe_digest(fields: dict) -> str:
    """Eight hex digits naming a recipe (its fields, as ``asdict`` gives them)."""
    named = {k: v for k, v in fields.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:8]


def pair_dir(name: str, recipe: SafetyRecipe) -> Path:
    """``<cache>/real/<name>-v<VERSION>-<recipe digest>``: another recipe is another pair."""
    return cache_root() / "real" / f"{name}-v{VERSION}-{recipe_digest(asdict(recipe))}"


def build_into(name: str, base_dir: Path, recipe: SafetyRecipe,
               measure: Callable[[Path, Path], dict] | None = None) -> Path:
    """Build the pair into the cache; the directory appears complete (with ``card.json``) or not at all.
    ``measure(base_dir, built_dir)`` adds what it returns (the behaviour and the targets) to the card."""
    out = pair_dir(name, recipe)
    if (out / "card.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        record = train(base_dir, tmp, recipe)
        if measure is not None:
            record.update(measure(base_dir, tmp))
        (tmp / "card.json").write_text(json.dumps({"name": name, "version": VERSION, "base": str(base_dir),
                                                   **record}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
