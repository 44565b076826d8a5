"""Every notebook runs top to bottom on the organisms and writes its figures; failures are named."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from interp.cli import main
from interp.figures import NotebookError, run_notebook

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("zoo", ["default", "other seed"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_writes_figures(path, zoo, request, tmp_path, monkeypatch):
    """On the default zoo and on one built from another seed: every assert must hold on both."""
    built = request.getfixturevalue("organism_zoo" if zoo == "default" else "organism_zoo_other_seed")
    monkeypatch.setenv("INTERP_ORGANISMS_DIR", str(built))
    monkeypatch.setenv("INTERP_FIGURES_DIR", str(tmp_path))
    run_notebook(path)
    written = {p.name for p in tmp_path.iterdir()}
    assert any(name.startswith(path.stem[:2]) for name in written), f"{path.name} wrote no figure: {written}"


def test_the_notebooks_that_take_a_pair_name_it_in_their_config_cell():
    """A notebook answers on a chosen pair exactly when its metadata says so and its first code cell reads it."""
    from interp.figures import pair_kinds

    for path in NOTEBOOKS:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
        assert ("pairs.chosen(" in first and "claims.studying(PAIR)" in first) == bool(pair_kinds(path)), path.name
    assert {p.stem[:2] for p in NOTEBOOKS if "real" in pair_kinds(p)} >= {"00", "01"}


def _notebook(folder: Path, name: str, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    path = folder / name
    nbformat.write(nb, path)
    return path


def test_a_failing_cell_is_named(tmp_path, organism_zoo, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    path = _notebook(folder, "01_broken.ipynb", "x = 1", "raise ValueError('boom')")
    with pytest.raises(NotebookError, match=r"01_broken.ipynb failed in cell 1 .*ValueError: boom"):
        run_notebook(path)
    code = main(["figures", "--notebooks", str(folder), "--figures", str(tmp_path / "f"), "--zoo", str(organism_zoo)])
    assert code == 1 and "01_broken.ipynb failed in cell 1" in capsys.readouterr().err


def test_on_another_pair_only_the_notebooks_that_answer_on_its_kind_run(tmp_path, capsys):
    """``interp figures --pair``: the notebooks whose metadata lists the pair's kind run with ``$INTERP_PAIR`` set,
    the others are named; a real pair's figures go to FIGURES/real/<pair>."""
    import json

    folder = tmp_path / "nbs"
    folder.mkdir()
    pair = tmp_path / "built"
    pair.mkdir()
    (pair / "card.json").write_text(json.dumps({"base": str(tmp_path / "base"), "recipe": {}}))
    record = ("import os\nfrom interp import pairs, plotting\nimport matplotlib.pyplot as plt\n"
              "PAIR = pairs.chosen('organisms:dpo')\nfig = plt.figure()\n"
              "plotting.save_figure(fig, PAIR.replace(':', '_').replace('/', '_')[-20:], pairs.figures(PAIR))")
    both = _notebook(folder, "01_both.ipynb", record)
    nb = nbformat.read(both, as_version=4)
    nb.metadata["interp"] = {"pairs": ["organisms", "real"]}
    nbformat.write(nb, both)
    _notebook(folder, "02_organisms_only.ipynb", "raise ValueError('must not run on a real pair')")
    figures = tmp_path / "f"
    assert main(["figures", "--notebooks", str(folder), "--figures", str(figures), "--pair", f"real:{pair}"]) == 0
    out = capsys.readouterr().out
    assert "not yet answered on a chosen real pair: 02_organisms_only.ipynb" in out
    assert "[1/1] 01_both.ipynb ... ok" in out
    assert [p.parent.relative_to(figures).as_posix() for p in figures.rglob("*.png")] == ["real/built"]
    assert main(["figures", "--notebooks", str(folder), "--figures", str(figures), "--pair", "real:nope"]) == 2


@pytest.fixture(scope="module")
def miniature_real_pair(tmp_path_factory) -> str:
    """SmolLM2 aligned by a miniature recipe (two steps a stage) into its own folder, named ``real:<folder>``."""
    import json

    from interp import realmodels
    from interp.realpairs.build import SafetyRecipe, train

    if not realmodels.SMOLLM2.available():
        pytest.skip("SmolLM2 is not installed")
    base_dir, built = realmodels.smollm2(), tmp_path_factory.mktemp("pair")
    recipe = SafetyRecipe(sft_harmful=4, sft_harmless=4, dpo_harmful=4, dpo_harmless=4, reply_tokens=12,
                          batch_size=4, sft_epochs=1, sft_lr=1e-4)
    record = train(base_dir, built, recipe)
    (built / "card.json").write_text(json.dumps({"name": "smollm2-safety", "base": str(base_dir), **record}))
    return f"real:{built}"


# what each notebook must record on the miniature pair
REAL_TIER = {"01": {"01: harmful over harmless first-token KL",
                    "01: first-token KL over tokens 5 on, along the base's harmful compliance"},
             "02": {"02: least effective rank of a matrix change", "02: harmful refusal with all MLPs reverted",
                    "02: least harmful refusal with one layer reverted"},
             "03": {"03: least linear CKA between aligned and base",
                    "03: cross-model KL growth from the first to the last layer"},
             "06": {"06: first layer where the last post-instruction token's stream restores over half",
                    "06: recovery by the aligned stream entering the base's last layer at the last position",
                    "06: correlation of attribution estimates with exact recovery at the post-instruction positions"},
             "07": {"07: mean relative weight change",
                    "07: least AUROC of the base's probe on an aligned model from layer 1",
                    "07: least cosine of two models' candidates at the answer position from layer 1"}}


@pytest.mark.real
@pytest.mark.parametrize("number", sorted(REAL_TIER))
def test_a_notebook_runs_on_a_real_pair_built_by_the_recipe(number, miniature_real_pair, tmp_path, monkeypatch):
    """The real tier: notebooks 01-03, 06 and 07 run top to bottom on the miniature pair with 8 prompts a set, write
    their figures to real/, and record their claims with the pair's name (nothing is asserted on a real pair; the
    full pair's claims are benchmarks/real_notebooks.py's table). Notebooks 05 and 09 need the replies a full build
    measured, and 08 more tokens than the miniature's chats hold, so they are that table's alone."""
    from interp import claims

    spec = miniature_real_pair
    monkeypatch.setenv("INTERP_PAIR", spec)
    monkeypatch.setenv("INTERP_PROMPTS_PER_SET", "8")
    monkeypatch.setenv("INTERP_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv(claims.FILE_ENV, str(tmp_path / "claims.jsonl"))
    path = next(p for p in NOTEBOOKS if p.stem.startswith(number + "_"))
    run_notebook(path)
    figures = tmp_path / "figures" / "real" / Path(spec.split(":", 1)[1]).name
    assert {p.name[:2] for p in figures.glob("*.png")} == {number}
    assert not list((tmp_path / "figures").glob("*.png"))
    rows = claims.read_table(tmp_path / "claims.jsonl")
    assert {r["pair"] for r in rows} == {spec}
    assert REAL_TIER[number] <= {r["claim"] for r in rows}
