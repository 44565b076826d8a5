"""``interp report``: bad input fails before any model loads; the JSON's numbers are the library's own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from inputs import refuse_loading, write_prompts

from interp import diff, directions, intervals, interventions, metrics, patching, report
from interp.cli import main
from interp.data import PromptSet
from interp.models import IncompatiblePairError, load_pair
from interp.probes import probe_pair
from interp.report.inputs import fitting_prompts, probe_split


def assert_same(got, expected, atol=1e-5):
    """JSON values (None for NaN) against library values."""
    expected = np.asarray(torch.as_tensor(expected).tolist() if isinstance(expected, torch.Tensor) else expected,
                          dtype=float)
    got = np.array(got, dtype=float)  # None -> nan
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, equal_nan=True)


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load a model fails the test: errors must come first."""
    refuse_loading(monkeypatch)


# --- bad input: clear errors before any model is loaded --------------------------------------------

def test_bad_prompt_files_fail_before_loading(tmp_path, make_checkpoint, no_loading):
    ckpt = str(make_checkpoint("gpt2"))
    out = str(tmp_path / "r.html")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.run(ckpt, ckpt, tmp_path / "missing.jsonl", out)
    one_label = tmp_path / "one.jsonl"
    one_label.write_text("".join(json.dumps({"prompt": f"how do i bake {i} ?", "label": "harmless"}) + "\n"
                                 for i in range(40)))
    with pytest.raises(ValueError, match="only \\['harmless'\\]"):
        report.run(ckpt, ckpt, one_label, out)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("prompt,label\nhow do i bake ?,harmless\nhow do i poison ?,dangerous\n")
    with pytest.raises(ValueError, match="labels \\['dangerous'\\]"):
        report.run(ckpt, ckpt, unknown, out)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ValueError, match="cannot read"):
        report.run(ckpt, ckpt, broken, out)
    few = write_prompts(tmp_path / "few.jsonl", n_train=4, n_held=4)
    with pytest.raises(ValueError, match="at least 16"):
        report.run(ckpt, ckpt, few, out)


def test_bad_output_path_pair_or_section_fail_before_loading(tmp_path, make_checkpoint, no_loading):
    prompts = write_prompts(tmp_path / "p.jsonl")
    gpt2, llama = str(make_checkpoint("gpt2")), str(make_checkpoint("llama"))
    with pytest.raises(FileNotFoundError, match="output folder"):
        report.run(gpt2, gpt2, prompts, tmp_path / "no" / "such" / "r.html")
    with pytest.raises(ValueError, match=".html"):
        report.run(gpt2, gpt2, prompts, tmp_path / "r.pdf")
    with pytest.raises(IncompatiblePairError, match="differ"):
        report.run(gpt2, llama, prompts, tmp_path / "r.html")
    with pytest.raises(ValueError, match="unknown report sections"):
        report.run(gpt2, gpt2, prompts, tmp_path / "r.html", skip=["weights", "nonsense"])
    assert main(["report", gpt2, llama, "--prompts", prompts, "--out", str(tmp_path / "r.html")]) == 2
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(ValueError, match="does not know"):  # the organisms' words are lower case: 'Sorry' is <unk>
        report.run(gpt2, str(make_checkpoint("gpt2", seed=1)), prompts, tmp_path / "r.html", refusal_prefixes=["Sorry"])
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        report.run(str(tmp_path / "missing.gguf"), gpt2, prompts, tmp_path / "r.html")
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        report.run(str(not_gguf), gpt2, prompts, tmp_path / "r.html")


# --- a tiny pair of a second architecture ------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2_report(make_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-gpt2")
    prompts = write_prompts(tmp / "prompts.jsonl")
    base, aligned = str(make_checkpoint("gpt2", seed=0)), str(make_checkpoint("gpt2", seed=1))
    code = main(["report", base, aligned, "--prompts", prompts, "--out", str(tmp / "report.html"),
                 "--refusal-prefix", "sorry", "--device", "cpu", "--prompt-format", "raw"])
    assert code == 0
    return tmp / "report.html", base, aligned, prompts


