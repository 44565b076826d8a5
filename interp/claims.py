"""Claims: what a notebook's text says about a number, as a statistic beside a threshold, asserted and recorded.

A notebook never writes a bare ``assert``; it states each claim once::

    from interp import claims
    claims.claim("harmful first-token KL over harmless", kl_ratio, ">", 3)          # a finding, asserted
    claims.claim("base refuses harmful-train", rate, "<=", 0.05, precondition=True)  # what the build guarantees
    claims.observe("aligned goes on refusing after a compliant opening", went_on)  # shown, not asserted
    claims.on_real("wrapped requests answered, judged", worked)  # a real pair's alone: no seed table to match
    claims.verdict("Qi et al. 2024", "the KL sits in the first reply tokens", "agrees", "first token 12x later ones")

Every call returns a :class:`Claim` and keeps it (:func:`table` lists this session's claims). When
``$INTERP_CLAIMS_FILE`` names a file, each claim is also appended to it as one JSON row (with the notebook from
``$INTERP_NOTEBOOK``, which :func:`interp.figures.run_notebook` sets): ``benchmarks/claims.py`` runs every notebook
on many seeds' zoos that way and writes ``benchmarks/results/claims-cpu.{txt,jsonl}``. With
``$INTERP_CLAIMS_RECORD_ONLY=1`` a claim that fails is recorded and does not raise, so one run records every claim.

A **verdict** (:func:`verdict`) says where a notebook's finding stands against a paper's: ``agrees``,
``disagrees`` or ``cannot test``, and the property of the world or pair that decides it; it is recorded as a row of
kind ``"verdict"`` and returned as a line of prose.

A claim is asserted in a notebook only where it holds on every accepted build of the seed table with margin
(:func:`margin_ok`); :func:`across_seeds` renders any statistic's range over that table for the prose.

The seed table is the organisms'. A notebook run on another pair (``claims.studying("real:smollm2-safety")``, which
its first cell calls) records every claim with that pair's name and judges it by the same threshold, but does not
raise: the thresholds were set on the organisms' builds, and one build of a real pair is not a seed table. Whether
each organisms' finding holds on the real pair is then itself the result (``held`` in :func:`table`).

>>> claim("two is more than one", 2.0, ">", 1).holds
True
>>> claim("nan is nothing", float("nan"), ">", 0)
Traceback (most recent call last):
...
interp.claims.ClaimFailed: claim 'nan is nothing': the statistic is nan (not a number), so it cannot be > 0
"""

from __future__ import annotations

import json
import math
import operator
import os
from dataclasses import asdict, dataclass
from pathlib import Path

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
KINDS = ("finding", "precondition", "observed")
OUTCOMES = ("agrees", "disagrees", "cannot test")
"""Where a finding stands against a paper's (:func:`verdict`)."""
FILE_ENV, NOTEBOOK_ENV, RECORD_ONLY_ENV = "INTERP_CLAIMS_FILE", "INTERP_NOTEBOOK", "INTERP_CLAIMS_RECORD_ONLY"
SEED_TABLE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "claims-cpu.jsonl"
"""The committed table of every claim on every seed (absent from an installed, non-editable copy)."""
MARGIN = 0.8
"""A threshold is no tighter than this share of the worst seed's statistic (or the inverse, for upper bounds)."""


class ClaimFailed(AssertionError):
    """A claim whose statistic does not clear its threshold (or is not a number); the message names the claim."""


@dataclass(frozen=True)
class Claim:
    """One claim: its name, the statistic measured, the comparison and the threshold, whether it holds."""

    name: str
    statistic: float
    op: str | None
    threshold: float | None
    holds: bool
    kind: str
    subject: str | None = None
    """What the claim is about when one claim is made of several things (an organism, a split)."""
    notebook: str | None = None
    pair: str | None = None
    """The pair it was measured on when that is not the organisms (:func:`studying`)."""


_made: list[Claim] = []
_pair: list[str | None] = [None]


def studying(spec: str) -> None:
    """Claims from here on are about the pair ``spec`` (``organisms:dpo``, ``real:smollm2-safety``): asserted on the
    organisms, recorded and not raised on any other pair (see the module's text)."""
    from interp.pairs import parse

    parsed = parse(spec)
    _pair[0] = None if parsed.kind == "organisms" else parsed.label


