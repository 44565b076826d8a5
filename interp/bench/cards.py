"""A planted organism's ground truth: what was planted, where, and in which weights.

A :class:`Card` is written beside the organism's checkpoint (``card.json``, and ``direction.safetensors`` when the
plant has a direction) by :mod:`interp.bench.plants`. It names the checkpoints it describes by the sha256 of their
weight files, so a card held against another organism (another seed, another base, a re-trained copy) is refused
before any method runs (:func:`check_card`). Cards are versioned (:data:`BENCH_VERSION`): a later method is scored
on the same organisms, and a card of another version is refused the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BENCH_VERSION = "1"
"""1: the toy world's plants of :mod:`interp.bench.plants` on a zoo's ``sft`` organism (world version 7)."""
CARD_FILE, DIRECTION_FILE = "card.json", "direction.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class CardMismatch(ValueError):
    """A card that does not describe the checkpoints it is held against, or of another benchmark version."""


@dataclass(frozen=True)
class Card:
    """What a plant put into ``organism`` on top of ``control``.

    ``tokens``: the words a method should name, the plant's own word first (the topic, the trigger, the promoted
    token); empty for a null organism, where nothing was planted. ``sites``: where the change is confined
    (``"layer 2"``, ``"layer 1 mlp"``, as :func:`interp.diff.swap` names groups); empty when every layer was tuned.
    ``direction``: the residual-stream direction a rank-1 edit writes, else None. ``effect``: the plant's behaviour
    measured on the organism and on its control when it was built (did it take?)."""

    name: str
    kind: str
    rung: str
    behaviour: str
    tokens: tuple[str, ...]
    trigger: str | None
    sites: tuple[str, ...]
    zoo_seed: int
    stage_seed: int
    world_version: str
    control_sha256: str
    organism_sha256: str
    recipe: dict = field(default_factory=dict)
    effect: dict = field(default_factory=dict)
    direction: torch.Tensor | None = None
    version: str = BENCH_VERSION

    @property
    def planted(self) -> bool:
        return bool(self.tokens)

    def save(self, folder: str | Path) -> Path:
        """Write the direction (if any), then ``card.json`` last, each through a temporary file: a folder with a card
        is a whole organism."""
        folder = Path(folder)
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "direction"}
        if self.direction is not None:
            part = folder / f"{DIRECTION_FILE}.part"
            save_file({"direction": self.direction.detach().float().cpu().contiguous()}, part)
            part.replace(folder / DIRECTION_FILE)
        part = folder / f"{CARD_FILE}.part"
        part.write_text(json.dumps(fields, indent=1) + "\n")
        part.replace(folder / CARD_FILE)
        return folder / CARD_FILE


def load_card(folder: str | Path) -> Card:
    """The card written in ``folder`` (an organism's checkpoint directory)."""
    folder = Path(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        raise CardMismatch(f"{folder} has no {CARD_FILE}: not a planted organism of interp.bench")
    fields = json.loads(path.read_text())
    if fields.get("version") != BENCH_VERSION:
        raise CardMismatch(f"the card in {folder} is of benchmark version {fields.get('version')}, this is version "
                           f"{BENCH_VERSION}: rebuild the organisms (interp.bench.plants)")
    unknown = set(fields) - {f.name for f in dataclasses.fields(Card)}
    if unknown:
        raise CardMismatch(f"the card in {folder} has fields this version does not know: {sorted(unknown)}")
    for key in ("tokens", "sites"):
        fields[key] = tuple(fields[key])
    direction = folder / DIRECTION_FILE
    fields["direction"] = load_file(direction)["direction"] if direction.is_file() else None
    return Card(**fields)


def checkpoint_sha256(folder: str | Path) -> str:
    """One sha256 over a checkpoint's weight files (names and bytes, in name order)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name != DIRECTION_FILE)
    if not files:
        raise CardMismatch(f"{folder} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def check_card(card: Card, control: str | Path, organism: str | Path) -> None:
    """Refuse a card that is of another benchmark version or does not describe these two checkpoints."""
    if card.version != BENCH_VERSION:
        raise CardMismatch(f"the card of {card.name} is of benchmark version {card.version}, this is version "
                           f"{BENCH_VERSION}: rebuild the organisms (interp.bench.plants)")
    for role, folder, expected in (("control", control, card.control_sha256),
                                   ("organism", organism, card.organism_sha256)):
        found = checkpoint_sha256(folder)
        if found != expected:
            raise CardMismatch(f"the card of {card.name} (zoo seed {card.zoo_seed}) does not describe {folder}: its "
                               f"{role}'s weights have sha256 {found[:12]}, the card's {expected[:12]} (another seed "
                               "or base, or a re-trained checkpoint)")
