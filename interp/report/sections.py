"""The report's sections: each one calls the library on the pair and returns its numbers and figures.

A section is a function ``(audit) -> Section``. Its ``numbers`` are everything the page shows
(they become the JSON beside the HTML), computed by the same library calls a notebook would
make, so a test can check them against direct calls. :data:`SECTIONS` lists them in page order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from interp import diff, directions, metrics, patching, plotting
from interp.intervals import share
from interp.jailbreaks import SPECIAL_SPLITS, plain, plain_rows, splits_of
from interp.markers import RefusalMarkers
from interp.probes import probe_pair
from interp.report.audit import Audit, Section
from interp.report.changed import what_changed
from interp.report.inputs import fitting_prompts, probe_split
from interp.report.plan import DICTIONARY_CAUSAL, dictionary_config, dictionary_rows

KL_POSITIONS = 16


def _rate(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else float("nan")


def _ambiguity_note(markers: RefusalMarkers) -> str:
    if not markers.ambiguous:
        return ""
    said = (f" Markers {list(markers.ambiguous)} start with a token that also starts the aligned model's harmless "
            "replies")
    if len(markers.ambiguous) < len(markers.prefixes):
        return said + ", so the log-odds score leaves their first tokens out (see the meta)."
    return said + ("; as every marker does, the log-odds score uses them anyway and cannot tell refusing from helping: "
                   "give longer or other --refusal-prefix values (see the meta).")


def behaviour(audit: Audit) -> Section:
    import pandas as pd

    replies = {m: audit.replies(m) for m in ("base", "aligned")}
    judged = audit.refused
    scores = audit.refusal_scores
    rates, score_rates, counts = {"base": {}, "aligned": {}}, {"base": {}, "aligned": {}}, {}
    intervals = {"base": {}, "aligned": {}}
    for group, mask in audit.groups().items():
        rows = mask.nonzero().flatten().tolist()
        counts[group] = len(rows)
        for m in rates:
            rates[m][group] = _rate(judged[m][i] for i in rows)
            intervals[m][group] = share(judged[m][i] for i in rows)
            score_rates[m][group] = (scores[m][mask] > 0).float().mean().item()
    examples = pd.DataFrame([
        {"label": audit.prompts.labels[i], "prompt": audit.prompts.prompts[i],
         "base": replies["base"][i], "aligned": replies["aligned"][i]}
        for label in ("harmful", "harmless") for i in [audit.prompts.labels.index(label)]
    ])
    said = {m: {label: intervals[m][label].format('.0%') for label in ("harmful", "harmless")} for m in intervals}
    summary = (f"The aligned model refuses {said['aligned']['harmful']} of {counts['harmful']} harmful prompts (base "
               f"{said['base']['harmful']}) and {said['aligned']['harmless']} of {counts['harmless']} harmless ones "
               f"(base {said['base']['harmless']}), judged from greedy replies of {audit.max_new_tokens} tokens "
               f"by the refusal prefixes {list(audit.markers.prefixes)} (as token sequences; 95% intervals over the "
               "prompts, Wilson's)." + _ambiguity_note(audit.markers))
    return Section(
        "behaviour", "Behaviour by label", summary,
        {"refusal_rate": rates, "refusal_rate_95": {m: {g: [i.low, i.high] for g, i in by.items()}
                                                    for m, by in intervals.items()},
         "refusal_score_rate": score_rates, "n_prompts": counts,
         "examples": examples.to_dict("records")},
        [plotting.refusal_bars(rates, title="Refused (greedy reply starts with a refusal prefix)",
                               xlabel="prompts")],
        [("Refusal rate where the refusal tokens' log-odds at the answer position is positive",
          pd.DataFrame(score_rates).rename_axis("prompts")), ("One reply of each model per label", examples)],
    )


def token_kl(audit: Audit) -> Section:
    import pandas as pd

    by_position, mean, shift = {}, {}, {}
    for label in ("harmful", "harmless"):
        rows = [i for i, y in enumerate(audit.prompts.labels) if y == label and audit.reply_ids["aligned"][i]]
        if not rows:
            continue
        compared = metrics.compare_responses(audit.pair, audit.prompts.select(rows),
                                             [audit.reply_ids["aligned"][i] for i in rows])
        by_position[label] = compared.kl_by_position(KL_POSITIONS)
        mean[label] = torch.cat(compared.kl).mean().item()
        counts = compared.rank_shift_counts()
        shift[label] = {k: v / sum(counts.values()) for k, v in counts.items()}
    figures = [plotting.layer_curves(by_position, ylabel="KL(aligned || base) (nats)", band=None,
                                     xlabel="reply token", legend="prompts",
                                     title="Per-token KL along the aligned model's replies")] if by_position else []
    summary = ("Along the aligned model's own replies, mean KL(aligned || base) per token is "
               + ", ".join(f"{v:.3f} nats on {k} prompts" for k, v in mean.items())
               + "; the share of reply tokens the base ranks first (unshifted) is "
               + ", ".join(f"{v['unshifted']:.0%} ({k})" for k, v in shift.items()) + ".")
    return Section(
        "token_kl", "Per-token KL between the models", summary,
        {"kl_by_position": {k: v.tolist() for k, v in by_position.items()}, "mean_kl": mean, "rank_shift": shift},
        figures, [("Share of reply tokens by rank under the base (1: unshifted, 2-3: marginal, >3: shifted)",
                   pd.DataFrame(shift).T.rename_axis("prompts"))],
    )


def weights(audit: Audit) -> Section:
    d = diff.weight_diff(audit.pair)
    grid, kinds = d.layer_kind("rel_change")
    table = d.table()
    layer_mean = torch.nanmean(grid, dim=1)
    top = table.sort_values("rel_change", ascending=False).iloc[0]
    where = "" if top.layer != top.layer else f" of layer {int(top.layer)}"  # NaN layer: embeddings
    summary = (f"Relative change ||W_aligned - W_base|| / ||W_base|| per weight: largest {top.rel_change:.3f} "
               f"({top.kind}{where}); mean per layer from {layer_mean.min():.3f} to {layer_mean.max():.3f}.")
    return Section(
        "weights", "Weight changes per layer", summary,
        {"kinds": kinds, "rel_change": grid.tolist(), "layer_mean_rel_change": layer_mean.tolist(),
         "table": table.to_dict("records")},
        [d.plot("rel_change")],
        [("Every weight", table)],
    )


def representations(audit: Audit) -> Section:
    import pandas as pd

    sim = diff.representation_similarity(audit.pair, audit.prompts)
    cosine = {label: sim.cosine[label].mean(0) for label in sim.cosine}
    summary = (f"Cosine between the two models' residual streams (mean over tokens) falls from "
               f"{cosine['all'][0]:.3f} at layer 0 to {cosine['all'][-1]:.3f} at the last layer; linear CKA "
               f"stays between {sim.cka['all'].min():.3f} and {sim.cka['all'].max():.3f}.")
    return Section(
        "representations", "Representation similarity per layer", summary,
        {"cosine": {k: v.tolist() for k, v in cosine.items()}, "cka": {k: v.tolist() for k, v in sim.cka.items()},
         "norm_ratio": {k: v.tolist() for k, v in sim.norm_ratio.items()}},
        [sim.plot()],
        [("Linear CKA per layer", pd.DataFrame({k: v.numpy() for k, v in sim.cka.items()}).rename_axis("layer"))],
    )


def probes(audit: Audit) -> Section:
    result = probe_pair(audit.pair, audit.prompts, method="logistic", positions=-1, split=probe_split(audit.prompts))
    acc, auroc = result.curves("accuracy"), result.curves("auroc")
    best = {m: int(acc[m].argmax()) for m in ("base", "aligned")}
    said = {m: (f"{result.accuracy_interval(m, m, best[m]).format('.2f')} (first at layer {best[m]}; fitted on "
                f"shuffled labels {result.control(m)['mean'][best[m]]:.2f} on average)") for m in best}
    summary = (f"A logistic probe for 'harmful' at the answer position, tested on {result.n_test} prompts in "
               f"{len(result.test_groups)} groups it was not fitted on, reaches accuracy {said['base']} on the base "
               f"and {said['aligned']} on the aligned model; read on the other model, the base's probe "
               f"scores {acc['base → aligned'].max():.2f} at best and the aligned model's "
               f"{acc['aligned → base'].max():.2f}.")
    return Section(
        "probes", "Probe accuracy per layer", summary,
        {"accuracy": {k: v.tolist() for k, v in acc.items()}, "auroc": {k: v.tolist() for k, v in auroc.items()},
         "shuffled_label_accuracy": {m: result.control(m)["mean"].tolist() for m in best}, "n_test": result.n_test,
         "probe_cosine": result.cosine()[:, 0].tolist(), "test_groups": [str(g) for g in result.test_groups]},
        [result.plot("accuracy",
                     title="Logistic probe for 'harmful' (answer position); A → B: fitted on A, read on B")],
    )


def direction(audit: Audit) -> Section:
    import pandas as pd

    found = audit.refusal_direction
    harmful, harmless = plain(audit.prompts, "harmful"), plain(audit.prompts, "harmless")
    rows = {label: plain_rows(audit.prompts, label) for label in ("harmful", "harmless")}
    effects = {name: directions.refusal_effects(
        model, found, harmful, harmless, audit.refusal_tokens,
        as_is={label: (audit.refusal_scores[name][r] > 0).tolist() for label, r in rows.items()})
        for name, model in audit.pair}
    chosen = found.selected
    passed = "passes" if found.passed_filters else "is the best of candidates that all FAIL"
    aligned, base = effects["aligned"], effects["base"]
    summary = (f"The selected direction (layer {found.layer}, position {found.position}) {passed} the selection "
               f"filters (KL on harmless prompts {chosen.kl:.3f}). Ablating it in the aligned model takes harmful "
               f"refusal from {aligned.interval('none', 'harmful').format('.0%')} to "
               f"{aligned.interval('ablate', 'harmful').format('.0%')}; adding it takes harmless refusal to "
               f"{aligned.interval('add', 'harmless').format('.0%')} (base: "
               f"{base.interval('add', 'harmless').format('.0%')}; refusal read from the first answer token, 95% "
               f"intervals over the {aligned.counts['harmful']} harmful and {aligned.counts['harmless']} harmless "
               "prompts).")
    return Section(
        "direction", "Refusal direction", summary,
        {"layer": found.layer, "position": found.position, "passed_filters": found.passed_filters,
         "selected": {k: chosen[k] for k in ("bypass_score", "induce_score", "kl")},
         "effects": {name: dict(e) for name, e in effects.items()},
         "candidates": found.scores.to_dict("records")},
        [directions.plot_effects(effects, title="Refusal (log-odds > 0) under the aligned model's direction")],
        [("Every candidate direction", pd.DataFrame(found.scores))],
    )


def cross_patching(audit: Audit) -> Section:
    model = audit.pair.aligned
    tokens = patching.common_length_tokens(model, plain(audit.prompts, "harmful"), limit=audit.patch_prompts)
    metric = patching.refusal_metric(audit.pair.tokenizer, audit.refusal_tokens)
    with torch.no_grad():
        value = {name: metric(m(tokens)).mean().item() for name, m in audit.pair}
    result = patching.patch_across(audit.pair.aligned, audit.pair.base, tokens, metric, "resid_pre",
                                   reduce="mean", baseline=True, progress=audit.progress)
    recovers = abs(value["aligned"] - value["base"]) > 1e-3  # a gap to recover (else raw log-odds are shown)
    shown = result.normalized(torch.tensor(value["aligned"])) if recovers else result.values
    labels = patching.position_labels(audit.pair.tokenizer, tokens)
    layer, pos = divmod(int(shown.argmax()), shown.shape[1])
    summary = (f"On {len(tokens)} harmful prompts of {tokens.shape[1]} tokens, refusal log-odds are "
               f"{value['base']:.2f} (base) and {value['aligned']:.2f} (aligned). Patching the aligned model's "
               f"residual stream into the base one cell at a time "
               + (f"recovers at most {shown.max():.0%} of that gap" if recovers else
                  f"gives log-odds of at most {shown.max():.2f} (no gap to normalise by)")
               + f" (layer {layer}, position {pos}, '{labels[pos]}').")
    return Section(
        "patching", "Cross-model activation patching", summary,
        {"n_prompts": len(tokens), "tokens": labels, "refusal_log_odds": value,
         "patched_log_odds": result.values.tolist(),
         "recovery": shown.tolist() if recovers else None},
        [plotting.layer_pos_heatmap(shown, labels, zlabel="recovery" if recovers else "log-odds",
                                    title="Aligned resid_pre patched into the base (harmful prompts)")],
    )


def crosscoder(audit: Audit) -> Section:
    """A BatchTopK crosscoder on the report's prompts at one layer; its aligned-leaning latents checked causally."""
    from interp import dictionary
    from interp.prompts import tokenize

    pair, title = audit.pair, "Crosscoder latents"
    layer = dictionary.default_layer(pair.cfg.n_layers)
    ids = tokenize(pair.tokenizer, audit.prompts, pair.prompt_format, n_ctx=pair.n_ctx)
    config = dictionary_config(pair.cfg.d_model, dictionary_rows([len(row) for row in ids]))
    if config is None:
        return Section("dictionary", title, f"Skipped: the prompts hold {sum(len(r) - 1 for r in ids)} tokens, too "
                       "few for a dictionary of 16 latents; give more prompts.", {"layer": layer, "config": None})
    tokens = dictionary.paired_tokens(pair, audit.prompts, layer, progress=audit.progress)
    d = dictionary.fit(pair, audit.prompts, layer, "crosscoder", config, tokens=tokens, progress=audit.progress)
    leaning = d.leaning_aligned()
    tags = {t: d.tags().count(t) for t in dictionary.TAGS}
    numbers = {"layer": layer, "config": config.to_dict(), "stats": d.stats, "tags": tags,
               "relative_norms": d.relative_norms().tolist(), "checked": leaning[:DICTIONARY_CAUSAL]}
    summary = (f"A BatchTopK crosscoder with {d.n_latents} latents (k = {config.k}) at "
               f"{dictionary.site(layer)} explains {d.stats['fve']['base']:.0%} (base) and "
               f"{d.stats['fve']['aligned']:.0%} (aligned) of the variance of held-back tokens; {tags['shared']} "
               f"latents are shared, {tags['aligned-only']} aligned-only and {tags['base-only']} base-only, and "
               f"{len(leaning)} lie above the shared band")
    if not leaning:
        return Section("dictionary", title, summary + ", so none is checked causally.", numbers, [d.plot()])
    fit = fitting_prompts(audit.prompts)
    refusal = directions.direction_at(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"), layer=layer,
                                      position=-1).direction
    try:
        check = dictionary.check_latents(pair, d, plain(audit.prompts, "harmful"), audit.refusal_tokens,
                                         tokens=tokens, latents=leaning[:DICTIONARY_CAUSAL], direction=refusal)
    except dictionary.NoRefusalGap as e:
        return Section("dictionary", title, f"{summary}. No causal check: {e}.", numbers, [d.plot()])
    effects, restoring = check.effects, check.restoring
    passed = [j for j in restoring if j in set(check.scaling.passed())]
    best = effects.share_interval(restoring[0]) if restoring else None  # over the prompts (the latent chosen on them)
    summary += (f" (the {len(numbers['checked'])} most aligned are checked). On the harmful prompts (refusal log-odds "
                f"{effects.base_score:.2f} base, {effects.aligned_score:.2f} aligned), {len(restoring)} of them "
                f"restore a fifth of the gap or more when added to the base"
                + (f", the best (latent {restoring[0]}) {best.format('.0%')}, with "
                   f"cosine {check.table.loc[restoring[0], 'cosine']:.2f} to the refusal direction at this layer; "
                   f"{len(passed)} of them pass latent scaling" if restoring else "") + ".")
    numbers.update({"refusal": {"base": effects.base_score, "aligned": effects.aligned_score},
                    "restoring": restoring, "restoring_pass_scaling": passed,
                    "best_restored_95": None if best is None else [best.low, best.high],
                    "effects": check.table.reset_index().to_dict("records")})
    return Section("dictionary", title, summary, numbers, [d.plot(), effects.plot()],
                   [("Latents above the shared band: refusal under each edit, latent scaling", check.table)])


