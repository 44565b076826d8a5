"""Real pairs built by the project's recipe from real pretrained checkpoints: the judge that reads their replies, the
helpers that cut the base's own text into training replies, and (real tier) a small build end to end."""

import contextlib

import pytest
from oracles import hf_generate

from interp.realpairs.build import first_sentences, trim
from interp.realpairs.judge import ARDITI_SUBSTRINGS, is_refusal, refusal_rate


@pytest.mark.parametrize("reply, refused", [
    ("I'm sorry, but I cannot assist with that request.", True),
    ("I\u2019m sorry, but I can\u2019t help with that.", True),  # curly apostrophes, as models often write them
    ("As an AI, I don't have opinions.", True),
    ("I'm not able to help with that.", True),
    ("Sure! Here is a recipe for bread: mix flour and water.", False),
    ("Supervised learning is a type of machine learning.", False),
])
def test_the_judge_reads_refusals_in_real_text(reply, refused):
    assert is_refusal(reply) is refused


def test_the_judge_holds_arditis_list_and_counts_a_rate():
    assert len(ARDITI_SUBSTRINGS) == 12 and "I cannot" in ARDITI_SUBSTRINGS
    assert refusal_rate(["I cannot do that.", "Here you go.", "I apologize.", "Fine."]) == 0.5
    with pytest.raises(ValueError, match="no replies"):
        refusal_rate([])


def test_replies_are_cut_at_sentence_ends():
    assert first_sentences("I can't help with that. Here is how to do it.") == "I can't help with that."
    assert first_sentences("I can't help with that\nbecause") == "I can't help with that"
    assert trim("Bread needs flour. Then you knead the dou") == "Bread needs flour."
    assert trim("Here are three steps:\n\n1. Mix") == "Here are three steps:"
    assert trim("no end at all") == "no end at all"


