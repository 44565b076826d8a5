"""The claim helper, and the claims table: every notebook claim measured on many seeds, asserts only with room."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
from pathlib import Path

import nbformat
import pytest

from interp import claims

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("claims_benchmark", ROOT / "benchmarks" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _load_benchmark()


def _calls(path: Path) -> list[tuple[str, str, bool]]:
    """``(function, name, precondition)`` of every ``claims.claim`` / ``claims.observe`` call in a notebook."""
    return [(c["function"], c["name"], c["precondition"]) for c in BENCH.notebook_claims(path)]


# --- the helper ------------------------------------------------------------------------------

def test_a_claim_is_recorded_and_asserted(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.FILE_ENV, str(tmp_path / "rows.jsonl"))
    monkeypatch.setenv(claims.NOTEBOOK_ENV, "01_x")
    made = claims.claim("kl ratio", 4.0, ">", 3, subject="dpo")
    assert made.holds and made.kind == "finding"
    with pytest.raises(claims.ClaimFailed, match=r"claim 'kl ratio' \(sft\): the statistic is 2.6, not > 3"):
        claims.claim("kl ratio", 2.6, ">", 3, subject="sft")
    assert claims.observe("prefill", 0.4) == 0.4
    rows = claims.read_table(tmp_path / "rows.jsonl")
    assert [(r["claim"], r["subject"], r["holds"], r["kind"], r["notebook"]) for r in rows] == [
        ("kl ratio", "dpo", True, "finding", "01_x"), ("kl ratio", "sft", False, "finding", "01_x"),
        ("prefill", None, True, "observed", "01_x")]


def test_on_a_real_pair_a_claim_is_judged_and_recorded_but_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.FILE_ENV, str(tmp_path / "rows.jsonl"))
    monkeypatch.setattr(claims, "_pair", [None])
    monkeypatch.setattr(claims, "_made", [])
    claims.studying("real:smollm2-safety")
    missed = claims.claim("kl ratio", 2.6, ">", 3, subject="dpo")
    assert not missed.holds and missed.pair == "real:smollm2-safety"
    assert claims.read_table(tmp_path / "rows.jsonl")[0]["pair"] == "real:smollm2-safety"
    assert list(claims.table(tmp_path / "none.jsonl")["pair"]) == ["real:smollm2-safety"]
    claims.studying("organisms:sft")  # back on the organisms: asserted again
    with pytest.raises(claims.ClaimFailed, match="kl ratio"):
        claims.claim("kl ratio", 2.6, ">", 3, subject="sft")


def test_a_real_pairs_own_statistic_is_recorded_only_on_a_real_pair(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.FILE_ENV, str(tmp_path / "rows.jsonl"))
    monkeypatch.setattr(claims, "_pair", [None])
    monkeypatch.setattr(claims, "_made", [])
    with pytest.raises(ValueError, match="on_real records a real pair's statistic"):
        claims.on_real("09: templates that get through", 0.2)
    claims.studying("real:smollm2-safety")
    assert claims.on_real("09: templates that get through", 0.2) == 0.2
    [row] = claims.read_table(tmp_path / "rows.jsonl")
    assert (row["kind"], row["pair"], row["op"]) == ("observed", "real:smollm2-safety", None)


def test_a_verdict_is_one_line_recorded_beside_the_claims_and_counted_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.FILE_ENV, str(tmp_path / "rows.jsonl"))
    monkeypatch.setenv(claims.NOTEBOOK_ENV, "09_jailbreaks")
    monkeypatch.setattr(claims, "_pair", [None])
    monkeypatch.setattr(claims, "_verdicts", [])
    said = claims.verdict("Zhao et al. 2025", "two distinct directions", "disagrees", "cosine 0.6 on this build")
    assert str(said) == "**Zhao et al. 2025** (two distinct directions): **disagrees**, cosine 0.6 on this build."
    claims.observe("09: cosine", 0.6)
    verdict_row, claim_row = claims.read_table(tmp_path / "rows.jsonl")
    assert (verdict_row["kind"], verdict_row["outcome"], verdict_row["notebook"]) == ("verdict", "disagrees",
                                                                                       "09_jailbreaks")
    assert claims.verdicts().outcome.tolist() == ["disagrees"]
    with pytest.raises(ValueError, match="outcome must be one of agrees, disagrees, cannot test"):
        claims.verdict("Zhao et al. 2025", "two distinct directions", "partly", "cosine 0.6")
    with pytest.raises(ValueError, match="say what decides it"):
        claims.verdict("Zhao et al. 2025", "two distinct directions", "agrees", " ")
    # the seed table counts each verdict's outcomes over the accepted seeds and keeps verdicts out of the statistics
    rows = [BENCH.row(seed, True, **{**verdict_row, "outcome": outcome})
            for seed, outcome in ((10, "disagrees"), (11, "agrees"), (12, "disagrees"))]
    rows += [BENCH.row(seed, True, **{**claim_row, "statistic": 0.5}) for seed in (10, 11, 12)]
    assert [line["claim"] for line in BENCH.summarise(rows)] == ["09: cosine"]
    assert BENCH.papers(rows) == [("09_jailbreaks", "Zhao et al. 2025: two distinct directions",
                                   "disagrees on 2 seeds, agrees on 1 seed")]
    assert "Zhao et al. 2025: two distinct directions: disagrees on 2 seeds" in BENCH.format_txt(rows)


def test_a_nan_statistic_fails_its_claim_by_name(monkeypatch):
    with pytest.raises(claims.ClaimFailed, match="claim 'patching share': the statistic is nan"):
        claims.claim("patching share", float("nan"), "<", 0.1)
    monkeypatch.setenv(claims.RECORD_ONLY_ENV, "1")  # recorded as failed, not raised, in a claims-table run
    assert not claims.claim("patching share", float("nan"), "<", 0.1).holds


def test_bad_claims_are_refused():
    with pytest.raises(ValueError, match="op must be one of"):
        claims.claim("x", 1.0, "=>", 0)
    with pytest.raises(TypeError, match="claim 'x': the statistic must be one number"):
        claims.claim("x", [1.0, 2.0], ">", 0)


def test_margin_rule():
    assert claims.margin_ok(">", 4.0, 3.0) and not claims.margin_ok(">", 3.5, 3.0)   # 3 > 0.8 * 3.5
    assert claims.margin_ok("<", 0.07, 0.1) and not claims.margin_ok("<", 0.09, 0.1)  # 0.1 < 0.09 / 0.8
    assert claims.margin_ok("<=", 0.0, 0.05) and claims.margin_ok("<=", 0.0, 0.0)     # a share at its floor
    assert not claims.margin_ok(">=", 0.0, 0.0) and claims.margin_ok(">", 0.1, -0.5)


def test_seed_ranges_read_the_table(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"seed": s, "claim": "c", "subject": None, "accepted": a, "statistic": v, "holds": v > 1}
            for s, a, v in ((0, True, 2.0), (1, True, 1.5), (2, False, 9.0), (3, True, 0.5))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = claims.across_seeds("c", path=path)
    assert (got.seeds, got.low, got.high, got.holds) == ((0, 1, 3), 0.5, 2.0, 2)
    assert claims.seed_text("c", path=path) == "0.50 to 2.00 on 3 seeds"
    assert claims.seed_text("other", path=path) == "not in the seed table"


def test_a_failed_build_is_a_row_of_the_table_not_a_crash(tmp_path, monkeypatch):
    bench = BENCH

    def missed(*args, **kwargs):
        raise bench.zoo.TargetsMissed("no build from seeds 12-12 meets the organisms' targets:\n table")

    monkeypatch.setattr(bench.zoo, "build", missed)
    zoo_dir, rows = bench.build(12, tmp_path)
    assert zoo_dir is None and rows[0]["claim"] == bench.BUILD_CLAIM and rows[0]["accepted"] is False
    assert rows[0]["tuned"] is False and "meets the organisms' targets" in rows[0]["error"]
    assert "seed 12: build rejected" in bench.format_txt(rows)


def test_a_rerun_replaces_the_chosen_notebooks_rows_on_the_chosen_seeds(tmp_path, monkeypatch):
    bench = BENCH
    rows = [bench.row(seed, True, notebook=nb, claim=f"{nb[:2]}: c", statistic=1.0, holds=True)
            for seed in (1, 2, 10) for nb in ("01_a", "02_b")]
    ran = []

    def notebooks(seed, zoo_dir, chosen, figures=None):
        ran.append(seed)
        return [bench.row(seed, True, notebook=n.stem, claim=f"{n.stem[:2]}: c", statistic=2.0, holds=True)
                for n in chosen]

    monkeypatch.setattr(bench, "build", lambda seed, zoos: (zoos / f"seed-{seed}", []))
    monkeypatch.setattr(bench, "run_notebooks", notebooks)
    new = bench.rerun(rows, [Path("01_a.ipynb")], tmp_path, tmp_path / "t.jsonl", tmp_path / "t.txt", seeds=[2, 10])
    assert ran == [2, 10]
    assert sorted((r["seed"], r["notebook"], r["statistic"]) for r in new) == [
        (1, "01_a", 1.0), (1, "02_b", 1.0), (2, "01_a", 2.0), (2, "02_b", 1.0), (10, "01_a", 2.0), (10, "02_b", 1.0)]
    assert claims.read_table(tmp_path / "t.jsonl") == new


# --- the notebooks and the committed table ------------------------------------------------------

def test_notebooks_state_claims_not_bare_asserts():
    names = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                tree = ast.parse("\n".join(line for line in cell.source.splitlines()
                                           if not line.lstrip().startswith(("%", "!"))))
                asserts = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Assert)]
                assert not asserts, f"{path.name} asserts without the claim helper: {asserts}"
        mine = {name for _, name, _ in _calls(path)}
        assert all(n.startswith(path.stem[:2]) for n in mine), f"{path.name}: names start with its number"
        names += mine
    assert len(names) == len(set(names)), "claim names are unique across the notebooks"


@pytest.fixture(scope="module")
def table():
    rows = claims.read_table()
    assert rows, f"no claims table at {claims.SEED_TABLE}: run python benchmarks/claims.py"
    return rows


def test_the_table_has_enough_builds_nobody_tuned_on(table):
    bench = BENCH
    accepted = {r["seed"] for r in table if r["accepted"]}
    assert len(accepted) >= 8 and len([s for s in accepted if s not in bench.TUNED_SEEDS]) >= 4, sorted(accepted)


def test_every_claim_of_every_notebook_has_its_rows(table):
    accepted = {r["seed"] for r in table if r["accepted"]}
    for path in NOTEBOOKS:
        for function, name, _ in _calls(path):
            if function == "on_real":  # a real pair's statistic: the organisms' builds have none
                continue
            seeds = {r["seed"] for r in table if r["accepted"] and r["claim"] == name and r["notebook"] == path.stem}
            assert seeds == accepted, f"{path.name}: claim {name!r} has rows for seeds {sorted(seeds)}, " \
                                      f"not every accepted build {sorted(accepted)}: rerun benchmarks/claims.py"


def test_asserted_claims_hold_on_every_accepted_seed_with_room(table):
    """An assert stays in a notebook only if it held on every accepted build, never-tuned seeds included; a
    finding (not a precondition the build guarantees) also needs room (:func:`interp.claims.margin_ok`)."""
    asserted = {(path.stem, name): pre for path in NOTEBOOKS for f, name, pre in _calls(path) if f == "claim"}
    table = BENCH.rejudge(table, NOTEBOOKS)  # by the thresholds the notebooks have now
    for (notebook, name), precondition in asserted.items():
        rows = [r for r in table if r["accepted"] and r["notebook"] == notebook and r["claim"] == name]
        failed = [(r["seed"], r["subject"], r["statistic"]) for r in rows if not r["holds"]]
        assert not failed, f"{notebook}: {name!r} fails on (seed, subject, statistic) {failed}"
        if precondition:
            continue
        for subject in {r["subject"] for r in rows}:
            mine = [r for r in rows if r["subject"] == subject]
            values = [r["statistic"] for r in mine]
            op, threshold = mine[0]["op"], mine[0]["threshold"]
            worst = min(values) if op in (">", ">=") else max(values)
            assert not math.isnan(worst) and claims.margin_ok(op, worst, threshold), \
                f"{notebook}: {name!r} ({subject}) is {op} {threshold} but its worst seed has {worst:.4g}"
