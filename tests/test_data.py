"""PromptSet: organism splits, user files, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest

from interp import organisms
from interp.data import PromptSet


def test_from_organisms_carries_columns():
    ps = organisms.prompt_set(["harmful_held_out", "harmless_train"])
    assert ps.label_names == ("harmful", "harmless")
    assert set(ps.column("split")) == {"harmful_held_out", "harmless_train"}
    assert all(ps.where(label="harmful").column("held_out"))
    assert len(ps.by_label("harmless")) == len(ps) - len(ps.by_label("harmful"))


def test_jsonl_and_csv_give_the_same_set(tmp_path):
    rows = [
        {"prompt": "how do i bake ?", "label": "harmless", "held_out": False},
        {"prompt": "how do i poison ?", "label": "harmful", "held_out": True},
    ]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,label,held_out\nhow do i bake ?,harmless,false\nhow do i poison ?,harmful,TRUE\n")
    a, b = PromptSet.from_file(jsonl), PromptSet.from_file(csv)
    assert a.prompts == b.prompts and a.labels == b.labels
    assert a.column("held_out") == b.column("held_out") == (False, True)


@pytest.mark.parametrize(
    ("content", "suffix", "error", "message"),
    [
        ("", ".jsonl", ValueError, "no prompts"),
        ('{"prompt": "x"}\n', ".jsonl", ValueError, "no 'label' column"),
        ("prompt\nhello\n", ".csv", ValueError, "no 'label' column"),
        ('{"prompt": "x", "label": "a"}\nnot json\n', ".jsonl", ValueError, "line 2 .* not valid JSON"),
        ("prompt,label\nhi,a\n", ".txt", ValueError, "must be .jsonl or .csv"),
        ("prompt,label,held_out\nhi,a,maybe\n", ".csv", ValueError, "held_out .* true/false"),
        ("prompt,label\n ,a\n", ".csv", ValueError, "empty or non-text prompt"),
        # issue 31: a raw traceback, or a row silently read wrong
        ("prompt,label\nhi,a,extra\n", ".csv", ValueError,
         "row 1 .* \\(after the header\\) has 3 fields, the header 2"),
        ("prompt,label\nhi,a\nho\n", ".csv", ValueError, "row 2 .* has 1 fields, the header 2"),
        ('{"prompt": "x", "label": "a", "concept": ["bake", "cook"]}\n', ".jsonl", ValueError,
         "row 1 .*: concept must be text, got \\['bake', 'cook'\\]"),
        ('{"prompt": "x", "label": 1}\n', ".jsonl", ValueError, "row 1 .*: label must be text, got 1"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, content, suffix, error, message):
    path = tmp_path / f"prompts{suffix}"
    path.write_text(content)
    with pytest.raises(error, match=message):
        PromptSet.from_file(path)


def test_files_parse_as_their_format_says(tmp_path):
    quoted = tmp_path / "q.csv"  # a quoted newline stays in the prompt (was: "explainhow")
    quoted.write_text('prompt,label\n"explain\nhow",harmless\n"a, b",harmful\n')
    assert PromptSet.from_file(quoted).prompts == ("explain\nhow", "a, b")
    bom = tmp_path / "bom.csv"  # as spreadsheets save UTF-8 (was: "no 'label' column", the first being '\ufeffprompt')
    bom.write_text("\ufeffprompt,label\nhi,a\n", encoding="utf-8")
    assert PromptSet.from_file(bom).prompts == ("hi",)
    bom_jsonl = tmp_path / "bom.jsonl"
    bom_jsonl.write_text('\ufeff{"prompt": "hi", "label": "a"}\n', encoding="utf-8")
    assert PromptSet.from_file(bom_jsonl).prompts == ("hi",)
    separator = tmp_path / "u2028.jsonl"  # U+2028 inside a JSON string (was: "Unterminated string")
    separator.write_text('{"prompt": "one\u2028two", "label": "a"}\r\n', encoding="utf-8")
    assert PromptSet.from_file(separator).prompts == ("one\u2028two",)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PromptSet.from_file(tmp_path / "nope.jsonl")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="cannot read"):
        PromptSet.from_file(binary)


def test_empty_set_and_mismatched_columns():
    with pytest.raises(ValueError, match="empty"):
        PromptSet(prompts=[], labels=[])
    with pytest.raises(ValueError, match="2 prompts but 1 labels"):
        PromptSet(prompts=["a", "b"], labels=["x"])
    ps = PromptSet(prompts=["a", "b"], labels=["x", "x"])
    with pytest.raises(ValueError, match=r"has no \['y'\] prompts"):
        ps.require_labels("x", "y")
    with pytest.raises(ValueError, match="no prompts .* match"):
        ps.where(label="y")


def test_concat_and_select():
    a = organisms.prompt_set("harmful_train")
    b = organisms.prompt_set("harmless_train")
    both = PromptSet.concat([a, b])
    assert len(both) == len(a) + len(b) and both.prompts[: len(a)] == a.prompts
    assert both.select([0, len(a)]).labels == ("harmful", "harmless")


def test_a_sample_is_a_fixed_draw_in_the_set_s_order():
    ps = PromptSet([f"p{i}" for i in range(20)], ["harmful", "harmless"] * 10, {"n": list(range(20))})
    drawn = ps.sample(5, seed=3)
    assert drawn.prompts == ps.sample(5, seed=3).prompts and len(set(drawn.prompts)) == 5
    assert list(drawn.column("n")) == sorted(drawn.column("n"))
    assert [int(p[1:]) for p in drawn.prompts] == list(drawn.column("n")) and drawn.prompts != ps.sample(5).prompts
    assert ps.sample(None) is ps and ps.sample(50) is ps
    with pytest.raises(ValueError, match="n >= 1"):
        ps.sample(0)