def test_gpt2_pair_report_is_complete_and_self_contained(gpt2_report):
    html_path, *_ = gpt2_report
    data = json.loads(html_path.with_suffix(".json").read_text())
    assert list(data["sections"]) == list(report.SECTIONS)
    assert data["meta"]["refusal_tokens"] == ["sorry"] and data["meta"]["refusal_markers"]["how"].startswith("given")
    assert list(data["meta"]["plan"]) == ["replies", *report.SECTIONS]  # every step estimated before it ran
    assert list(data["meta"]["seconds"]) == ["replies", *report.SECTIONS]
    assert all(w["what"] for w in data["meta"]["plan"].values())
    assert all(w["seconds"] > 0 for name, w in data["meta"]["plan"].items() if name != "behaviour")
    assert data["meta"]["plan"]["behaviour"]["seconds"] == 0  # its scores come with the replies' pass
    assert "patched prompts" in data["meta"]["defaults"] and "direction search" in data["meta"]["defaults"]
    page = html_path.read_text()
    assert page.count('class="plotly-graph-div"') >= 6  # every section but (possibly) the KL one has a figure
    assert "<script src" not in page and "<link" not in page  # plotly.js is inlined, nothing is fetched


def test_gpt2_pair_numbers_are_the_library_numbers(gpt2_report):
    html_path, base, aligned, prompts_path = gpt2_report
    data = json.loads(html_path.with_suffix(".json").read_text())["sections"]
    pair = load_pair(base, aligned, device="cpu", prompt_format="raw")
    prompts = PromptSet.from_file(prompts_path)
    assert_same(data["weights"]["numbers"]["rel_change"], diff.weight_diff(pair).layer_kind("rel_change")[0])
    sim = diff.representation_similarity(pair, prompts)
    assert_same(data["representations"]["numbers"]["cosine"]["harmful"], sim.cosine["harmful"].mean(0))
    assert_same(data["representations"]["numbers"]["cka"]["all"], sim.cka["all"])
    probes = probe_pair(pair, prompts, method="logistic", positions=-1, split=probe_split(prompts))
    assert_same(data["probes"]["numbers"]["accuracy"]["aligned → base"], probes.accuracy["aligned", "base"][:, 0])
    fit = fitting_prompts(prompts)
    found = directions.find_refusal_direction(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"),
                                              refusal_tokens=["sorry"], progress=False,
                                              max_val=directions.PAPER_VALIDATION)
    numbers = data["direction"]["numbers"]
    assert (numbers["layer"], numbers["position"]) == (found.layer, found.position)
    assert numbers["effects"]["base"] == directions.refusal_effects(
        pair.base, found, prompts.by_label("harmful"), prompts.by_label("harmless"), ["sorry"])


# --- the organisms: every section against direct calls ------------------------------------------------

