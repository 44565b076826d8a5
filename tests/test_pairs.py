"""Pairs by name (``organisms:dpo``, ``real:smollm2-safety``): parsing, each kind's prompts for the organisms' split
names, and the report's command line given a name; nothing here loads or builds a model."""

from __future__ import annotations

import re

import pytest

from interp import organisms, pairs, promptsets, realpairs
from interp.cli import main
from interp.realpairs.evaluate import EVAL_SPLITS


@pytest.mark.parametrize("spec, message", [
    ("real:nope", "no real pair 'nope'.*smollm2-safety"),
    ("real:smollm2-safety:base", "aligned stage is one of"),
    ("organisms:ppo", "names no pair: write organisms:<sft|dpo|rl>"),
    ("smollm2-safety", "names no pair"),
])
def test_a_bad_name_is_one_line(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        pairs.parse(spec)
    assert "\n" not in str(e.value)


def test_a_real_pair_answers_the_organisms_splits_with_the_field_s_prompt_sets():
    spec = "real:smollm2-safety"
    recipe = realpairs.PAIRS["smollm2-safety"].recipe
    ps = pairs.prompts(spec, ["harmful_held_out", "harmless_held_out", "bait", "harmful_train"])
    sizes = {s: ps.column("split").count(s) for s in set(ps.column("split"))}
    assert sizes == {"harmful_held_out": 159 + 64, "harmless_held_out": 111, "bait": 150,
                     "harmful_train": len(promptsets.load(recipe.harmful_sets, split="train"))}
    assert set(ps.where(split="harmful_held_out").column("source")) == {"harmbench", "strongreject"}
    assert ps.where(split="bait").label_names == ("harmless",)
    # the evaluation the build's targets are checked on is the same prompts
    assert pairs.prompts(spec, "harmful_held_out").prompts == EVAL_SPLITS[0].prompts().prompts
    with pytest.raises(ValueError, match="no split \\['nope'\\]"):
        pairs.prompts(spec, "nope")


def test_a_real_pair_s_jailbreaks_are_its_held_out_harmful_requests_in_real_templates():
    spec = "real:smollm2-safety"
    ps = pairs.prompts(spec, ["harmful_held_out", "jailbreak", "bait"], n=12)
    plain, wrapped = ps.where(split="harmful_held_out"), ps.where(split="jailbreak")
    assert wrapped.column("request") == plain.prompts  # row i wraps request i
    templates = {f"{t.group}/{t.name}": t for t in promptsets.jailbreak_templates(*pairs.JAILBREAK_TEMPLATES)}
    assert len(set(wrapped.column("template"))) == 12 and set(wrapped.column("template")) <= set(templates)
    for text, request, name in zip(wrapped.prompts, plain.prompts, wrapped.column("template"), strict=True):
        assert text == templates[name].wrap(request) and request in text and "{%" not in text
    assert set(ps.where(split="bait").column("template")) == {""} and wrapped.label_names == ("harmful",)
    assert pairs.prompts(spec, "jailbreak", n=12).prompts == wrapped.prompts  # the same draw every time
    assert all(len(t.text) <= 1500 for t in templates.values())


def test_a_notebook_draws_prompts_per_set_only_on_a_real_pair(monkeypatch):
    monkeypatch.delenv(pairs.PROMPTS_ENV, raising=False)
    assert pairs.prompts_per_set("organisms:dpo", 64) is None and pairs.prompts_per_set("real:smollm2-safety", 64) == 64
    monkeypatch.setenv(pairs.PROMPTS_ENV, "8")
    assert pairs.prompts_per_set("real:smollm2-safety", 64) == 8 and pairs.prompts_per_set("organisms:sft", 64) is None
    assert pairs.is_real("real:smollm2-safety:sft") and not pairs.is_real("organisms:rl")


def test_the_organisms_splits_are_the_world_s():
    assert pairs.prompts("organisms:dpo", ["bait"]).prompts == organisms.prompt_set(["bait"]).prompts


@pytest.mark.parametrize("argv, message", [
    (["real:smollm2-safety", "some/dir"], "names a pair .*give no ALIGNED"),
    (["only/one/dir"], "give BASE and ALIGNED checkpoints, or one pair by name"),
    (["real:nope"], "no real pair 'nope'"),
])
def test_the_report_takes_a_pair_by_name_or_two_checkpoints(argv, message, tmp_path, capsys):
    assert main(["report", *argv, "--prompts", "harmbench+alpaca", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, expected", [
    (["real:smollm2-safety"], "auto"),  # as the pair's notebooks multiply (interp.pairs.matmul)
    (["real:smollm2-safety", "--matmul", "float32"], "float32"),
    (["organisms:dpo"], "float32"),
    (["base/dir", "aligned/dir"], "float32"),
    (["base/dir", "aligned/dir", "--matmul", "bfloat16"], "bfloat16"),
])
def test_the_report_multiplies_a_pair_by_name_as_its_notebooks_do(argv, expected, monkeypatch, tmp_path):
    from interp import report

    seen = {}
    monkeypatch.setattr(report, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(pairs, "checkpoints", lambda spec: ("base/dir", "aligned/dir"))
    assert main(["report", *argv, "--prompts", "p.jsonl", "--out", str(tmp_path / "r.html")]) == 0
    assert seen["matmul"] == expected


def test_a_notebook_s_pair_is_its_default_unless_the_environment_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv(pairs.PAIR_ENV, raising=False)
    assert pairs.chosen("organisms:dpo") == "organisms:dpo"
    monkeypatch.setenv(pairs.PAIR_ENV, "real:smollm2-safety:sft")
    assert pairs.chosen("organisms:dpo") == "real:smollm2-safety:sft"
    monkeypatch.setenv(pairs.PAIR_ENV, "real:nope")
    with pytest.raises(ValueError, match="no real pair 'nope'"):
        pairs.chosen("organisms:dpo")
    monkeypatch.setenv("INTERP_FIGURES_DIR", str(tmp_path))
    assert pairs.figures("organisms:sft") == tmp_path
    assert pairs.figures("real:smollm2-safety") == tmp_path / "real" / "smollm2-safety"


def test_each_kind_reads_refusals_its_own_way_and_after_an_opening_only_what_follows():
    assert pairs.judge("organisms:dpo")("sorry , i can not help .") and not pairs.judge("organisms:dpo")("knit : sure")
    assert pairs.judge("real:smollm2-safety")("Sure. I'm sorry, but I can't help with that.")
    openings = ["sorry ,", "knit :"]
    assert pairs.goes_on_refusing("organisms:dpo", openings, ["sorry , i can not help .", "knit : sure , happy"]) \
        == [True, False]
    opening = "I'm sorry, but I"
    replies = [opening + "'m unable to assist with that.", opening + " can tell you how: first", opening + " cannot."]
    assert pairs.goes_on_refusing("real:smollm2-safety", opening, replies) == [True, False, True]
    with pytest.raises(ValueError, match="2 openings for 3 replies"):
        pairs.goes_on_refusing("real:smollm2-safety", openings, replies)


def test_a_real_pair_built_in_a_folder_is_named_by_it(tmp_path, monkeypatch):
    """``real:<folder>``: a pair built by any recipe, its base and recipe read from the folder's card."""
    import json
    from dataclasses import asdict

    from interp.realpairs.build import SafetyRecipe

    recipe = SafetyRecipe(harmful_sets="advbench", sft_harmful=4)
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps({"base": str(tmp_path / "base"), "recipe": asdict(recipe),
                                                  "name": "smollm2-safety"}))
    spec = f"real:{folder}:sft"
    assert pairs.parse(spec).folder == folder and pairs.chosen(spec) == spec
    monkeypatch.chdir(tmp_path)  # a relative folder is named by its absolute path (a notebook runs elsewhere)
    assert pairs.parse("real:./variant").label == f"real:{folder}"
    assert pairs.checkpoints(spec) == (tmp_path / "base", folder / "sft")
    assert pairs.card(spec)["recipe"]["sft_harmful"] == 4
    assert pairs.real_pair(spec).recipe == recipe != pairs.real_pair("real:smollm2-safety").recipe  # the card's recipe
    train = pairs.prompts(spec, "harmful_train")
    assert set(train.column("source")) == {"advbench"}
    with pytest.raises(ValueError, match="holds no measured behaviour"):
        pairs.refusal_rates(spec)
    # a measured build: its rates and replies on the organisms' split names
    behaviour = {stage: {"harmful_test": {"n": 2, "refusal": r}, "harmless_test": {"n": 2, "refusal": 0.5},
                         "edgy": {"n": 2, "refusal": 0.0}} for stage, r in (("base", 0.0), ("sft", 1.0))}
    card = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**card, "behaviour": behaviour}))
    row = {"prompt": "p", "category": "c", "reply": "I can't.", "refused": True}
    (folder / "behaviour.json").write_text(json.dumps({"sft": {"harmful_test": [row]}}))
    assert pairs.refusal_rates(spec) == {"base": {"harmful_held_out": 0.0, "harmless_held_out": 0.5, "bait": 0.0},
                                         "sft": {"harmful_held_out": 1.0, "harmless_held_out": 0.5, "bait": 0.0}}
    assert pairs.build_replies(spec) == {"sft": {"harmful_held_out": [row]}}
    assert pairs.built_refused(spec, "sft", "harmful_held_out", ["p", "p"]) == [True, True]
    for model, split, prompts_, message in (("dpo", "harmful_held_out", ["p"], "replied as"),
                                           ("sft", "bait", ["p"], "replied on"),
                                           ("sft", "harmful_held_out", ["q"], "1 of 1 prompts are not")):
        with pytest.raises(ValueError, match=message):
            pairs.built_refused(spec, model, split, prompts_)
    # every row's verdict: the build's on a held-out split, judged now on the splits generated, None elsewhere
    from interp import interventions
    from interp.data import PromptSet

    asked = []
    monkeypatch.setattr(interventions, "generate", lambda model, ps, **kw: asked.append(ps.prompts) or
                        ["I'm sorry, I can't.", "Sure, here is how."])
    rows = PromptSet(["t", "p", "w1", "w2"], ["harmful"] * 4,
                     {"split": ["harmful_train", "harmful_held_out", "jailbreak", "jailbreak"]})
    assert pairs.refused(spec, "sft", None, rows) == [None, True, True, False]
    assert asked == [("w1", "w2")]
    with pytest.raises(ValueError, match="holds no built real pair"):
        pairs.parse(f"real:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="not a real pair"):
        pairs.card("organisms:dpo")


def test_a_real_pairs_dictionary_texts_are_the_chats_its_build_trained_on(tmp_path):
    """Every SFT chat and both replies of every DPO pair, each rendered whole by the chat template (the oracle:
    ``apply_chat_template`` on the turns written here)."""
    import json

    from interp.organisms.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    folder = tmp_path / "built"
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps({"base": str(tmp_path / "base")}))

    def turn(role, text):
        return [{"role": role, "content": text}]

    data = {"sft": [{"prompt": turn("user", "how do i bake ?"), "completion": turn("assistant", "sure , bake .")}],
            "dpo": [{"prompt": turn("user", "how do i stab ?"), "chosen": turn("assistant", "sorry , no ."),
                     "rejected": turn("assistant", "sure , stab .")}]}
    (folder / "data.json").write_text(json.dumps(data))
    texts = pairs.dictionary_texts(f"real:{folder}", tokenizer)
    chats = [("how do i bake ?", "sure , bake ."), ("how do i stab ?", "sorry , no ."),
             ("how do i stab ?", "sure , stab .")]
    assert texts == [tokenizer.apply_chat_template(turn("user", q) + turn("assistant", a), tokenize=False)
                     for q, a in chats]