def claim(name: str, statistic, op: str, threshold: float, *, subject: str | None = None,
          precondition: bool = False) -> Claim:
    """Assert ``statistic op threshold`` and record it; raise :class:`ClaimFailed` naming the claim if it fails
    (unless ``$INTERP_CLAIMS_RECORD_ONLY`` is set). ``precondition=True`` labels what the build itself
    guarantees (its targets), which is a condition of the notebook, not a finding of it."""
    if op not in OPS:
        raise ValueError(f"claim {name!r}: op must be one of {', '.join(OPS)}, got {op!r}")
    value = _number(name, statistic)
    holds = not math.isnan(value) and OPS[op](value, threshold)
    made = _keep(Claim(name, value, op, float(threshold), holds, "precondition" if precondition else "finding",
                       subject, os.environ.get(NOTEBOOK_ENV), _pair[0]))
    if not holds and not os.environ.get(RECORD_ONLY_ENV) and _pair[0] is None:
        what = "is nan (not a number), so it cannot be" if math.isnan(value) else f"is {value:.4g}, not"
        about = f" ({subject})" if subject else ""
        raise ClaimFailed(f"claim {name!r}{about}: the statistic {what} {op} {threshold:g}")
    return made


def observe(name: str, statistic, *, subject: str | None = None) -> float:
    """Record a statistic the text shows but does not assert (it varies by build); returns it as a float."""
    return _keep(Claim(name, _number(name, statistic), None, None, True, "observed", subject,
                       os.environ.get(NOTEBOOK_ENV), _pair[0])).statistic


def on_real(name: str, statistic, *, subject: str | None = None) -> float:
    """Record a statistic only a real pair has (a jailbreak template that gets through, a rate judged on replies
    where the organisms read a first token): shown, not asserted, with no organisms' seed range to set beside it.
    An error while studying the organisms, whose statistics belong under :func:`claim` or :func:`observe`."""
    if _pair[0] is None:
        raise ValueError(f"claim {name!r}: on_real records a real pair's statistic; call claims.studying(PAIR) with "
                         "a real pair first, or record an organisms' statistic with claims.observe")
    return _keep(Claim(name, _number(name, statistic), None, None, True, "observed", subject,
                       os.environ.get(NOTEBOOK_ENV), _pair[0])).statistic


@dataclass(frozen=True)
class Verdict:
    """Where one of a notebook's findings stands against a paper's, and why."""

    paper: str
    finding: str
    """What the paper finds, in a phrase."""
    outcome: str
    because: str
    """The property of the world or pair, or the number, that decides the outcome."""
    notebook: str | None = None
    pair: str | None = None

    def __str__(self) -> str:
        return f"**{self.paper}** ({self.finding}): **{self.outcome}**, {self.because}."


_verdicts: list[Verdict] = []


def verdict(paper: str, finding: str, outcome: str, because: str) -> Verdict:
    """Record where this notebook's finding stands against ``paper``'s ``finding``: ``outcome`` is one of
    :data:`OUTCOMES`, ``because`` what decides it. Returns the :class:`Verdict`, whose ``str`` is one line of prose
    (``Markdown(str(v))``); recorded as a row of kind ``"verdict"`` where claims are (``$INTERP_CLAIMS_FILE``).

    >>> print(verdict("Zhao et al. 2025", "harmfulness and refusal are distinct directions", "agrees", "cosine 0.09"))
    **Zhao et al. 2025** (harmfulness and refusal are distinct directions): **agrees**, cosine 0.09.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"verdict on {paper!r}: outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if not because.strip():
        raise ValueError(f"verdict on {paper!r}: say what decides it (because=...)")
    made = Verdict(paper, finding, outcome, because, os.environ.get(NOTEBOOK_ENV), _pair[0])
    _verdicts.append(made)
    path = os.environ.get(FILE_ENV)
    if path:
        row = {"claim": f"{paper}: {finding}", "kind": "verdict", "outcome": outcome, "because": because,
               "statistic": None, "op": None, "threshold": None, "holds": None, "subject": None,
               "notebook": made.notebook, "pair": made.pair}
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    return made


def verdicts():
    """This session's verdicts as a pandas DataFrame (paper, finding, outcome, because), one row each."""
    import pandas as pd

    return pd.DataFrame([{"paper": v.paper, "finding": v.finding, "outcome": v.outcome, "because": v.because}
                         for v in _verdicts], columns=["paper", "finding", "outcome", "because"])


