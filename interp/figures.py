"""Regenerate every figure: build the organisms if missing, then execute each notebook headless.

Notebooks run in name order with nbclient, each in its own folder as working directory, with
``$INTERP_FIGURES_DIR`` pointing at the figures folder. Executed notebooks are not written
back: the source notebooks stay as they are in git.

``run_all(..., pair="real:smollm2-safety")`` runs them on another pair instead (``$INTERP_PAIR``, read by each
notebook's ``pairs.chosen``): only the notebooks whose metadata lists that kind of pair (``"interp": {"pairs":
["organisms", "real"]}``); the others are named as not yet answering on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from interp.checks import unwritable
from interp.claims import NOTEBOOK_ENV
from interp.plotting import FIGURES_ENV


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


def _failed_cell(nb) -> tuple[int, str]:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, f"{out.get('ename')}: {out.get('evalue')}"
    return -1, "unknown error"


def run_notebook(path: Path, timeout: int = 1800, executed: Path | None = None) -> float:
    """Execute one notebook top to bottom; returns the seconds it took. With ``executed``, the notebook with its
    outputs is written there (a failed one too, up to its failing cell), for reading what its prose rendered."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.time()
    # The kernel inherits the environment: claims recorded by interp.claims name their notebook.
    before, os.environ[NOTEBOOK_ENV] = os.environ.get(NOTEBOOK_ENV), path.stem
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        index, error = _failed_cell(nb)
        source = nb.cells[index].source.strip().splitlines()[:3] if index >= 0 else []
        raise NotebookError(
            f"{path.name} failed in cell {index} ({' / '.join(source)}): {error}"
        ) from e
    finally:
        if executed is not None:
            executed.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, executed)
        if before is None:
            os.environ.pop(NOTEBOOK_ENV, None)
        else:
            os.environ[NOTEBOOK_ENV] = before
    return time.time() - start


def pair_kinds(path: Path) -> list[str]:
    """The kinds of pair a notebook answers its question on when its config cell is given one (its ``interp.pairs``
    metadata); none when it has none: such a notebook studies the organisms it names itself."""
    import nbformat

    return list(nbformat.read(path, as_version=4).metadata.get("interp", {}).get("pairs", []))


def check_figures_dir(figures: Path) -> None:
    """Where figures go must be a folder (made if missing) that can be written, before any zoo is built."""
    if figures.exists() and not figures.is_dir():
        raise NotADirectoryError(f"--figures {str(figures)!r} is a file, not a folder")
    if why := unwritable(figures, make=True):
        raise PermissionError(f"cannot write figures in {str(figures)!r} ({why}); choose another --figures")


def run_all(notebooks: Path, figures: Path, zoo_dir: str | None = None, pair: str | None = None) -> None:
    """Build the organism zoo if it is missing, then run every ``*.ipynb`` in ``notebooks``; with ``pair``, on that
    pair (built first if it is a real one that is not) and only the notebooks that answer on its kind."""
    from interp import pairs
    from interp.organisms import zoo

    paths = sorted(Path(notebooks).glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {notebooks}")
    check_figures_dir(Path(figures))
    spec = pairs.parse(pair or "organisms:dpo")
    if pair is not None:
        skipped = [p.name for p in paths if spec.kind not in pair_kinds(p)]
        paths = [p for p in paths if spec.kind in pair_kinds(p)]
        if skipped:
            print(f"[{spec.label}] not yet answered on a chosen {spec.kind} pair: {', '.join(skipped)}", flush=True)
        if not paths:
            raise FileNotFoundError(f"no notebook in {notebooks} answers on a chosen {spec.kind} pair")
    if spec.kind == "organisms":
        if zoo_dir is not None:
            os.environ[zoo.ENV_VAR] = str(Path(zoo_dir).resolve())
        zoo_path = zoo.default_dir()
        if not zoo.is_complete(zoo_path):
            print(f"[organisms] building the zoo in {zoo_path} ...", flush=True)
            zoo.build(zoo_path)
        print(f"[organisms] {zoo_path}", flush=True)
    else:
        print(f"[{spec.label}] {pairs.checkpoints(spec.label)[1].parent}", flush=True)  # built first when it is not
    os.environ[FIGURES_ENV] = str(Path(figures).resolve())
    before = os.environ.pop(pairs.PAIR_ENV, None)
    if pair is not None:
        os.environ[pairs.PAIR_ENV] = spec.label
    try:
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
            seconds = run_notebook(path)
            print(f"ok ({seconds:.0f} s)", flush=True)
    finally:
        os.environ.pop(pairs.PAIR_ENV, None)
        if before is not None:
            os.environ[pairs.PAIR_ENV] = before
    print(f"figures written to {pairs.figures(spec.label) if pair else Path(figures).resolve()}")
