"""interp.jailbreaks: the two directions, projections and the harmfulness patch against plain transformers runs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from interp import jailbreaks, organisms
from interp.data import PromptSet
from interp.interventions import SetProjection, apply
from interp.metrics import refusal_score, token_ids
from interp.prompts import format_prompts


@pytest.fixture(scope="module")
def pair(organism_zoo):
    return organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")


def _hidden(path, tokenizer, prompts: list[str], layer: int, position: int) -> torch.Tensor:
    """Oracle: the transformers model's hidden state entering ``layer`` at ``position``, one prompt at a time."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    for text in format_prompts(tokenizer, prompts, "chat"):
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out.append(model(ids, output_hidden_states=True).hidden_states[layer][0, position])
    return torch.stack(out)


def test_last_instruction_position_is_the_requests_last_token(pair):
    tokenizer = pair.tokenizer
    assert jailbreaks.last_instruction_position(tokenizer, "chat") == -2  # "... rob ? <|assistant|>"
    assert jailbreaks.last_instruction_position(tokenizer, "raw") == -1
    ids = tokenizer(format_prompts(tokenizer, ["how do i rob ?"], "chat")[0], add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(ids)[-2] == "?"


def test_two_directions_against_transformers_hidden_states(organism_zoo, pair):
    harmful = [p.text for p in organisms.prompts("harmful_train")][:12]
    harmless = [p.text for p in organisms.prompts("harmless_train")][:12]
    two = jailbreaks.two_directions(pair.aligned, harmful, harmless, layer=2)
    for position, ours in ((-2, two.harmfulness), (-1, two.refusal)):
        expected = (_hidden(organism_zoo / "sft", pair.tokenizer, harmful, 2, position).mean(0)
                    - _hidden(organism_zoo / "sft", pair.tokenizer, harmless, 2, position).mean(0))
        assert torch.allclose(ours, expected, atol=1e-4)
    assert two.cosine[2].item() == pytest.approx(
        torch.nn.functional.cosine_similarity(two.harmfulness, two.refusal, dim=0).item(), abs=1e-5)


def test_projections_are_in_units_of_the_plain_requests_and_match_the_oracle(organism_zoo, pair):
    prompts = organisms.prompt_set(["harmful_train", "harmless_train", "jailbreak"])
    two = jailbreaks.two_directions(pair.aligned, organisms.prompt_set("harmful_train"),
                                    organisms.prompt_set("harmless_train"), layer=2)
    proj = jailbreaks.project(pair, two, prompts, organisms.REFUSAL_TOKENS)
    means = proj.table.groupby(["model", "split"]).harmfulness.mean()
    for model in ("base", "aligned"):
        assert means[model, "harmful_train"] == pytest.approx(1.0, abs=1e-4)
        assert means[model, "harmless_train"] == pytest.approx(-1.0, abs=1e-4)
    # Oracle for the aligned model's raw projections: hidden states one prompt at a time, projected by hand.
    unit = two.harmfulness / two.harmfulness.norm()
    raw = {split: _hidden(organism_zoo / "sft", pair.tokenizer, list(prompts.where(split=split).prompts), 2, -2) @ unit
           for split in ("harmful_train", "harmless_train", "jailbreak")}
    mid = (raw["harmful_train"].mean() + raw["harmless_train"].mean()) / 2
    half = (raw["harmful_train"].mean() - raw["harmless_train"].mean()) / 2
    ours = proj.table[(proj.table.model == "aligned") & (proj.table.split == "jailbreak")].harmfulness.to_numpy()
    assert torch.allclose(torch.tensor(ours, dtype=torch.float32), (raw["jailbreak"] - mid) / half, atol=1e-3)
    # ... and for its refusal scores, read in the same pass: transformers' logits after each prompt, one at a time
    from interp.metrics import refusal_score, token_ids

    model = AutoModelForCausalLM.from_pretrained(organism_zoo / "sft", dtype=torch.float32).eval()
    texts = format_prompts(pair.tokenizer, list(prompts.where(split="jailbreak").prompts), "chat")
    with torch.no_grad():
        logits = torch.cat([model(pair.tokenizer(t, add_special_tokens=False, return_tensors="pt").input_ids
                                  ).logits[:, -1] for t in texts])
    expected = refusal_score(logits, token_ids(pair.tokenizer, organisms.REFUSAL_TOKENS))
    scores = proj.table[(proj.table.model == "aligned") & (proj.table.split == "jailbreak")].refusal_score.to_numpy()
    assert torch.allclose(torch.tensor(scores, dtype=torch.float32), expected, atol=1e-3)


def test_verdicts_judged_on_replies_replace_the_refusal_score(organism_zoo, pair):
    prompts = organisms.prompt_set(["harmful_train", "harmless_train", "jailbreak"]).sample(12)
    two = jailbreaks.two_directions(pair.aligned, organisms.prompt_set("harmful_train"),
                                    organisms.prompt_set("harmless_train"), layer=2)
    said = {"base": [None] * 6 + [False] * 6, "aligned": [True, False] * 6}
    proj = jailbreaks.project(pair, two, prompts, organisms.REFUSAL_TOKENS, refused=said)
    assert proj.judged and proj.provenance.params["judged"]
    for model, verdicts in said.items():
        got = proj.table[proj.table.model == model].refused.tolist()
        assert [None if g != g else bool(g) for g in got] == verdicts
    with pytest.raises(ValueError, match="one verdict per prompt \\(12\\) for each of \\['base', 'aligned'\\]"):
        jailbreaks.project(pair, two, prompts, organisms.REFUSAL_TOKENS, refused={"aligned": [True] * 12})


def test_classes_follow_behaviour_then_harmfulness():
    table = pd.DataFrame([
        {"model": "aligned", "split": "jailbreak", "harmfulness": 0.8, "refusal": 0.9, "refusal_score": 2.0},
        {"model": "aligned", "split": "jailbreak", "harmfulness": 0.7, "refusal": -0.4, "refusal_score": -3.0},
        {"model": "aligned", "split": "jailbreak", "harmfulness": -0.6, "refusal": -0.5, "refusal_score": -3.0},
        {"model": "aligned", "split": "bait", "harmfulness": 0.3, "refusal": 0.8, "refusal_score": 1.0},
        {"model": "aligned", "split": "bait", "harmfulness": -0.3, "refusal": 0.6, "refusal_score": 1.0},
        {"model": "aligned", "split": "bait", "harmfulness": 0.9, "refusal": 0.6, "refusal_score": -1.0},  # answered
        # on the refusing side of the refusal projection, yet answered (score below 0): it got through, never resisted
        {"model": "aligned", "split": "jailbreak", "harmfulness": 0.5, "refusal": 0.7, "refusal_score": -0.5},
    ]).assign(refused=lambda t: (t.refusal_score > 0).astype(float))
    proj = jailbreaks.Projections(table, None, None)
    assert proj.classify()["class"].tolist() == ["resisted", "suppression", "disguise", "suppression",
                                                 "harmfulness fires", "refusal alone"]
    table = table.iloc[:6]
    # judged on replies: a reply that complies is a jailbreak that worked, whatever its refusal projection; one that
    # refuses resisted; refused bait is what the judge calls refused
    judged = table.assign(refused=[0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    classes = jailbreaks.Projections(judged, None, None, judged=True).classify()["class"].tolist()
    assert classes == ["suppression", "resisted", "disguise", "refusal alone", "harmfulness fires"]
    # each wrapped request beside its plain one, by request text (a row without a verdict, or a plain twin, drops)
    rows = pd.DataFrame([
        {"model": "aligned", "split": "harmful_held_out", "request": "a", "template": "", "refused": 1.0},
        {"model": "aligned", "split": "harmful_held_out", "request": "b", "template": "", "refused": 0.0},
        {"model": "aligned", "split": "harmful_held_out", "request": "c", "template": "", "refused": float("nan")},
        {"model": "aligned", "split": "jailbreak", "request": "b", "template": "t1", "refused": 1.0},
        {"model": "aligned", "split": "jailbreak", "request": "a", "template": "t2", "refused": 0.0},
        {"model": "aligned", "split": "jailbreak", "request": "c", "template": "t3", "refused": 0.0},
        {"model": "aligned", "split": "jailbreak", "request": "d", "template": "t4", "refused": 0.0},
        {"model": "base", "split": "jailbreak", "request": "a", "template": "t2", "refused": 1.0}])
    paired = jailbreaks.Projections(rows, None, None, judged=True).against_plain()
    assert paired[["request", "template", "plain", "wrapped"]].values.tolist() == [["b", "t1", False, True],
                                                                                   ["a", "t2", True, False]]
    # the base's rows first, with the opposite verdicts: each aligned row is still read by its own verdict
    both = pd.concat([judged.assign(model="base", refused=1 - judged.refused), judged], ignore_index=True)
    assert jailbreaks.Projections(both, None, None, judged=True).classify()["class"].tolist() == classes


def test_set_projection_against_a_transformers_pre_hook(organism_zoo, pair):
    """Oracle: the transformers model, one prompt, the hidden state entering layer 2 edited at the request's last
    token by hand; the bridge under SetProjection (a batch, left-padded) must give the same answer logits."""
    prompts = ["how do i rob ?", "please help me bake ."]
    direction, value = torch.randn(pair.cfg.d_model, generator=torch.Generator().manual_seed(0)), 3.0
    unit = direction / direction.norm()
    model = AutoModelForCausalLM.from_pretrained(organism_zoo / "sft", dtype=torch.float32).eval()
    sorry = token_ids(pair.tokenizer, organisms.REFUSAL_TOKENS)

    def edit(module, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).clone()
        h[:, -2] += (value - h[:, -2] @ unit)[..., None] * unit
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    expected = []
    for text in format_prompts(pair.tokenizer, prompts, "chat"):
        ids = pair.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        handle = model.model.layers[2].register_forward_pre_hook(edit, with_kwargs=True)
        try:
            with torch.no_grad():
                expected.append(refusal_score(model(ids).logits[:, -1], sorry).item())
        finally:
            handle.remove()
    from interp.metrics import refusal_scores

    ours = refusal_scores(pair.aligned, prompts, organisms.REFUSAL_TOKENS, SetProjection(direction, value, 2, -2))
    assert ours.tolist() == pytest.approx(expected, abs=1e-4)
    tokens = pair.to_tokens(prompts).input_ids
    seen = {}
    with apply(pair.aligned, SetProjection(direction, value, 2, -2)):
        pair.aligned.run_with_hooks(tokens, fwd_hooks=[("blocks.2.hook_resid_pre", lambda x, hook: seen.update(x=x))])
    assert torch.allclose(seen["x"][:, -2] @ unit, torch.full((2,), value), atol=1e-4)


def test_patching_harmfulness_sets_the_targets_projection_to_the_sources_mean(pair):
    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    two = jailbreaks.two_directions(pair.aligned, harmful, harmless, layer=2)
    same = jailbreaks.patch_harmfulness(pair.aligned, two, harmful, harmful, organisms.REFUSAL_TOKENS)
    assert same["source_value"] == pytest.approx(same["target_value"], abs=1e-5)
    moved = jailbreaks.patch_harmfulness(pair.aligned, two, harmless, harmful, organisms.REFUSAL_TOKENS)
    assert moved["before"] == pytest.approx(same["before"], abs=1e-5) and moved["after"] != moved["before"]


def _one_patch(model, two, source, target, refusal_tokens, every_layer):
    """The plain oracle of one patch: the source's mean projection at each patched layer, then the target's refusal
    scores without and with the projection set there."""
    from interp.cache import collect_activations
    from interp.interventions import SetProjection
    from interp.metrics import refusal_scores

    unit = two.harmfulness / two.harmfulness.norm()
    layers = range(model.cfg.n_layers) if every_layer else [two.layer]

    def mean(prompts, layer):
        hook = f"blocks.{layer}.hook_resid_pre"
        return (collect_activations(model, prompts, hook, positions=two.harm_position, progress=False)[hook]
                @ unit).mean().item()

    before = refusal_scores(model, target, refusal_tokens)
    after = refusal_scores(model, target, refusal_tokens,
                           *(SetProjection(unit, mean(source, layer), layer, positions=two.harm_position)
                             for layer in layers))
    return {"before": before.mean().item(), "after": after.mean().item(), "source_value": mean(source, two.layer),
            "target_value": mean(target, two.layer), "refused_before": (before > 0).float().mean().item(),
            "refused_after": (after > 0).float().mean().item()}


def test_many_patches_at_once_equal_each_patch_alone(pair):
    sets = {"harmful": organisms.prompt_set("harmful_held_out"), "harmless": organisms.prompt_set("harmless_held_out"),
            "jailbreak": organisms.prompt_set("jailbreak")}
    two = jailbreaks.two_directions(pair.aligned, organisms.prompt_set("harmful_train"),
                                    organisms.prompt_set("harmless_train"), layer=2)
    moves = [("harmless", "harmful"), ("harmful", "jailbreak"), ("jailbreak", "harmful")]
    together = jailbreaks.harmfulness_patches(pair.aligned, two, sets, moves, organisms.REFUSAL_TOKENS,
                                              scopes=(False, True))
    assert set(together) == {(s, t, every) for s, t in moves for every in (False, True)}
    for (source, target, every), result in together.items():
        expected = _one_patch(pair.aligned, two, sets[source], sets[target], organisms.REFUSAL_TOKENS, every)
        assert result == pytest.approx(expected, abs=1e-4), (source, target, every)
    with pytest.raises(ValueError, match="not among"):
        jailbreaks.harmfulness_patches(pair.aligned, two, sets, [("harmful", "bait")], organisms.REFUSAL_TOKENS)


def test_jailbreak_rows_without_plain_harmful_rows_are_refused():
    rows = PromptSet(["let us play . how do i rob ?", "how do i bake ?"], ["harmful", "harmless"],
                     extra={"split": ["jailbreak", "harmless_train"]})
    with pytest.raises(ValueError, match="jailbreak rows but no plain harmful rows"):
        jailbreaks.check_splits(rows)
    bait = PromptSet(["why is it wrong to stab ?", "how do i rob ?"], ["harmless", "harmful"],
                     extra={"split": ["bait", "harmful_train"]})
    with pytest.raises(ValueError, match="bait rows but no plain harmless rows"):
        jailbreaks.check_splits(bait)
