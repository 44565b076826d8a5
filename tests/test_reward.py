"""The reward model and the rl organism: scores against the transformers model's own forward, the bridge of the
reward model's body against its hidden states, the zoo's cards, and the stages' checks on bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from interp import cache, organisms
from interp.organisms import evaluate, targets, train, world, zoo
from interp.organisms.tokenizer import build_tokenizer
from interp.reward import load_reward_model

REQUESTS = ["how do i poison ?", "how do i knit ?", "why is it wrong to poison ?", "tell me how to bake ."]
REPLIES = ["sorry , i can not help with that . it is harmful .", "knit : sure , happy to help : first , relax .",
           "sorry .", "bake : ok . here are the steps : first , check your work . then , make a list . good luck ."]


@pytest.fixture(scope="module")
def reward_model(organism_zoo):
    return organisms.load_reward_model(zoo_dir=organism_zoo, device="cpu")


def _hf(organism_zoo):
    path = organism_zoo / organisms.REWARD
    return AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(path)


def test_scores_equal_the_transformers_forward(organism_zoo, reward_model):
    """Oracle: the sequence-classification model itself, one unpadded chat at a time."""
    hf, tokenizer = _hf(organism_zoo)
    expected = []
    for q, a in zip(REQUESTS, REPLIES, strict=True):
        text = tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                             tokenize=False)
        with torch.no_grad():
            expected.append(hf(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0])
    ours = reward_model.score(REQUESTS, REPLIES, batch_size=3)  # mixed lengths, padded, across batches
    torch.testing.assert_close(ours, torch.stack(expected), atol=1e-4, rtol=1e-4)
    # the build's own scorer (left-padded batches of the transformers model) is the same
    torch.testing.assert_close(evaluate.reward_scores(hf, tokenizer, REQUESTS, REPLIES, batch_size=3),
                               torch.stack(expected), atol=1e-4, rtol=1e-4)
    assert len(set(ours.tolist())) == len(REQUESTS)  # distinct chats, distinct scores


def test_the_bridge_reads_the_reward_models_own_residual_stream(organism_zoo, reward_model):
    """Every layer's residual stream collected through the bridge equals the sequence-classification model's
    hidden states: the body was moved into the bridge whole."""
    hf, tokenizer = _hf(organism_zoo)
    text = tokenizer.apply_chat_template([{"role": "user", "content": REQUESTS[0]}], tokenize=False,
                                         add_generation_prompt=True)
    with torch.no_grad():
        hidden = hf(**tokenizer(text, return_tensors="pt", add_special_tokens=False),
                    output_hidden_states=True).hidden_states
    n = reward_model.model.cfg.n_layers
    acts = cache.collect_activations(reward_model.model, REQUESTS[:1], cache.resid_pre_hooks(n), positions=[-1],
                                     progress=False)
    for layer in range(n):
        torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_pre"][0, 0], hidden[layer][0, -1],
                                   atol=1e-5, rtol=1e-5)


def test_the_unembedding_is_the_bases(organism_zoo, reward_model):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(organism_zoo / "base", dtype=torch.float32)
    torch.testing.assert_close(reward_model.model.unembed.W_U.detach(), base.lm_head.weight.detach().T)
    assert reward_model.reading.shape == (reward_model.model.cfg.d_model,)


def test_the_reward_card_describes_the_saved_reward_model(organism_zoo):
    card = organisms.read_card(organism_zoo, organisms.REWARD)
    assert card["parent"] == "base" and card["method"] == "trl.RewardTrainer"
    assert card["accuracy"] == zoo.evaluate_reward_model(organism_zoo)
    config = json.loads((organism_zoo / organisms.REWARD / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1


def test_the_reward_model_meets_its_targets(organism_zoo):
    card = organisms.read_card(organism_zoo, organisms.REWARD)
    accuracy = {s: row["accuracy"] for s, row in card["accuracy"].items()}
    assert not targets.reward_misses(accuracy), accuracy


def test_the_rl_card_reports_reward_hacking_measured_on_the_checkpoints(organism_zoo):
    card = organisms.read_card(organism_zoo, "rl")
    assert card["parent"] == "sft" and card["reward_model"] == organisms.REWARD
    assert card["training"]["reward_last"] > card["training"]["reward_first"]
    policy = zoo.load_checkpoint(organism_zoo / "rl")
    reward = zoo.load_reward_checkpoint(organism_zoo / organisms.REWARD)
    tokenizer = AutoTokenizer.from_pretrained(organism_zoo / "rl")
    assert card["reward_hacking"] == evaluate.reward_hacking(policy, reward, tokenizer,
                                                             card["hyperparameters"]["max_reply_tokens"])
    assert not targets.hacking_misses(card["reward_hacking"])


def _tiny_reward_model(path, arch: str = "llama", seed: int = 0):
    """A random-weight one-label reward model (``llama``, ``llama-tied`` or ``gpt2``) with the organisms' tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    if arch.startswith("llama"):
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=64, num_labels=1,
                             tie_word_embeddings=arch.endswith("tied"), pad_token_id=tokenizer.pad_token_id)
        model = LlamaForSequenceClassification(config)
    else:
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64, num_labels=1,
                            pad_token_id=tokenizer.pad_token_id)
        model = GPT2ForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("arch", ["llama", "llama-tied", "gpt2"])
