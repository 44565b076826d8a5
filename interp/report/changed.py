"""The report's "what changed" section: the cheap diffing methods' hypotheses about what finetuning changed, ranked as
each method ranks them (:mod:`interp.diff`)."""

from __future__ import annotations

from interp import diff
from interp.directions import MIN_PER_CLASS
from interp.prompts import first_token, tokenize_for
from interp.report.audit import Audit, Section
from interp.report.inputs import fitting_prompts
from interp.report.plan import ADL_TOKENS, MINING_K

SHOWN = 10
"""Tokens shown per list in the what-changed section."""


def what_changed(audit: Audit) -> Section:
    """Hypotheses about what finetuning changed, read off the prompts' text alone (raw, no chat template): the
    activation difference lens and diff mining (:mod:`interp.diff`), ranked as each method ranks them; and, where each
    label has :data:`interp.directions.MIN_PER_CLASS` prompts, the words of the prompts that moved most along the
    base's refusal direction (:func:`interp.diff.refusal_shift`, prompts in their format)."""
    import pandas as pd

    texts = audit.prompts.prompts
    ids = tokenize_for(audit.pair.aligned, texts, "raw")
    start = first_token(audit.pair.tokenizer, ids)
    adl = (diff.activation_difference_lens(audit.pair, texts, n_tokens=ADL_TOKENS)
           if any(len(row) >= start + ADL_TOKENS for row in ids) else None)
    mined = diff.diff_mining(audit.pair, texts, k=MINING_K, top=2 * SHOWN)
    tokens = mined.table().head(2 * SHOWN)
    lens = ({j: adl.top_tokens(j, SHOWN) for j in range(ADL_TOKENS)} if adl is not None else {})
    said_lens = (f"The mean activation difference (aligned - base) at layer {adl.layer} over the first {ADL_TOKENS} "
                 f"tokens of {adl.n_texts} prompts reads, through the aligned model's logit lens, as "
                 + "; ".join(f"token {j + 1}: " + ", ".join(repr(w) for w, _ in top[:5]) for j, top in lens.items())
                 + ". ") if adl is not None else (f"No prompt has {ADL_TOKENS} tokens{' after BOS' if start else ''}, "
                                                  "so the ADL is skipped. ")
    fit = fitting_prompts(audit.prompts)  # the plain prompts not held out, as the direction section fits on
    harmful, harmless = (fit.by_label(label).prompts for label in ("harmful", "harmless"))
    shift = (diff.refusal_shift(audit.pair, harmful, harmless, audit.prompts.prompts)
             if min(len(harmful), len(harmless)) >= MIN_PER_CLASS else None)
    moved = None if shift is None else shift.table(2 * SHOWN)
    said_shift = "" if shift is None else (
        f"Along the base's refusal direction (layer {shift.layer}, the prompts' last token), the prompts that moved "
        "most hold the words " + ", ".join(f"{r.word!r} ({r.shift:+.2f})" for r in moved.head(5).itertuples())
        + " (their prompts' mean move less the mean of all, in harmful-harmless separations). ")
    summary = (said_lens + f"Over all {mined.n_positions} prompt positions, the tokens the aligned model most often "
               f"promotes (among its {MINING_K} most raised log-probabilities) are "
               + ", ".join(repr(w) for w in tokens.token.head(5))
               + "; grouped by unembedding cosine, the first topics are "
               + "; ".join("{" + ", ".join(repr(w) for w in topic[:4]) + "}" for topic in mined.topic_words()[:3])
               + ". " + said_shift + "Hypotheses, not findings: check them against behaviour (Minder et al. 2025 "
               "read the ADL on ordinary text; here it reads the audit's own prompts).")
    numbers = {"refusal_shift": None if shift is None else {
                   "layer": shift.layer, "separation": shift.separation, "mean_abs_shift": shift.mean_abs_shift,
                   "words": moved.to_dict("records")},
               "adl": None if adl is None else {
                   "layer": adl.layer, "n_tokens": ADL_TOKENS, "n_texts": adl.n_texts, "skipped": adl.skipped,
                   "top_tokens": {str(j): [[w, v] for w, v in top] for j, top in lens.items()}},
               "mining": {"k": MINING_K, "n_positions": mined.n_positions, "tokens": tokens.to_dict("records"),
                          "topics": mined.topic_words()}}
    tables = [("Tokens most often among the aligned model's most promoted (diff mining)", tokens)]
    if shift is not None:
        tables.append((f"Words of the prompts that moved most along the base's refusal direction at layer "
                       f"{shift.layer} (mean move less the mean of all prompts, in harmful-harmless separations)",
                       moved))
    if adl is not None:
        tables.insert(0, (f"The activation difference at layer {adl.layer} through the aligned model's logit lens "
                          "(log-probabilities), by prompt token",
                          pd.DataFrame({f"token {j + 1}": [f"{w} ({v:.1f})" for w, v in top]
                                        for j, top in lens.items()})))
    return Section("what_changed", "What changed: tokens the aligned model now promotes", summary, numbers, [],
                   tables)
