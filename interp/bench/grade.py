"""Deterministic graders: a method's :class:`Hypotheses` held against a :class:`Card`, with no judge.

* :func:`token_rank` - where the plant's own word (the card's first token) comes in the method's tokens;
* :func:`precision_at` - the share of the method's first ``k`` tokens that are the card's;
* :func:`identified` - the plant's word's rank among a closed set of candidate words (the world's concepts and
  distractors, :func:`interp.bench.plants.candidates`), ordered by the method's tokens: top-1 / top-3 identification;
* :func:`localised` - whether a planted site is in the first third of the method's sites;
* :func:`direction_cosine` - |cosine| of the method's direction with the planted one;
* detection against null organisms is an AUROC over organisms (:func:`interp.probes.auroc` of the strengths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from interp.bench.cards import Card
from interp.bench.hypotheses import Hypotheses


def words(found: Hypotheses) -> tuple[str, ...]:
    """The method's tokens as words: a subword tokenizer's space marks (``Ġ``, ``▁``) dropped, lower-cased, each word
    kept at its first place.

    >>> words(Hypotheses("m", tokens=("ĠParis", "Paris", "▁the", "<eos>")))
    ('paris', 'the', '<eos>')
    """
    return tuple(dict.fromkeys(t.lstrip("Ġ▁ ").lower() for t in found.tokens if t.lstrip("Ġ▁ ")))


def token_rank(found: Hypotheses, card: Card) -> int | None:
    """1-based rank of the card's first token among the method's :func:`words`; None where absent (or nothing
    planted)."""
    named = words(found)
    if not card.tokens or card.tokens[0] not in named:
        return None
    return named.index(card.tokens[0]) + 1


def precision_at(found: Hypotheses, card: Card, k: int) -> float:
    """Share of the first ``k`` :func:`words` that are among the card's (NaN where the method names no tokens)."""
    head = words(found)[:k]
    return sum(t in card.tokens for t in head) / k if head else math.nan


def identified(found: Hypotheses, card: Card, candidates: Sequence[str]) -> int | None:
    """1-based rank of the card's first token among ``candidates``, ordered by their place in the method's words
    (candidates it never names come last, after every named one); None where the method names none of them.

    >>> card = Card("p", "k", "plain", "b", ("paint",), None, (), 0, 0, "7", "", "")
    >>> identified(Hypotheses("m", tokens=("sorry", "bake", "paint")), card, ["bake", "paint", "swim"])
    2
    """
    if card.tokens[0] not in candidates:
        raise ValueError(f"{card.tokens[0]!r} is not among the candidates: the closed set must hold the plant")
    place = {t: i for i, t in enumerate(words(found))}
    named = sorted((c for c in candidates if c in place), key=place.get)
    return named.index(card.tokens[0]) + 1 if card.tokens[0] in named else None


def _layer(site: str) -> str:
    return " ".join(site.split()[:2])


def localised(found: Hypotheses, card: Card, share: float = 1 / 3) -> bool | None:
    """Whether a site of the card is among the first ``ceil(share * n_sites)`` of the method's sites (a layer matches
    its components and a component its layer); None where the card has no site or the method ranks none."""
    if not card.sites or not found.sites:
        return None
    head = found.sites[: max(1, math.ceil(share * found.n_sites))]
    return any(h == s or _layer(h) == s or _layer(s) == h for h in head for s in card.sites)


def direction_cosine(found: Hypotheses, card: Card) -> float | None:
    """|cosine| of the method's direction with the card's (a sign-free match); None where either has none."""
    if found.direction is None or card.direction is None:
        return None
    a, b = found.direction.double().flatten(), card.direction.double().flatten()
    return float(abs(a @ b) / (a.norm() * b.norm()).clamp(min=1e-12))


def grade(found: Hypotheses, card: Card, candidates: Sequence[str]) -> dict:
    """Every grader that applies, as one JSON-able row (None where a grader does not apply)."""
    planted = card.planted
    return {"token_rank": token_rank(found, card) if planted else None,
            "precision@10": precision_at(found, card, 10) if planted and found.tokens else None,
            "identified": identified(found, card, candidates) if planted else None,
            "localised": localised(found, card), "cosine": direction_cosine(found, card),
            "strength": found.strength}


def auroc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Detection AUROC (:func:`interp.probes.auroc`) of scores with labels 1 (planted) and 0 (null); NaN without both
    (a bootstrap resampling that drew one kind only).

    >>> auroc([3, 2, 1, 2], [1, 1, 0, 0])
    0.875
    """
    from interp.probes import auroc as _auroc

    scores, labels = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels)
    if labels.min() == labels.max():
        return math.nan
    return _auroc(scores, labels)
