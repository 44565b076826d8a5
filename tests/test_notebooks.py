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
