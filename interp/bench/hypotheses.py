"""What a method says changed between a pair, in one format every method writes and every grader reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Corpus:
    """What a method may read besides the pair: ordinary ``texts`` (documents, read raw) and ordinary ``requests``
    (chat prompts to reply to), ``harmful`` those of them labelled harmful by their source (a benchmark's, the
    world's split), and ``questions`` an auditor asks the model about itself (none where the model cannot be asked:
    the toy world's vocabulary has no such words); never the planting data."""

    texts: Sequence[str]
    requests: Sequence[str]
    harmful: Sequence[str] = ()
    questions: Sequence[str] = ()

    def harmless(self) -> list[str]:
        """The requests not labelled harmful."""
        harmful = set(self.harmful)
        return [r for r in self.requests if r not in harmful]


@dataclass(frozen=True)
class Hypotheses:
    """A method's ranked hypotheses about a pair (control, organism), from the pair and ordinary text alone.

    ``tokens``: words, most implicated first (a topic, a trigger, a promoted token). ``sites``: where the change
    lives, most first, named as :func:`interp.diff.swap` names groups (``"layer 2"``, ``"layer 1 mlp"``), out of
    ``n_sites`` candidate sites the method ranked. ``direction``: a residual-stream direction the method holds
    responsible, or None. ``strength``: how much the method sees changed at all, read without any card (what
    detection against null organisms ranks). Any of them may be empty where the method cannot say."""

    method: str
    tokens: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    n_sites: int = 0
    direction: Tensor | None = None
    strength: float = math.nan
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def summary(self, k: int = 5) -> dict:
        """The first ``k`` tokens and sites, the strength and the time: a JSON-able row."""
        return {"method": self.method, "tokens": list(self.tokens[:k]), "sites": list(self.sites[:k]),
                "n_sites": self.n_sites, "strength": self.strength, "seconds": round(self.seconds, 2),
                "has_direction": self.direction is not None, **self.details}