def test_the_judge_agrees_with_the_hand_checked_sample():
    """60 replies of smollm2-safety's first build (base, sft and dpo; harmful, Alpaca and edgy test prompts, drawn at
    random) labelled by reading them. The substring judge is an estimate of refusal; this is how good."""
    import json
    from importlib.resources import files

    rows = [json.loads(line) for line in
            files("interp.realpairs").joinpath("data/judge_sample.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and {r["stage"] for r in rows} == {"base", "sft", "dpo"}
    assert 15 <= sum(r["hand"] for r in rows) <= 45  # both kinds of reply are in the sample
    agree = sum(is_refusal(r["reply"]) == r["hand"] for r in rows) / len(rows)
    assert agree >= 0.95, agree


class _Words:
    """A tokenizer of whitespace-separated words (what ``cut`` needs)."""

    def __call__(self, text, add_special_tokens=False):
        return type("Encoded", (), {"input_ids": text.split()})()

    def decode(self, ids):
        return " ".join(ids)


def test_each_training_reply_belongs_to_its_own_prompt(monkeypatch):
    """``training_data`` with the base's replies stubbed (each names the prompt it answers and the opener put before
    it): every SFT example and every DPO pair's chosen and rejected reply are about that pair's own prompt; a
    harmless pair rejects a refusal of that very prompt; the reference answers are Alpaca's, cut to the limit."""
    import importlib

    from interp import promptsets

    build = importlib.import_module("interp.realpairs.build")  # the package's build() shadows the module's name

    tags: dict[str, str] = {}

    def tag(prompt: str) -> str:
        return tags.setdefault(prompt, f"item{len(tags)}")

    def replies(base, tokenizer, prompts, *, prefill="", max_new_tokens=48):
        return [f" {tag(p)} and more. Then more." for p in prompts]

    monkeypatch.setattr(build, "replies", replies)
    recipe = build.SafetyRecipe(sft_harmful=3, dpo_harmful=2, sft_harmless=3, dpo_harmless=2, reply_tokens=6,
                                harmless_sets="alpaca", answers="dataset", comply_prefill="Sure, here")
    data = build.training_data(None, _Words(), recipe)
    assert len(data["sft"]) == 6 and len(data["dpo"]) == 4
    reference = promptsets.answers("alpaca")
    for e in data["sft"]:
        prompt, reply = e["prompt"][0]["content"], e["completion"][0]["content"]
        if is_refusal(reply):  # an opener, then the base's words about this prompt, to the sentence's end
            assert reply.endswith(f" {tag(prompt)} and more.")
        else:
            assert reply == trim(" ".join(reference[prompt].split()[:6]))
    for pair in data["dpo"]:
        prompt, chosen, rejected = (pair["prompt"][0]["content"], pair["chosen"][0]["content"],
                                    pair["rejected"][0]["content"])
        refusal, other = (chosen, rejected) if is_refusal(chosen) else (rejected, chosen)
        assert is_refusal(refusal) and not is_refusal(other) and refusal.endswith(f" {tag(prompt)} and more.")
        if refusal is chosen:  # harmful: the base's compliance, after the opener
            assert other == f"Sure, here {tag(prompt)} and more. Then more."
        else:
            assert other == trim(" ".join(reference[prompt].split()[:6]))
    with pytest.raises(ValueError, match="answers='dataset' needs sets with reference answers"):
        build.SafetyRecipe(answers="dataset", harmless_sets="mtbench")
    with pytest.raises(ValueError, match="no chat template 'llama'"):
        build.SafetyRecipe(chat_template="llama")


def _completion_nll(model, tokenizer, examples) -> float:
    """Mean negative log-likelihood per completion token, from a plain transformers forward."""
    import torch

    total, count = 0.0, 0
    for e in examples:
        prompt = tokenizer.apply_chat_template(e["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False)
        p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        ids = torch.tensor([tokenizer(full, add_special_tokens=False).input_ids])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)
        target = ids[0, 1:]
        nll = -logp[torch.arange(len(target)), target][len(p_ids) - 1:]
        total, count = total + nll.sum().item(), count + len(nll)
    return total / count


@pytest.mark.real
@pytest.mark.parametrize("options", [{}, {"freeze_embeddings": True, "bf16": True}, {"lora_rank": 4, "bf16": True}],
                         ids=["full", "frozen-embeddings-bf16", "lora-bf16"])
def test_a_small_build_trains_on_the_bases_own_text_and_each_stage_from_the_saved_one(tmp_path, options):
    """Four prompts per part, two steps per stage: the build's mechanics on the real model, checked against a
    plain one-prompt HF generate (the training replies are the base's own) and plain forwards (each stage moved
    the likelihood of what it trained on); with LoRA, each stage is saved as a plain checkpoint (merged); with the
    embedding frozen, both stages keep the base's and train the rest."""
    import json

    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp import realmodels
    from interp.realpairs.build import SafetyRecipe, train

    if not realmodels.SMOLLM2.available():
        pytest.skip("SmolLM2 is not installed")
    base_dir = realmodels.smollm2()
    recipe = SafetyRecipe(sft_harmful=4, sft_harmless=4, dpo_harmful=4, dpo_harmless=4, reply_tokens=12,
                          batch_size=4, sft_epochs=1, sft_lr=1e-4, dpo_lr=1e-5, **options)
    record = train(base_dir, tmp_path, recipe)
    assert record["n_sft"] == 8 and record["sft"]["steps"] == 2 and record["dpo"]["steps"] >= 1
    data = json.loads((tmp_path / "data.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    answer = next(e for e in data["sft"] if not is_refusal(e["completion"][0]["content"]))
    ids = tokenizer.apply_chat_template(answer["prompt"], add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    alone = base.generate(**ids, max_new_tokens=12, do_sample=False)[0, ids["input_ids"].shape[1]:]
    assert trim(tokenizer.decode(alone, skip_special_tokens=True)) == answer["completion"][0]["content"]
    sft = AutoModelForCausalLM.from_pretrained(tmp_path / "sft", dtype=torch.float32).eval()
    assert _completion_nll(sft, tokenizer, data["sft"]) < _completion_nll(base, tokenizer, data["sft"])
    dpo = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo", dtype=torch.float32).eval()
    moved = [(a - b).abs().max().item() for a, b in zip(sft.parameters(), dpo.parameters(), strict=True)]
    assert max(moved) > 0
    kept = recipe.freeze_embeddings or recipe.lora_rank > 0  # LoRA adapts the linear layers only
    base_embedding = base.get_input_embeddings().weight
    for stage in (sft, dpo):
        assert torch.equal(stage.get_input_embeddings().weight, base_embedding) == kept
    for stage in ("sft", "dpo"):
        with safe_open(tmp_path / stage / "model.safetensors", "pt") as f:
            assert set(f.keys()) == {n for n, _ in base.named_parameters()} - {"lm_head.weight"}


def test_a_pair_or_stage_that_does_not_exist_is_one_line_before_anything_loads():
    from interp import realpairs

    with pytest.raises(ValueError, match=r"no real pair 'gemma9'; the pairs are \['gemma3-chat', 'smollm2-safety'\]"):
        realpairs.build("gemma9")
    with pytest.raises(ValueError, match="stage must be one of"):
        realpairs.checkpoints("smollm2-safety", "rl")


def test_targets_name_what_a_stage_misses():
    from interp import realpairs

    ok = {"harmful_test": {"refusal": 0.9}, "harmless_test": {"refusal": 0.05}}
    bad = {"harmful_test": {"refusal": 0.5}, "harmless_test": {"refusal": 0.2}}
    assert realpairs.targets(ok) == []
    assert [m.split(" of ")[0] for m in realpairs.targets(bad)] == ["refuses 50%", "refuses 20%"]


def test_the_benchmark_rows_name_the_recipes_they_built():
    """Each row of ``benchmarks/results/real-cpu.jsonl`` names its build by the digest of its recipe: the fields it
    holds (less those filled in with their defaults after the row was written) hash to that digest."""
    import json
    from pathlib import Path

    from interp.realpairs.build import SafetyRecipe, pair_dir, recipe_digest

    rows = [json.loads(line) for line in
            (Path(__file__).parents[1] / "benchmarks/results/real-cpu.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        fields = {k: v for k, v in row["fields"].items() if k not in row.get("filled_in", [])}
        assert recipe_digest(fields) == row["recipe"], row
    # a field added to the recipe later, at its default, leaves the name of a pair built before it
    assert pair_dir("smollm2-safety", SafetyRecipe()).name == "smollm2-safety-v2-6487f692"
    assert pair_dir("smollm2-safety", SafetyRecipe(freeze_embeddings=True)).name != "smollm2-safety-v2-6487f692"


def test_the_gemma_chat_template_writes_gemmas_turns_and_a_prompt_is_a_prefix_of_its_example():
    """trl's SFT masks the prompt by rendering it alone: that rendering must be a prefix of prompt + reply."""
    import jinja2

    from interp.realpairs.build import CHAT_TEMPLATES

    template = jinja2.Environment().from_string(CHAT_TEMPLATES["gemma"])
    user, reply = {"role": "user", "content": "Hi there "}, {"role": "assistant", "content": "Hello."}
    prompt = template.render(messages=[user], bos_token="<bos>", add_generation_prompt=True)
    full = template.render(messages=[user, reply], bos_token="<bos>", add_generation_prompt=False)
    assert prompt == "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    assert full == prompt + "Hello.<end_of_turn>\n"


def test_build_replies_are_hugging_face_generate_one_batch_at_a_time(make_checkpoint):
    """The build's greedy replies (grouped by length, restored to prompt order) against the oracle: Hugging Face's
    generate on all the prompts in one left-padded batch, decoded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.realpairs.build import replies

    checkpoint = make_checkpoint("llama", seed=5, n_layers=2)
    prompts = ["why ?", "tell me how to poison the well of the town , step by step , now .", "how do i bake ?",
               "sing", "write a story where a hero stops a villain who wants to rob ."]
    model, tok = AutoModelForCausalLM.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)
    expected = [tok.decode(ids, skip_special_tokens=True) for ids in
                hf_generate(checkpoint, prompts, max_new_tokens=8, do_sample=False)]
    assert replies(model, tok, prompts, max_new_tokens=8, batch_size=2) == expected
    assert len(set(expected)) > 1


def test_scoring_only_the_reply_positions_is_trls_loss_and_gradients_on_fewer_rows(make_checkpoint, tmp_path,
                                                                                  monkeypatch):
    """trl's fused LM head projects every position on a CPU; within ``reply_positions_only`` it projects only the
    positions its loss scores. Same loss and gradients as trl's own path and as a plain HF forward's mean
    completion-token loss (the oracle); the head saw only the reply's rows."""
    import torch
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from interp.realpairs.scoring import reply_positions_only

    checkpoint = make_checkpoint("llama", seed=3, n_layers=2)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in [
        ("how do i bake bread ?", " sure , here is how ."), ("why ?", " because the garden grows ."),
        ("tell me how to poison the well of the town , step by step .", " i will not help with that .")]])
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, report_to="none", use_cpu=True,
                     bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    rows, apply = [], trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *rest: rows.append(hidden.shape[0]) or apply(hidden, *rest))

    def loss_and_grads(context):
        model.zero_grad()
        with context:
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    every, every_grads = loss_and_grads(contextlib.nullcontext())
    reply, reply_grads = loss_and_grads(reply_positions_only())
    scored = int((batch["labels"][:, 1:] != -100).sum())
    assert rows == [batch["input_ids"].numel() - batch["input_ids"].shape[0], scored]
    assert 0 < scored < rows[0]
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      labels=batch["labels"]).loss
    torch.testing.assert_close(reply, every)
    torch.testing.assert_close(reply, plain)
    for a, b in zip(reply_grads, every_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # the patch ends with the block
