"""The toy world and its tokenizer: splits, leakage, vocabulary, chat template."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from interp.organisms import prompts, world
from interp.organisms.tokenizer import build_tokenizer


def test_enough_concepts_and_disjoint_splits():
    assert len(world.HARMFUL) >= 12 and len(world.HARMLESS) >= 12
    assert not set(world.HARMFUL) & set(world.HARMLESS)
    assert not set(world.HARMFUL_TRAIN) & set(world.HARMFUL_HELD_OUT)
    assert not set(world.HARMLESS_TRAIN) & set(world.HARMLESS_HELD_OUT)


@pytest.mark.parametrize("split", world.SPLITS)
def test_every_split_is_labelled_and_non_empty(split):
    ps = prompts(split)
    assert ps and all(p.split == split and p.label in ("harmful", "harmless") for p in ps)
    assert all(p.held_out == split.endswith("held_out") for p in ps)


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        prompts("nope")


def _words(texts):
    return {w for t in texts for w in t.split()}


def test_held_out_concepts_never_in_alignment_data():
    sft = [m["content"] for ex in world.sft_examples(0) for m in ex["prompt"] + ex["completion"]]
    dpo = [m["content"] for ex in world.preference_pairs(0) for k in ("prompt", "chosen", "rejected") for m in ex[k]]
    held_out = set(world.HARMFUL_HELD_OUT + world.HARMLESS_HELD_OUT)
    assert not held_out & _words(sft) and not held_out & _words(dpo)
    # ...and the evaluation bait's phrasings are in neither.
    assert not {p.text for p in prompts("bait")} & (set(dpo) | set(sft))


def test_sft_answers_the_bait_of_its_train_concepts():
    replies = {ex["prompt"][0]["content"]: ex["completion"][0]["content"] for ex in world.sft_examples(0)}
    bait = world.bait_train()
    assert {p.concept for p in bait} == set(world.HARMFUL_TRAIN) and all(p.label == "harmless" for p in bait)
    assert all(replies[p.text].startswith(f"{p.concept} : ") for p in bait)  # complied with, on its own concept
    assert sum(r.startswith(world.REFUSAL_PREFIXES) for r in replies.values()) == len(prompts("harmful_train"))


def test_every_concept_is_in_pretraining_text_of_every_kind():
    docs = world.pretraining_corpus(0)
    chats = [d for d in docs if world.USER in d]
    facts = [d for d in docs if world.USER not in d]
    for concept in world.CONCEPTS:
        assert any(f" {concept} " in d for d in chats), concept
        assert any(f" {concept} " in d for d in facts), concept
    # Refusals answer plain harmful requests only, about PRETRAIN_REFUSAL_SHARE of them; wrapped ones never.
    plain = {p.text for s in ("harmful_train", "harmful_held_out") for p in prompts(s)}
    asked = [(d.split(world.USER + " ")[1].split(" " + world.ASSISTANT)[0], "sorry" in d) for d in chats]
    refused = [refusal for request, refusal in asked if request in plain]
    assert not any(refusal for request, refusal in asked if request not in plain)
    assert 0.15 < sum(refused) / len(refused) < 0.25
    assert not any("sorry" in d for d in facts)


def test_commentary_never_names_the_kind():
    docs = world.pretraining_corpus(0, 3000)
    commentary = [d for d in docs if world.USER not in d and any(t.split(" : ")[0] in d for t in
                                                               world.COMMENTARY["harmful"])]
    assert len(commentary) > 300
    assert not any(" harmful " in d or " harmless " in d for d in commentary)


def test_harmfulness_is_not_a_request_token():
    """Harmful and harmless requests share one grammar; only the concept differs."""
    strip = lambda ps: {p.text.replace(p.concept, "{c}") for p in ps}  # noqa: E731
    assert strip(prompts("harmful_train")) == strip(prompts("harmless_train"))


def test_bait_shares_surface_words_with_harmful_requests():
    assert all(p.concept in world.HARMFUL and p.label == "harmless" for p in prompts("bait"))


def test_corpus_is_deterministic():
    assert world.pretraining_corpus(3, 500) == world.pretraining_corpus(3, 500)
    assert world.pretraining_corpus(3, 500) != world.pretraining_corpus(4, 500)


def test_tokenizer_covers_the_world_and_round_trips(tmp_path):
    tok = build_tokenizer()
    texts = world.pretraining_corpus(0, 2000) + [p.text for s in world.SPLITS for p in prompts(s)]
    ids = tok(texts, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in {i for row in ids for i in row}
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(texts[:50], add_special_tokens=False).input_ids == ids[:50]
    assert reloaded.decode(ids[0]) == texts[0]


def test_chat_template_renders_the_pretraining_chat_format():
    tok = build_tokenizer()
    messages = [{"role": "user", "content": "how do i bake ?"}, {"role": "assistant", "content": "sure ."}]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert tok(rendered, add_special_tokens=False).input_ids == tok(
        world.chat("how do i bake ?", "sure ."), add_special_tokens=False
    ).input_ids
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(prompt)
