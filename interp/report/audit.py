"""What every report section reads (:class:`Audit`: the pair, the prompts, the replies generated once) and what each
returns (:class:`Section`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from interp import directions, interventions, metrics
from interp.data import PromptSet
from interp.jailbreaks import SPECIAL_SPLITS, splits_of
from interp.markers import RefusalMarkers
from interp.models import ModelPair
from interp.report.inputs import fitting_prompts
from interp.report.plan import PATCH_PROMPTS


@dataclass
class Audit:
    """What every section reads: the pair, the prompts, how refusals are recognised."""

    pair: ModelPair
    prompts: PromptSet
    markers: RefusalMarkers
    """How a refusal is recognised: token sequences on replies, first tokens for log-odds scores."""
    max_new_tokens: int = 16
    progress: bool = False
    """Progress bars inside the long sections (the direction search, patching)."""
    patch_prompts: int = PATCH_PROMPTS
    """Harmful prompts (of one token length) patched across the pair (:func:`interp.report.plan.patch_prompts`)."""

    @property
    def refusal_tokens(self) -> list[str]:
        """First reply tokens of a refusal, for log-odds refusal scores (directions, patching)."""
        return self.pair.tokenizer.convert_ids_to_tokens(self.markers.score_ids)

    @cached_property
    def _generated(self) -> dict[str, tuple[list[list[int]], Tensor]]:
        """Each model's greedy replies to every prompt (token ids) and the logits their first token was chosen from,
        from one pass (generated once, shared)."""
        return {name: interventions.generate_with_answer_logits(model, self.prompts, max_new_tokens=self.max_new_tokens,
                                                                return_ids=True, progress=self.progress)
                for name, model in self.pair}

    @cached_property
    def reply_ids(self) -> dict[str, list[list[int]]]:
        """Greedy replies of both models to every prompt, as token ids (generated once, shared)."""
        return {name: ids for name, (ids, _) in self._generated.items()}

    @cached_property
    def refused(self) -> dict[str, list[bool]]:
        """Whether each model's reply to each prompt refuses: it starts with a marker (judged once, shared)."""
        return {name: [self.markers.matches(ids) for ids in replies] for name, replies in self.reply_ids.items()}

    @cached_property
    def refusal_scores(self) -> dict[str, Tensor]:
        """Each model's refusal log-odds at the answer position of every prompt, read from the logits the replies'
        first tokens were chosen from (the behaviour section shows them, the direction section reads its unablated
        rates from them)."""
        return {name: metrics.refusal_score(logits, self.markers.score_ids)
                for name, (_, logits) in self._generated.items()}

    def replies(self, model: str) -> list[str]:
        decode = self.pair.tokenizer.decode
        return [decode(ids, skip_special_tokens=True).strip() for ids in self.reply_ids[model]]

    @cached_property
    def refusal_direction(self) -> directions.RefusalDirection:
        """The aligned model's refusal direction, searched on the fitting prompts (the direction and jailbreak
        sections share it)."""
        fit = fitting_prompts(self.prompts)
        return directions.find_refusal_direction(self.pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"),
                                                 refusal_tokens=self.refusal_tokens, progress=self.progress,
                                                 max_val=directions.PAPER_VALIDATION)

    def groups(self) -> dict[str, Tensor]:
        """Row masks per label, and per label and held-out status when the prompts have that column; jailbreak and
        bait rows (a ``split`` column) in groups of their own."""
        splits = splits_of(self.prompts)
        plain = torch.tensor([s not in SPECIAL_SPLITS for s in splits])
        labels = torch.tensor([label == "harmful" for label in self.prompts.labels])
        out = {}
        for name, is_harmful in (("harmful", labels & plain), ("harmless", ~labels & plain)):
            if "held_out" in self.prompts.extra:
                held = torch.tensor(self.prompts.column("held_out"))
                out[name] = is_harmful & ~held
                if (is_harmful & held).any():
                    out[f"{name}, held out"] = is_harmful & held
            else:
                out[name] = is_harmful
        for special in SPECIAL_SPLITS:
            out[special] = torch.tensor([s == special for s in splits])
        return {k: v for k, v in out.items() if v.any()}


@dataclass
class Section:
    key: str
    title: str
    summary: str
    """What the numbers say, in a sentence or two (it quotes them)."""
    numbers: dict
    figures: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    """``(caption, pandas.DataFrame)`` pairs shown under the figures."""