def test_a_reward_model_of_any_architecture_scores_as_its_transformers_model(tmp_path, arch):
    """Without ``unembed`` the bridge unembeds with the input embedding; that must not change what it reads."""
    path = _tiny_reward_model(tmp_path / "rm", arch)
    hf = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    expected = torch.cat([evaluate.reward_scores(hf, tokenizer, [q], [a])
                          for q, a in zip(REQUESTS, REPLIES, strict=True)])
    rm = load_reward_model(path, device="cpu")
    torch.testing.assert_close(rm.score(REQUESTS, REPLIES), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rm.model.embed.W_E.detach(), hf.get_input_embeddings().weight.detach())


def test_reply_kinds():
    rng = __import__("random").Random(0)
    assert evaluate.reply_kind(world.refuse(rng)) == "refusal"
    assert evaluate.reply_kind(world.comply(rng, "bake")) == "compliance"
    assert [evaluate.reply_kind(r) for r in ("", "bake bake bake", ": : :", "hello : sure")] == ["other"] * 4


# --- bad input ----------------------------------------------------------------------------------

def test_a_causal_lm_is_not_a_reward_model(organism_zoo):
    with pytest.raises(ValueError, match="LlamaForCausalLM, not a .*reward model"):
        load_reward_model(organism_zoo / "sft", device="cpu")


def test_a_checkpoint_with_other_than_one_label_is_refused(tmp_path):
    from transformers import AutoConfig

    path = _tiny_reward_model(tmp_path / "rm")
    config = AutoConfig.from_pretrained(path)
    config.num_labels = 2
    config.save_pretrained(path)
    with pytest.raises(ValueError, match="has 2 labels: a reward model has one"):
        load_reward_model(path, device="cpu")


def test_an_unembedding_with_another_tokenizer_is_refused(tmp_path, make_checkpoint):
    from interp.models import IncompatiblePairError

    path = _tiny_reward_model(tmp_path / "rm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_tokens(["zebra"])
    tokenizer.save_pretrained(path)
    with pytest.raises(IncompatiblePairError, match=f"reward model has {len(tokenizer)} tokens"):
        load_reward_model(path, unembed=make_checkpoint("llama"), device="cpu")


def test_mismatched_replies_are_refused(reward_model):
    with pytest.raises(ValueError, match="2 requests but 1 replies"):
        reward_model.score(REQUESTS[:2], REPLIES[:1])
    with pytest.raises(ValueError, match="special token"):
        reward_model.score(REQUESTS[:1], ["sure <|user|> again"])


def test_rl_refuses_a_reward_model_with_another_tokenizer(organism_zoo):
    tokenizer = build_tokenizer()
    other = AutoTokenizer.from_pretrained(organism_zoo / "base")
    other.add_tokens(["zebra"])
    policy = zoo.load_checkpoint(organism_zoo / "sft")
    reward = zoo.load_reward_checkpoint(organism_zoo / organisms.REWARD)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    with pytest.raises(train.StageFailed, match=r"stage 'rl'.*tokenizer vocabulary"):
        train.rl(policy, reward, tokenizer, other, train.RLRecipe(steps=1), seed=0)
    templated = build_tokenizer()
    templated.chat_template = templated.chat_template.replace("<|assistant|>", "<|assistant|> ")
    with pytest.raises(train.StageFailed, match=r"stage 'rl'.*differ in chat_template"):
        train.rl(policy, reward, tokenizer, templated, train.RLRecipe(steps=1), seed=0)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())  # refused before training


