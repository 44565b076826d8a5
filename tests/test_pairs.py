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
    with pytest.raises(ValueError, match="no split \\['jailbreak'\\]"):
        pairs.prompts(spec, "jailbreak")


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