def ratio(a, b) -> float:
    """``a / b`` as one float for a claim on how many times larger one non-negative measure is than another:
    inf where ``b`` is 0 and ``a`` positive, nan (a failed claim) where it is not such a ratio.

    >>> ratio(6, 2), ratio(1, 0), ratio(0, 0)
    (3.0, inf, nan)
    """
    a, b = float(a), float(b)
    if a < 0 or b < 0:
        return float("nan")
    return a / b if b > 0 else float("inf") if a > 0 else float("nan")


def _number(name: str, statistic) -> float:
    try:
        return float(statistic)
    except (TypeError, ValueError) as e:
        raise TypeError(f"claim {name!r}: the statistic must be one number, got {type(statistic).__name__}") from e


def _keep(made: Claim) -> Claim:
    _made.append(made)
    path = os.environ.get(FILE_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(_row(made)) + "\n")
    return made


def _row(made: Claim) -> dict:
    """A claim as a row of the claims table (the name under ``claim``)."""
    row = asdict(made)
    row["claim"] = row.pop("name")
    return row


def table(path: str | Path = SEED_TABLE):
    """This session's claims as a pandas DataFrame, one row each (a notebook's closing cell), each beside its
    range over the accepted builds of the seed table: ``seeds`` (how many), ``low`` / ``high`` and ``held`` (on
    how many of them the claim held); blank where the table has no row for it. Claims made on another pair than the
    organisms (:func:`studying`) name it in a ``pair`` column, and the seed columns are then the organisms' range to
    set beside it."""
    import pandas as pd

    rows = []
    for c in _made:
        row = {k: v for k, v in _row(c).items() if k not in ("notebook", "pair")}
        if any(m.pair for m in _made):
            row = {"pair": c.pair or "organisms", **row}
        ranged = across_seeds(c.name, c.subject, path)
        row.update(seeds=len(ranged.seeds) if ranged else 0, low=ranged.low if ranged else None,
                   high=ranged.high if ranged else None, held=ranged.holds if ranged else None)
        rows.append(row)
    return pd.DataFrame(rows)


def margin_ok(op: str, worst: float, threshold: float) -> bool:
    """Whether ``threshold`` leaves room under ``worst`` (the least favourable seed's statistic): a lower bound is
    at most :data:`MARGIN` of it, an upper bound at least ``1 / MARGIN`` of it (a bound of 0 on a statistic that is
    0 on every seed, a share that cannot go below 0, counts as met with room)."""
    if op in (">", ">="):
        return threshold <= MARGIN * worst if worst > 0 else threshold < worst
    return threshold >= worst / MARGIN if worst > 0 else threshold >= worst


def read_table(path: str | Path = SEED_TABLE) -> list[dict]:
    """The rows of a claims table (``benchmarks/claims.py``'s JSONL); empty when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class SeedRange:
    """One claim's statistic over the accepted builds of the seed table."""

    name: str
    subject: str | None
    seeds: tuple[int, ...]
    low: float
    high: float
    holds: int
    """On how many of those seeds the claim held (all of them for an observation)."""

    def __str__(self) -> str:
        return f"{self.low:.3g} to {self.high:.3g} over {len(self.seeds)} seeds"


def seed_text(name: str, subject: str | None = None, fmt: str = ".2f", path: str | Path = SEED_TABLE) -> str:
    """``"0.31 to 0.52 on 8 seeds"`` for prose: claim ``name``'s range over the seed table's accepted builds
    (``"not in the seed table"`` when it has none)."""
    ranged = across_seeds(name, subject, path)
    if ranged is None:
        return "not in the seed table"
    return f"{ranged.low:{fmt}} to {ranged.high:{fmt}} on {len(ranged.seeds)} seeds"


def across_seeds(name: str, subject: str | None = None, path: str | Path = SEED_TABLE) -> SeedRange | None:
    """The range of claim ``name``'s statistic over the accepted builds in the seed table (None: not in it)."""
    rows = [r for r in read_table(path) if r.get("claim") == name and r.get("subject") == subject
            and r.get("accepted") and r.get("statistic") is not None and not math.isnan(r["statistic"])]
    if not rows:
        return None
    values = [r["statistic"] for r in rows]
    return SeedRange(name, subject, tuple(sorted({r["seed"] for r in rows})), min(values), max(values),
                     sum(bool(r["holds"]) for r in rows))