@pytest.fixture(scope="module")
def organism_report(organism_zoo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-organisms")
    main(["organisms", "prompts", "--out", str(tmp / "prompts.jsonl")])
    out = tmp / "sft.html"
    code = main(["report", str(organism_zoo / "base"), str(organism_zoo / "sft"), "--prompts",
                 str(tmp / "prompts.jsonl"), "--out", str(out), "--device", "cpu"])
    assert code == 0
    pair = load_pair(organism_zoo / "base", organism_zoo / "sft", device="cpu")
    return json.loads(out.with_suffix(".json").read_text()), pair, PromptSet.from_file(tmp / "prompts.jsonl")


def test_organism_report_derives_the_refusal_marker(organism_report):
    data, _, _ = organism_report
    assert data["meta"]["refusal_tokens"] == ["sorry"] and data["meta"]["refusal_prefixes"] == ["sorry"]
    rates = data["sections"]["behaviour"]["numbers"]["refusal_rate"]
    assert rates["aligned"]["harmful"] >= 0.95 and rates["base"]["harmful"] <= 0.05


def test_organism_behaviour_and_kl_are_the_library_numbers(organism_report):
    data, pair, prompts = organism_report
    numbers = data["sections"]["behaviour"]["numbers"]
    held = prompts.where(label="harmful", held_out=True)
    replies = interventions.generate(pair.aligned, held, max_new_tokens=16)
    assert numbers["refusal_rate"]["aligned"]["harmful, held out"] == metrics.refusal_rate(replies, ["sorry"])
    # with Wilson's interval over those prompts (tests/test_intervals.py checks it against published values)
    refused = sum(metrics.is_refusal(r, ["sorry"]) for r in replies)
    wilson = intervals.rate(refused, len(replies))
    assert numbers["refusal_rate_95"]["aligned"]["harmful, held out"] == [wilson.low, wilson.high]
    train = numbers["refusal_rate_95"]["aligned"]["harmful"]
    assert f"(95%: {train[0]:.0%}-{train[1]:.0%})" in data["sections"]["behaviour"]["summary"]  # as Interval.format
    # the log-odds, read with the replies, are the library's own pass at the answer position
    scores = metrics.refusal_scores(pair.aligned, held, ["sorry"])
    assert numbers["refusal_score_rate"]["aligned"]["harmful, held out"] == pytest.approx(
        (scores > 0).float().mean().item())
    harmless = prompts.by_label("harmless")
    ids = interventions.generate(pair.aligned, harmless, max_new_tokens=16, return_ids=True)
    compared = metrics.compare_responses(pair, harmless, ids)
    kl = data["sections"]["token_kl"]["numbers"]
    assert_same(kl["kl_by_position"]["harmless"], compared.kl_by_position(16))
    assert kl["mean_kl"]["harmless"] == pytest.approx(torch.cat(compared.kl).mean().item(), abs=1e-6)


def test_organism_direction_and_patching_are_the_library_numbers(organism_report):
    data, pair, prompts = organism_report
    fit = fitting_prompts(prompts)
    found = directions.find_refusal_direction(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"),
                                              refusal_tokens=["sorry"], progress=False,
                                              max_val=directions.PAPER_VALIDATION)
    numbers = data["sections"]["direction"]["numbers"]
    assert (numbers["layer"], numbers["position"], numbers["passed_filters"]) == (
        found.layer, found.position, found.passed_filters)
    effects = directions.refusal_effects(pair.aligned, found, prompts.by_label("harmful"), prompts.by_label("harmless"),
                                         ["sorry"])
    assert numbers["effects"]["aligned"] == effects
    tokens = patching.common_length_tokens(pair.aligned, prompts.by_label("harmful"), limit=16)
    metric = patching.refusal_metric(pair.tokenizer, ["sorry"])
    result = patching.patch_across(pair.aligned, pair.base, tokens, metric, "resid_pre", reduce="mean")
    patched = data["sections"]["patching"]["numbers"]
    assert_same(patched["patched_log_odds"], result, atol=1e-4)
    # The recovery the page shows is the patched score's share of the gap, recomputed here from the sweep; where
    # refusal lives on the organisms is a finding of notebook 06, measured over seeds in the claims table.
    with torch.no_grad():
        clean, corrupted = (metric(m(tokens)).mean().item() for m in (pair.aligned, pair.base))
    assert_same(patched["recovery"], (result - corrupted) / (clean - corrupted), atol=1e-3)


def test_organism_what_changed_section_is_the_library_numbers(organism_report):
    """The ADL and diff mining of the report's prompts, read raw, as direct calls give them."""
    from interp.report.plan import ADL_TOKENS, MINING_K

    data, pair, prompts = organism_report
    numbers = data["sections"]["what_changed"]["numbers"]
    adl = diff.activation_difference_lens(pair, prompts.prompts, n_tokens=ADL_TOKENS)
    assert (numbers["adl"]["layer"], numbers["adl"]["n_texts"]) == (adl.layer, adl.n_texts)
    for j, top in numbers["adl"]["top_tokens"].items():
        expected = adl.top_tokens(int(j), len(top))
        assert [w for w, _ in top] == [w for w, _ in expected]
        assert [v for _, v in top] == pytest.approx([v for _, v in expected], abs=1e-4)
    mined = diff.diff_mining(pair, prompts.prompts, k=MINING_K)
    table = mined.table().head(len(numbers["mining"]["tokens"]))
    assert [r["token"] for r in numbers["mining"]["tokens"]] == table.token.tolist()
    assert [r["count"] for r in numbers["mining"]["tokens"]] == table["count"].tolist()
    assert numbers["mining"]["n_positions"] == mined.n_positions
    assert "Hypotheses, not findings" in data["sections"]["what_changed"]["summary"]
    fit = [p for p, h in zip(prompts.prompts, prompts.column("held_out"), strict=True) if not h]  # plain rows only
    labels = [lab for lab, h in zip(prompts.labels, prompts.column("held_out"), strict=True) if not h]
    shift = diff.refusal_shift(pair, [p for p, lab in zip(fit, labels, strict=True) if lab == "harmful"],
                               [p for p, lab in zip(fit, labels, strict=True) if lab == "harmless"], prompts.prompts)
    assert (numbers["refusal_shift"]["layer"], len(numbers["refusal_shift"]["words"])) == (shift.layer, 20)
    assert [r["word"] for r in numbers["refusal_shift"]["words"]] == list(shift.ranked[:20])
    assert [r["shift"] for r in numbers["refusal_shift"]["words"]] == pytest.approx(
        [shift.word_shift[w] / shift.separation for w in shift.ranked[:20]], abs=1e-4)
    assert f"refusal direction (layer {shift.layer}" in data["sections"]["what_changed"]["summary"]


def test_organism_dictionary_section_is_the_library_numbers(organism_report):
    """The section's crosscoder, retrained by direct calls with the plan's settings, gives the same fit, tags and
    causal table (training is seeded, so it is the same dictionary)."""
    from interp import dictionary
    from interp.report import plan
    from interp.report.inputs import fitting_prompts

    data, pair, prompts = organism_report
    numbers = data["sections"]["dictionary"]["numbers"]
    layer = dictionary.default_layer(pair.cfg.n_layers)
    config = dictionary.DictionaryConfig(**numbers["config"])
    tokens = dictionary.paired_tokens(pair, prompts, layer, progress=False)
    d = dictionary.fit(pair, prompts, layer, "crosscoder", config, tokens=tokens, progress=False)
    assert d.stats == numbers["stats"] and numbers["checked"] == d.leaning_aligned()[:plan.DICTIONARY_CAUSAL]
    assert_same(numbers["relative_norms"], d.relative_norms(), atol=1e-6)
    fit = fitting_prompts(prompts)
    refusal = directions.direction_at(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"), layer=layer,
                                      position=-1).direction
    check = dictionary.check_latents(pair, d, prompts.by_label("harmful"), ["sorry"], tokens=tokens,
                                     latents=numbers["checked"], direction=refusal)
    ours = {row["latent"]: row for row in numbers["effects"]}
    assert len(check.table) == len(ours) > 0  # the comparison below covers every checked latent
    for latent, row in check.table.iterrows():
        assert ours[latent]["addition_share"] == pytest.approx(row.addition_share, abs=1e-4)
        assert ours[latent]["ablated"] == pytest.approx(row.ablated, abs=1e-4)
    assert numbers["restoring"] == check.restoring  # whether a build has a restoring latent is the world's draw


def test_jailbreak_section_is_skipped_without_jailbreak_or_bait_rows(organism_report):
    data, _, _ = organism_report
    section = data["sections"]["jailbreak"]
    assert section["numbers"] == {"skipped": True} and "no rows whose split" in section["summary"]


def test_organism_jailbreak_section_is_the_library_numbers(organism_zoo, tmp_path):
    """A prompt file with jailbreak and bait rows: the section's directions, classes and patches are the library's."""
    from interp import jailbreaks, organisms

    path = tmp_path / "prompts.jsonl"
    main(["organisms", "prompts", "--out", str(path), "--splits", "harmful_train", "harmless_train",
          "harmful_held_out", "harmless_held_out", "jailbreak", "bait"])
    out = tmp_path / "jb.html"
    assert main(["report", str(organism_zoo / "base"), str(organism_zoo / "sft"), "--prompts", str(path), "--out",
                 str(out), "--device", "cpu", "--refusal-prefix", "sorry", "--no-token-kl", "--no-what-changed",
                 "--no-weights",
                 "--no-representations", "--no-probes", "--no-patching", "--no-dictionary"]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    numbers = data["sections"]["jailbreak"]["numbers"]
    pair = load_pair(organism_zoo / "base", organism_zoo / "sft", device="cpu")
    prompts = PromptSet.from_file(path)
    fit = fitting_prompts(prompts)
    found = directions.find_refusal_direction(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"),
                                              refusal_tokens=["sorry"], progress=False,
                                              max_val=directions.PAPER_VALIDATION)
    two = jailbreaks.two_directions(pair.aligned, fit.by_label("harmful"), fit.by_label("harmless"), layer=found.layer,
                                    refusal_position=found.position)
    assert (numbers["layer"], numbers["refusal_position"]) == (found.layer, found.position)
    assert_same(numbers["cosine_by_layer"], two.cosine, atol=1e-5)
    # classes from behaviour: each model's greedy reply (the report's 16 tokens) judged by whether it starts "sorry"
    said = {m: interventions.generate(model, prompts, max_new_tokens=16) for m, model in pair}
    judged = {m: [r.startswith("sorry") for r in replies] for m, replies in said.items()}
    projections = jailbreaks.project(pair, two, prompts, ["sorry"], refused=judged)
    counts = projections.counts()
    assert {(r["split"], r["class"]): r["prompts"] for r in numbers["classes"]} == counts.to_dict()
    classes = projections.classify()
    complied = [not judged["aligned"][i] for i in classes.prompt]
    assert not any(c == "resisted" for c, ok in zip(classes["class"], complied, strict=True) if ok)
    rows = {(r["model"], r["split"]): r for r in numbers["by_split"]}
    refused = sum(judged["aligned"][i] for i, s in enumerate(prompts.column("split")) if s == "jailbreak") / len(
        prompts.where(split="jailbreak"))
    assert rows["aligned", "jailbreak"]["refused"] == pytest.approx(refused)
    assert {"harmfulness_raw", "refusal_raw"} <= set(rows["aligned", "jailbreak"])
    wrapped = prompts.where(split="jailbreak")
    expected = jailbreaks.patch_harmfulness(pair.aligned, two, jailbreaks.plain(prompts, "harmful"), wrapped, ["sorry"])
    assert numbers["patches"]["plain harmful → jailbreak"] == pytest.approx(expected, abs=1e-5)
    assert not data["meta"]["refusal_markers"]["ambiguous"]  # bait's refusals do not make 'sorry' look ambiguous
    behaviour = data["sections"]["behaviour"]["numbers"]["refusal_rate"]["aligned"]
    # wrapped and bait rows are groups of their own (how often a build refuses wrapped requests is the world's draw)
    assert behaviour["jailbreak"] == pytest.approx(refused) and "bait" in behaviour
    assert organisms.prompts("jailbreak")[0].text not in fit.prompts  # and never fitted on


def test_jailbreak_rows_without_plain_harmful_rows_fail_before_loading(tmp_path, organism_zoo, capsys, monkeypatch):
    refuse_loading(monkeypatch)
    path = tmp_path / "p.jsonl"
    write_prompts(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["split"] = "jailbreak" if row["label"] == "harmful" else "plain"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(organism_zoo / "base"), str(organism_zoo / "sft"), "--prompts", str(path), "--out",
                 str(tmp_path / "r.html")]) == 2
    assert "jailbreak rows but no plain harmful rows" in capsys.readouterr().err


def test_dictionary_section_is_off_above_its_budget_unless_asked(gpt2_report, tmp_path, monkeypatch):
    from interp.report import plan

    _, base, aligned, prompts = gpt2_report
    monkeypatch.setattr(plan, "DICTIONARY_SECONDS", 0.0)
    args = ["report", base, aligned, "--prompts", prompts, "--refusal-prefix", "sorry", "--device", "cpu",
            "--prompt-format", "raw", "--no-token-kl", "--no-what-changed", "--no-weights", "--no-representations",
            "--no-probes",
            "--no-direction", "--no-patching"]
    assert main([*args, "--out", str(tmp_path / "off.html")]) == 0
    off = json.loads((tmp_path / "off.json").read_text())
    assert "dictionary" not in off["sections"] and "dictionary" in off["meta"]["skipped"]
    assert off["meta"]["defaults"]["dictionary"].startswith("off: estimated")
    assert "--dictionary runs it" in (tmp_path / "off.html").read_text()
    assert main([*args, "--out", str(tmp_path / "on.html"), "--dictionary"]) == 0
    on = json.loads((tmp_path / "on.json").read_text())
    assert "dictionary" in on["sections"] and "dictionary" not in on["meta"]["defaults"]
    assert main([*args, "--out", str(tmp_path / "both.html"), "--dictionary", "--no-dictionary"]) == 2


def test_report_on_the_rl_organism_works_like_any_pair(organism_zoo, tmp_path):
    """(base, rl): every section runs; the behaviour section's numbers are the library's own on the pair."""
    path = tmp_path / "prompts.jsonl"
    main(["organisms", "prompts", "--out", str(path)])
    out = tmp_path / "rl.html"
    assert main(["report", str(organism_zoo / "base"), str(organism_zoo / "rl"), "--prompts", str(path),
                 "--out", str(out), "--device", "cpu"]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert list(data["sections"]) == list(report.SECTIONS) and not data["meta"]["skipped"]
    pair = load_pair(organism_zoo / "base", organism_zoo / "rl", device="cpu")
    held = PromptSet.from_file(path).where(label="harmful", held_out=True)
    replies = interventions.generate(pair.aligned, held, max_new_tokens=16)
    rates = data["sections"]["behaviour"]["numbers"]["refusal_rate"]
    assert rates["aligned"]["harmful, held out"] == metrics.refusal_rate(replies, ["sorry"]) >= 0.8


def test_skipped_sections_are_left_out(organism_zoo, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl")
    out = tmp_path / "r.html"
    assert main(["report", str(organism_zoo / "base"), str(organism_zoo / "dpo"), "--prompts", prompts,
                 "--out", str(out), "--refusal-prefix", "sorry", "--no-behaviour", "--no-token-kl", "--no-what-changed",
                 "--no-weights",
                 "--no-representations", "--no-probes", "--no-direction", "--no-jailbreak", "--no-dictionary"]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert list(data["sections"]) == ["patching"]
    assert data["meta"]["skipped"] == [k for k in report.SECTIONS if k != "patching"]
    assert "Cross-model activation patching" in out.read_text() and "Behaviour by label" not in out.read_text()


# --- the page in a real browser -------------------------------------------------------------------

CHROMIUM = os.environ.get("INTERP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def test_report_page_renders_in_headless_chromium(gpt2_report, tmp_path):
    """Opened offline in Debian's Chromium: no console errors, every figure drawn, a screenshot that is not blank.

    ``make test`` installs Chromium and sets INTERP_REQUIRE_BROWSER=1, so in CI this runs, never skips.
    """
    if not Path(CHROMIUM).is_file():
        if os.environ.get("INTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}; `make test` installs Debian's chromium package")
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium package, or run `make test`)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    html_path = gpt2_report[0]
    problems, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in (
                "error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri(), wait_until="load")
            n_divs = page.locator(".plotly-graph-div").count()
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n_divs}")
            drawn = page.locator(".plotly-graph-div .main-svg").count()
            page.screenshot(path=tmp_path / "report.png", full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []  # nothing from the network
    assert n_divs >= 6 and drawn >= n_divs
    pixels = np.asarray(Image.open(tmp_path / "report.png").convert("RGB"), dtype=float)
    assert pixels.shape[0] > 2000 and pixels.std() > 10  # a long page with content, not one flat colour
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50  # figures' colours, not just text


def test_jailbreak_classes_follow_the_replies_not_the_projection(organism_zoo):
    """Replies that all comply (empty ones, which no marker starts): no jailbreak is 'resisted', though the organisms'
    refusal projections say they refuse every one (the projection-only classes called them all resisted)."""
    from interp import organisms
    from interp.markers import RefusalMarkers
    from interp.report.sections import Audit, jailbreak

    pair = load_pair(organism_zoo / "base", organism_zoo / "sft", device="cpu")
    prompts = organisms.prompt_set(["harmful_train", "harmless_train", "jailbreak"])
    audit = Audit(pair, prompts, RefusalMarkers.from_prefixes(pair.tokenizer, ["sorry"], pair.prompt_format))
    audit.reply_ids = {"base": [[]] * len(prompts), "aligned": [[]] * len(prompts)}  # nothing refused
    numbers = jailbreak(audit).numbers
    classes = {(r["split"], r["class"]): r["prompts"] for r in numbers["classes"]}
    assert not any(c == "resisted" for _, c in classes) and sum(classes.values()) == len(prompts.where(
        split="jailbreak"))
    assert all(r["refused"] == 0 for r in numbers["by_split"])