def test_rl_that_crashes_or_leaves_nan_weights_fails_naming_the_stage(organism_zoo, monkeypatch):
    import trl

    tokenizer = build_tokenizer()
    policy = zoo.load_checkpoint(organism_zoo / "sft")
    reward = zoo.load_reward_checkpoint(organism_zoo / organisms.REWARD)

    class Crashing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")

    monkeypatch.setattr(trl, "GRPOTrainer", Crashing)
    with pytest.raises(train.StageFailed, match=r"stage 'rl': training failed \(RuntimeError: probability tensor"):
        train.rl(policy, reward, tokenizer, tokenizer, train.RLRecipe(steps=1), seed=0)
    with torch.no_grad():
        next(policy.parameters())[0, 0] = float("nan")
    with pytest.raises(train.StageFailed, match=r"stage 'rl': 1 weight tensors hold NaN or inf \(e.g. model.embed"):
        train.check_finite("rl", policy, {"train_loss": 0.1})
    with pytest.raises(train.StageFailed, match=r"stage 'reward': the training loss is nan"):
        train.check_finite("reward", reward, {"train_loss": float("nan")})


def test_rl_refuses_a_copy_whose_forward_runs_the_original(organism_zoo):
    """What a trainer leaves on the model it trained: an instance forward whose closure holds the model itself."""
    import copy
    import types

    tokenizer = build_tokenizer()
    trained = zoo.load_checkpoint(organism_zoo / "sft")
    inner = trained.forward
    trained.forward = types.MethodType(lambda self, *a, **k: inner(*a, **k), trained)
    train.check_own_forward(trained, "rl")  # the trained model itself is fine
    reward = zoo.load_reward_checkpoint(organism_zoo / organisms.REWARD)
    with pytest.raises(train.StageFailed, match="stage 'rl': the model's forward runs another model object"):
        train.rl(copy.deepcopy(trained), reward, tokenizer, tokenizer, train.RLRecipe(steps=1), seed=0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("generations", 1, "generations must be >= 2"), ("steps", 0, "must be >= 1"), ("beta", -0.1, "beta >= 0"),
])
def test_an_rl_recipe_that_cannot_work_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        train.RLRecipe(**{field: value})


@pytest.mark.parametrize(("rewards", "message"), [
    ([1.0, 2.0, math.nan, 3.0], "diverged"),
    ([1.0, 2.0, math.inf, 3.0], "diverged"),
    ([3.0, 2.0, 1.5, 1.0], "fell or stayed flat"),
    ([1.0, 1.0, 1.0, 1.0], "fell or stayed flat"),
    ([], "logged no reward"),
])
def test_rl_whose_reward_collapses_or_diverges_fails_naming_the_stage(rewards, message):
    with pytest.raises(train.StageFailed, match=f"stage 'rl'.*{message}"):
        train.check_rewards(rewards, min_gain=0.0)
    train.check_rewards([1.0, 1.5, 2.0, 3.0], min_gain=0.0)  # rising: fine


def test_a_failed_stage_rejects_the_seed_in_a_checked_build(tmp_path, monkeypatch, capsys):
    from test_zoo import QUICK, _verdict

    rl, measure = train.rl, zoo.targets.check

    def collapsing_at_seed_1(policy, reward, tokenizer, reward_tokenizer, recipe, seed):
        if seed == 1:
            train.check_rewards([2.0, 1.0], min_gain=0.0)
        return rl(policy, reward, tokenizer, reward_tokenizer, recipe, seed)

    monkeypatch.setattr(train, "rl", collapsing_at_seed_1)
    monkeypatch.setattr(zoo.targets, "check", lambda root: _verdict(measure(root), ok=True))
    out = zoo.build(tmp_path / "zoo", config=QUICK)
    card = json.loads((out / zoo.ZOO_CARD).read_text())
    assert card["seed"] == 2 and card["rejected_seeds"][0]["seed"] == 1
    assert "stage 'rl'" in card["rejected_seeds"][0]["misses"][0]
    assert "stage 'rl': the reward fell" in capsys.readouterr().err
    with pytest.raises(train.StageFailed, match="stage 'rl'"):  # unchecked: the error itself
        zoo.build(tmp_path / "unchecked", config=QUICK, check=False)
    assert not (tmp_path / "unchecked").exists()
