"""Labelled prompt sets: user requests with labels, from lists or from a user's JSONL / CSV file.

A :class:`PromptSet` is an immutable value: user requests (not yet chat-formatted), one label
each, and any extra columns (``held_out``, ``concept``, ``split``, ...). Formatting for a model
happens at the last moment, under the pair's prompt-format policy (:meth:`PromptSet.format`).

>>> ps = PromptSet(["how do i bake ?", "how do i stab ?"], ["harmless", "harmful"], {"held_out": [True, False]})
>>> len(ps), ps.label_names
(2, ('harmful', 'harmless'))
>>> ps.where(held_out=True).prompts
('how do i bake ?',)

The organism world's prompts: :func:`interp.organisms.prompt_set`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interp.prompts import format_prompts

TRUE_STRINGS = {"1", "true", "yes", "y", "t"}
FALSE_STRINGS = {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True)
class PromptSet:
    """User requests with one label each, plus optional extra columns of the same length."""

    prompts: tuple[str, ...]
    labels: tuple[str, ...]
    extra: Mapping[str, tuple] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "extra", {k: tuple(v) for k, v in self.extra.items()})
        what = f"prompt set {self.name!r}" if self.name else "prompt set"
        if not self.prompts:
            raise ValueError(f"the {what} is empty")
        if len(self.labels) != len(self.prompts):
            raise ValueError(f"the {what} has {len(self.prompts)} prompts but {len(self.labels)} labels")
        for key, values in self.extra.items():
            if len(values) != len(self.prompts):
                raise ValueError(
                    f"column {key!r} of the {what} has {len(values)} values for {len(self.prompts)} prompts"
                )
        if not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ValueError(f"the {what} contains an empty or non-text prompt")

    def __len__(self) -> int:
        return len(self.prompts)

    def __repr__(self) -> str:
        counts = ", ".join(f"{label}={self.labels.count(label)}" for label in self.label_names)
        return f"PromptSet({self.name or 'unnamed'!r}, n={len(self)}, {counts}, columns={list(self.extra)})"

    @property
    def label_names(self) -> tuple[str, ...]:
        """The distinct labels, sorted."""
        return tuple(sorted(set(self.labels)))

    def column(self, key: str) -> tuple:
        if key == "label":
            return self.labels
        if key not in self.extra:
            raise KeyError(f"no column {key!r}; this set has label and {sorted(self.extra)}")
        return self.extra[key]

    def select(self, keep: Sequence[bool] | Sequence[int], name: str | None = None) -> PromptSet:
        """The rows where ``keep`` is true (a boolean mask) or at the given indices."""
        index = [i for i, k in enumerate(keep) if k] if keep and isinstance(keep[0], bool) else list(keep)
        return PromptSet(
            prompts=[self.prompts[i] for i in index],
            labels=[self.labels[i] for i in index],
            extra={k: [v[i] for i in index] for k, v in self.extra.items()},
            name=self.name if name is None else name,
        )

    def sample(self, n: int | None, seed: int = 0) -> PromptSet:
        """``n`` rows drawn at random without replacement (a fixed ``seed``), kept in their order; all of them when
        ``n`` is None or at least the set's size.

        >>> PromptSet(list("abcdef"), ["harmless"] * 6).sample(3).prompts
        ('a', 'd', 'f')
        """
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"sample needs n >= 1, got {n}")
        import random

        return self.select(sorted(random.Random(seed).sample(range(len(self)), n)))

    def where(self, **conditions) -> PromptSet:
        """Rows whose columns equal the given values: ``ps.where(label="harmful", held_out=False)``."""
        keep = [all(self.column(k)[i] == v for k, v in conditions.items()) for i in range(len(self))]
        if not any(keep):
            raise ValueError(f"no prompts in {self.name or 'the set'} match {conditions}")
        return self.select(keep)

    def by_label(self, label: str) -> PromptSet:
        return self.where(label=label)

    def require_labels(self, *labels: str) -> None:
        """Raise unless every one of ``labels`` occurs (e.g. both classes for a probe)."""
        missing = [label for label in labels if label not in self.labels]
        if missing:
            raise ValueError(f"{self.name or 'the prompt set'} has no {missing} prompts; labels present: "
                             f"{list(self.label_names)}")

    def format(self, tokenizer, prompt_format: str = "chat") -> list[str]:
        """The prompts rendered as model input text (see :func:`interp.prompts.format_prompts`)."""
        return format_prompts(tokenizer, self.prompts, prompt_format)

    @classmethod
    def concat(cls, sets: Iterable[PromptSet], name: str = "") -> PromptSet:
        """Rows of several sets, in order; extra columns must agree."""
        sets = list(sets)
        if not sets:
            raise ValueError("nothing to concatenate")
        keys = set(sets[0].extra)
        if any(set(s.extra) != keys for s in sets):
            raise ValueError("prompt sets with different columns cannot be concatenated")
        return cls(
            prompts=[p for s in sets for p in s.prompts],
            labels=[label for s in sets for label in s.labels],
            extra={k: [v for s in sets for v in s.extra[k]] for k in sorted(keys)},
            name=name,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> PromptSet:
        """Read a JSONL (one object per line) or CSV file with ``prompt`` and ``label`` columns.

        Other columns are kept as extra columns; ``held_out`` is parsed as a boolean.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {str(path)!r} does not exist (or is not a file)")
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as spreadsheets write, is not a column
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read prompt file {str(path)!r}: {e}") from e
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            rows = _jsonl_rows(text, path)
        elif suffix == ".csv":
            rows = _csv_rows(text, path)
        else:
            raise ValueError(f"prompt file {str(path)!r} must be .jsonl or .csv, not {suffix or 'no extension'!r}")
        return cls.from_records(rows, name=path.stem, source=str(path))

    @classmethod
    def from_records(cls, rows: Sequence[Mapping], name: str = "", source: str = "the records") -> PromptSet:
        """Build from dicts with ``prompt`` and ``label`` keys (and optional others)."""
        if not rows:
            raise ValueError(f"no prompts in {source}")
        columns = list(rows[0])
        for required in ("prompt", "label"):
            if required not in columns:
                raise ValueError(f"{source} has no {required!r} column; its columns are {columns}")
        for i, row in enumerate(rows):
            if set(row) != set(columns):
                raise ValueError(f"row {i + 1} of {source} has columns {sorted(row)}, the first row {sorted(columns)}")
        for key in ("prompt", "label", "concept", "split"):
            bad = next((i for i, row in enumerate(rows) if key in row and not isinstance(row[key], str)
                        and not (key in ("concept", "split") and row[key] is None)), None)
            if bad is not None:
                raise ValueError(f"row {bad + 1} of {source}: {key} must be text, got {rows[bad][key]!r}")
        extra = {k: [row[k] for row in rows] for k in columns if k not in ("prompt", "label")}
        if "held_out" in extra:
            extra["held_out"] = [_as_bool(v, source) for v in extra["held_out"]]
        return cls(prompts=[row["prompt"] for row in rows], labels=[row["label"] for row in rows], extra=extra,
                   name=name)


def _csv_rows(text: str, path: Path) -> list[dict]:
    """The rows of a CSV file as the ``csv`` module parses it (a quoted field keeps its newlines), each with as
    many fields as the header, else a ``ValueError`` naming the row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        table = list(reader)
    except csv.Error as e:
        raise ValueError(f"line {reader.line_num} of {str(path)!r} is not valid CSV: {e}") from None
    if not table:
        return []
    header, body = table[0], [(number, row) for number, row in enumerate(table[1:], 1) if row]
    for number, row in body:
        if len(row) != len(header):
            raise ValueError(f"row {number} of {str(path)!r} (after the header) has {len(row)} fields, the header "
                             f"{len(header)} ({', '.join(header)}); quote a field that holds a comma")
    return [dict(zip(header, row, strict=True)) for _, row in body]


def _jsonl_rows(text: str, path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {number} of {str(path)!r} is not valid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise ValueError(f"line {number} of {str(path)!r} is not a JSON object")
        rows.append(row)
    return rows


def _as_bool(value, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_STRINGS:
        return True
    if text in FALSE_STRINGS:
        return False
    raise ValueError(f"held_out in {source} must be true/false, got {value!r}")