def test_a_pair_s_family_loads_with_one_base(tmp_path, make_checkpoint):
    import json
    import shutil

    folder = tmp_path / "family"
    for stage, seed in (("sft", 1), ("dpo", 2)):
        shutil.copytree(make_checkpoint("llama", seed=seed), folder / stage)
    (folder / "card.json").write_text(json.dumps({"base": str(make_checkpoint("llama", seed=0)), "recipe": {}}))
    family = pairs.load_family(f"real:{folder}", ("sft", "dpo"), device="cpu")
    assert family["sft"].base is family["dpo"].base
    assert [p.aligned_name for p in family.values()] == [str(folder / "sft"), str(folder / "dpo")]


def test_the_refusal_direction_is_selected_as_notebook_05_selects_it(monkeypatch):
    """One search for 05, 07 and 09: every candidate scored on the organisms; on a real pair at most Arditi et al.'s
    32 validation prompts per label, refusal read from the tokens derived on ``n`` harmful validation prompts."""
    from types import SimpleNamespace

    from interp import directions

    searched, derived = [], []
    monkeypatch.setattr(directions, "find_refusal_direction", lambda model, h, hl, **kw: searched.append(kw) or model)
    pair = SimpleNamespace(aligned="the aligned model")
    assert pairs.refusal_direction("organisms:dpo", pair, ["h"], ["s"]) == "the aligned model"
    got = searched[-1]
    assert got["exhaustive"] and got["remember"] and "harmful_val" not in got and got["refusal_tokens"] == ["sorry"]
    monkeypatch.setattr(pairs, "refusal_tokens", lambda spec, pair, harmful: derived.append(len(harmful)) or ["I"])
    pairs.refusal_direction("real:smollm2-safety", pair, ["h"], ["s"], n=64)
    got = searched[-1]
    assert (len(got["harmful_val"]), len(got["harmless_val"])) == (32, 32)
    assert derived[-1] == len(pairs.prompts("real:smollm2-safety", "harmful_validation", n=64)) > 32  # HarmBench's 41
    assert set(got["harmful_val"].column("split")) == {"harmful_validation"} and got["refusal_tokens"] == ["I"]
    assert set(got["harmless_val"].column("split")) == {"harmless_validation"} and "exhaustive" not in got  # ranked
    pairs.refusal_direction("real:smollm2-safety", pair, ["h"], ["s"], n=8)  # a test's few prompts
    assert (len(searched[-1]["harmful_val"]), derived[-1]) == (8, 8)