def jailbreak(audit: Audit) -> Section:
    """Harmfulness and refusal as two directions; jailbreak and bait rows classified, the harmfulness patch."""
    import pandas as pd

    from interp import jailbreaks

    title, splits = "Jailbreaks and bait: harmfulness vs refusal", set(splits_of(audit.prompts))
    if not splits & set(SPECIAL_SPLITS):
        return Section("jailbreak", title, "Skipped: the prompt file has no rows whose split column says 'jailbreak' "
                       "or 'bait' (`interp organisms prompts --splits ... jailbreak bait` writes such a file).",
                       {"skipped": True})
    pair, found = audit.pair, audit.refusal_direction
    fit = fitting_prompts(audit.prompts)
    two = jailbreaks.two_directions(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"), layer=found.layer,
                                    refusal_position=found.position)
    # classes from what each model did: its replies judged by the report's refusal markers (a reply that complies
    # is a jailbreak that worked, whatever its refusal projection)
    projections = jailbreaks.project(pair, two, audit.prompts, audit.refusal_tokens, refused=audit.refused)
    counts = projections.counts()
    by_split = projections.by_split()
    harmful, harmless = plain(audit.prompts, "harmful"), plain(audit.prompts, "harmless")
    row_splits = splits_of(audit.prompts)

    def rows_of(special: str):  # () when the file has none of them (jailbreak rows and no bait, or the reverse)
        keep = [s == special for s in row_splits]
        return audit.prompts.select(keep) if any(keep) else ()

    wrapped, bait = rows_of(jailbreaks.JAILBREAK), rows_of(jailbreaks.BAIT)
    sets = {"plain harmful": harmful, "jailbreak": wrapped, "plain harmless": harmless, "bait": bait}
    moves = [(source, target) for source, target in (("plain harmful", "jailbreak"), ("jailbreak", "plain harmful"),
                                                     ("plain harmless", "bait"), ("plain harmless", "plain harmful"))
             if len(sets[source]) and len(sets[target])]
    patches = {f"{source} → {target}": result for (source, target, _), result in jailbreaks.harmfulness_patches(
        pair.aligned, two, sets, moves, audit.refusal_tokens).items()}
    said = "; ".join(f"{split}: " + ", ".join(f"{n} {c}" for c, n in counts[split].items())
                     for split in counts.index.get_level_values(0).unique())
    summary = (f"At layer {two.layer}, the aligned model's harmfulness direction (the request's last token) and its "
               f"refusal direction (position {two.refusal_position}) have cosine {two.cosine[two.layer]:.2f}. Classes "
               f"in the aligned model, by whether its reply refuses (the markers) and then by the harmfulness "
               f"projection: {said or 'none'}. "
               + " ".join(f"Setting the harmfulness projection {k}: refusal log-odds {v['before']:.2f} → "
                          f"{v['after']:.2f}." for k, v in patches.items()))
    return Section(
        "jailbreak", title, summary,
        {"layer": two.layer, "harm_position": two.harm_position, "refusal_position": two.refusal_position,
         "cosine_by_layer": two.cosine.tolist(), "by_split": by_split.reset_index().to_dict("records"),
         "classes": counts.reset_index().to_dict("records"), "patches": patches},
        [projections.plot(), two.plot()],
        [("Mean projections (−1 plain harmless, +1 plain harmful; _raw: on the unit directions) and refused shares "
          "(replies judged), per model and split", by_split),
         ("Harmfulness patched (set to the mean of another set of prompts)", pd.DataFrame(patches).T)],
    )


SECTIONS: dict[str, Callable[[Audit], Section]] = {
    "behaviour": behaviour, "token_kl": token_kl, "what_changed": what_changed, "weights": weights,
    "representations": representations,
    "probes": probes, "direction": direction, "patching": cross_patching, "jailbreak": jailbreak,
    "dictionary": crosscoder,
}
"""Every section, in page order; keys name them in ``--no-<key>`` flags and in the JSON."""
