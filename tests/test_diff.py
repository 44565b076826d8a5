"""Diffing a pair: invariants on self-comparison, oracles for CKA, the logit lens and layer swaps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from interp import diff, load_pair
from interp.data import PromptSet
from interp.interventions import apply

ARCHITECTURES = ("llama", "gpt2")
PROMPTS = PromptSet(
    prompts=["how do i poison ?", "tell me how to rob .", "how do i bake ?", "can you teach me to knit ?"],
    labels=["harmful", "harmful", "harmless", "harmless"],
)
HF_LAYER_PREFIX = {"llama": "model.layers.{}.", "gpt2": "transformer.h.{}."}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def pair(arch, make_checkpoint):
    return load_pair(make_checkpoint(arch, seed=0), make_checkpoint(arch, seed=1), device="cpu")


@pytest.fixture(scope="module")
def same(arch, make_checkpoint):
    path = make_checkpoint(arch, seed=0)
    return load_pair(path, path, device="cpu", allow_identical=True)


def test_a_checkpoint_compared_with_itself_has_not_changed(same):
    table = diff.weight_diff(same).table()
    assert len(table) > 10 and (table["rel_change"] == 0).all()
    np.testing.assert_allclose(table["cosine"], 1.0, atol=1e-6)
    sim = diff.representation_similarity(same, PROMPTS)
    for label in ("all", "harmful", "harmless"):
        torch.testing.assert_close(sim.cka[label], torch.ones_like(sim.cka[label]), atol=1e-6, rtol=0)
        torch.testing.assert_close(sim.cosine[label], torch.ones_like(sim.cosine[label]), atol=1e-5, rtol=0)
        torch.testing.assert_close(sim.norm_ratio[label], torch.ones_like(sim.norm_ratio[label]), atol=1e-5, rtol=0)
    lens = diff.logit_lens(same, PROMPTS)
    assert lens.cross_model_kl.abs().max() < 1e-5


def test_different_checkpoints_differ(pair):
    table = diff.weight_diff(pair).table()
    matrices = table[table["stable_rank"].notna()]  # norm weights start at 1 in both random models
    assert len(matrices) > 8 and (matrices["rel_change"] > 0).all()
    kinds = set(table["kind"])
    assert {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_in", "mlp_out", "embed", "unembed", "ln1"} <= kinds
    sim = diff.representation_similarity(pair, PROMPTS)
    assert (sim.cka["all"] < 0.999).all()


def _cka_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """CKA written as in Kornblith et al. 2019, eq. (1)-(3): HSIC of centred Gram matrices."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(k * l_) / (np.linalg.norm(k) * np.linalg.norm(l_)))


def test_cka_matches_the_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 7)), rng.normal(size=(40, 5))
    y[:, :3] += x[:, :3]
    assert diff.linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(_cka_numpy(x, y), rel=1e-9)
    with pytest.raises(ValueError, match="same n"):
        diff.linear_cka(torch.ones(3, 2), torch.ones(4, 2))


def test_low_rank_change_is_measured_as_such():
    torch.manual_seed(0)
    w = torch.randn(20, 12)
    u, _, _ = torch.linalg.svd(w)
    d = 0.3 * torch.outer(u[:, 0], torch.randn(12))  # rank 1, in w's top output direction
    row = diff.matrix_diff(w, w + d, layer=0, kind="mlp_in")
    assert row.stable_rank == pytest.approx(1.0, abs=1e-4) and row.effective_rank == pytest.approx(1.0, abs=1e-3)
    assert row.top_k_energy[1] == pytest.approx(1.0, abs=1e-5)
    assert row.overlap_top == pytest.approx(1.0, abs=1e-5) and row.overlap_null == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="layer 0 mlp_in has shape \\[20, 12\\] in base but \\[20, 13\\]"):
        diff.matrix_diff(w, torch.randn(20, 13), layer=0, kind="mlp_in")


@pytest.mark.parametrize("chunk", [1, 16])
def test_logit_lens_at_the_last_layer_is_the_model_output(pair, chunk):
    lens = diff.logit_lens(pair, PROMPTS, chunk=chunk)
    per_model = {}
    for name, model in pair:
        caches = [model.run_with_cache(pair.to_tokens([p]).input_ids)[1] for p in PROMPTS.prompts]
        resid = torch.stack([
            torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(model.cfg.n_layers)])
            for cache in caches
        ])
        lp = diff.representations.lens_logprobs(model, resid)
        with torch.no_grad():
            final = torch.stack([model(pair.to_tokens([p]).input_ids)[0, -1] for p in PROMPTS.prompts]).log_softmax(-1)
        torch.testing.assert_close(lp[:, -1], final, atol=1e-4, rtol=0)
        # The batched, left-padded lens equals the one computed prompt by prompt.
        oracle_kl = (lp[:, -1:].exp() * (lp[:, -1:] - lp)).sum(-1)
        torch.testing.assert_close(lens.kl_to_final[name], oracle_kl, atol=1e-4, rtol=1e-4)
        assert torch.equal(lens.top1_agreement[name], (lp.argmax(-1) == lp[:, -1:].argmax(-1)).float())
        per_model[name] = lp
    cross = (per_model["aligned"].exp() * (per_model["aligned"] - per_model["base"])).sum(-1)
    torch.testing.assert_close(lens.cross_model_kl, cross, atol=1e-4, rtol=1e-4)


def test_streams_collected_once_give_the_same_lens_and_separation(pair):
    from interp.cache import family_resid_post

    streams = family_resid_post({"aligned": pair}, PROMPTS)["aligned"]
    lens, given = diff.logit_lens(pair, PROMPTS), diff.logit_lens(pair, PROMPTS, streams=streams)
    torch.testing.assert_close(given.cross_model_kl, lens.cross_model_kl)
    torch.testing.assert_close(given.kl_to_final["base"], lens.kl_to_final["base"])
    sep, given = diff.cluster_separation(pair, PROMPTS), diff.cluster_separation(pair, PROMPTS, streams=streams)
    torch.testing.assert_close(given.tau["aligned"], sep.tau["aligned"])
    with pytest.raises(ValueError, match="streams must be"):
        diff.logit_lens(pair, PROMPTS.select(range(3)), streams=streams)


def test_a_family_s_similarities_are_each_pair_s(arch, make_checkpoint):
    """The base's streams collected once serve every stage: each equals its pair measured alone, loaded apart."""
    from interp.models import load_family

    base = make_checkpoint(arch, seed=0)
    stages = {"sft": make_checkpoint(arch, seed=1), "dpo": make_checkpoint(arch, seed=2)}
    together = diff.family_similarity(load_family(base, stages, device="cpu"), PROMPTS)
    for stage, path in stages.items():
        alone = diff.representation_similarity(load_pair(base, path, device="cpu"), PROMPTS)
        for label in alone.labels:
            torch.testing.assert_close(together[stage].cka[label], alone.cka[label])
            torch.testing.assert_close(together[stage].cosine[label], alone.cosine[label])
            torch.testing.assert_close(together[stage].norm_ratio[label], alone.norm_ratio[label])


def test_representation_similarity_is_the_prompt_by_prompt_comparison(pair):
    """Cosine, norm ratio and CKA at every real token equal those computed from one unpadded run per prompt (HF
    hidden states: ``hidden_states[l + 1]`` is ``blocks.{l}.hook_resid_post`` before the last block)."""
    sim = diff.representation_similarity(pair, PROMPTS)
    states = {name: [] for name, _ in pair}
    for name, model in pair:
        for prompt in PROMPTS.prompts:
            with torch.no_grad():
                out = model.original_model(pair.to_tokens([prompt]).input_ids, output_hidden_states=True)
            states[name].append(out.hidden_states)
    n_layers = pair.cfg.n_layers
    for layer in range(n_layers - 1):  # the last hidden state has the final norm applied
        b = [h[layer + 1][0] for h in states["base"]]  # [pos, d_model] per prompt
        a = [h[layer + 1][0] for h in states["aligned"]]
        cos = torch.stack([torch.nn.functional.cosine_similarity(x, y, dim=-1).mean()
                           for x, y in zip(a, b, strict=True)])
        torch.testing.assert_close(sim.cosine["all"][:, layer], cos, atol=1e-4, rtol=0)
        ratio = torch.cat([x.norm(dim=-1) / y.norm(dim=-1) for x, y in zip(a, b, strict=True)]).mean()
        torch.testing.assert_close(sim.norm_ratio["all"][layer], ratio, atol=1e-4, rtol=1e-4)
        cka = _cka_numpy(torch.cat(b).double().numpy(), torch.cat(a).double().numpy())
        assert sim.cka["all"][layer].item() == pytest.approx(cka, abs=1e-4)


def test_logit_lens_in_bfloat16(make_checkpoint, arch):
    path = make_checkpoint(arch, seed=0)
    pair = load_pair(path, path, device="cpu", dtype=torch.bfloat16, allow_identical=True)
    lens = diff.logit_lens(pair, PROMPTS)
    assert lens.cross_model_kl.abs().max() < 1e-3


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens.input_ids, attention_mask=tokens.attention_mask)


def test_swap_alpha_zero_is_aligned_and_alpha_one_is_base_per_layer(pair, arch):
    tokens = pair.to_tokens(list(PROMPTS.prompts))
    aligned_logits = _logits(pair.aligned, tokens)
    before = {k: v.clone() for k, v in pair.aligned.state_dict().items()}
    for layer in range(pair.cfg.n_layers):
        with apply(pair.aligned, diff.swap(pair, f"layer {layer}", alpha=0.0)):
            torch.testing.assert_close(_logits(pair.aligned, tokens), aligned_logits, atol=1e-5, rtol=0)
        # Oracle: a plain transformers copy of the aligned model with this layer's base weights.
        oracle = copy.deepcopy(pair.aligned.original_model)
        prefix = HF_LAYER_PREFIX[arch].format(layer)
        base_state = pair.base.original_model.state_dict()
        oracle.load_state_dict({k: base_state[k] if k.startswith(prefix) else v
                                for k, v in oracle.state_dict().items()})
        with torch.no_grad():
            expected = oracle(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                              position_ids=(tokens.attention_mask.cumsum(-1) - 1).clamp(min=0)).logits
        with apply(pair.aligned, diff.swap(pair, f"layer {layer}", alpha=1.0)):
            mask = tokens.attention_mask.bool()
            torch.testing.assert_close(_logits(pair.aligned, tokens)[mask], expected[mask], atol=1e-4, rtol=0)
    after = pair.aligned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the pair was modified"


def test_swapping_everything_gives_the_base_model(pair):
    tokens = pair.to_tokens(list(PROMPTS.prompts))
    everything = {}
    for group in [*diff.layer_groups(pair.cfg.n_layers), "embeddings"]:
        everything.update(diff.interpolated_weights(pair, group, 1.0))
    from interp.interventions import ReplaceWeights

    with apply(pair.aligned, ReplaceWeights(everything)):
        torch.testing.assert_close(_logits(pair.aligned, tokens), _logits(pair.base, tokens), atol=1e-4, rtol=0)
    half = diff.interpolated_weights(pair, "mlp", 0.5)
    name = next(iter(half))
    aligned_w = dict(pair.aligned.named_parameters(remove_duplicate=False))[name]
    base_w = dict(pair.base.named_parameters(remove_duplicate=False))[name]
    torch.testing.assert_close(half[name], (aligned_w + base_w).detach() / 2)


def test_swap_sweep_shapes_and_references(pair):
    sweep = diff.swap_sweep(pair, PROMPTS.by_label("harmful"), PROMPTS.by_label("harmless"),
                            groups=["layer 0", "layer 1 mlp", "attn"], alphas=(0.0, 1.0), refusal_tokens=["sorry"])
    assert sweep.harmful.shape == (3, 2) and len(sweep.table()) == 6
    # alpha = 0 is the unchanged aligned model: the sweep reads its reference, and swapping nothing changes nothing
    assert sweep.harmful[:, 0].allclose(torch.tensor(sweep.reference["aligned"]["harmful"]))
    from interp.metrics import refusal_scores

    nothing = refusal_scores(pair.aligned, PROMPTS.by_label("harmful"), ["sorry"], diff.swap(pair, "attn", 0.0))
    assert nothing.mean().item() == pytest.approx(sweep.reference["aligned"]["harmful"], abs=1e-5)
    # a later sweep on the same prompts, given that reference, measures its swaps alone, to the same values
    again = diff.swap_sweep(pair, PROMPTS.by_label("harmful"), PROMPTS.by_label("harmless"), groups=["attn"],
                            refusal_tokens=["sorry"], reference=sweep.reference)
    assert again.reference == sweep.reference
    assert again.harmful[0, 0].item() == pytest.approx(sweep.harmful[2, 1].item())


def test_a_judged_sweep_reads_the_replies_of_the_swapped_model(pair, arch, make_checkpoint, tmp_path):
    """Judged on replies, a run of layers taken from the base: the judge reads exactly the replies Hugging Face's
    generate gives on a plain copy of the aligned model holding those layers' base weights (the outside oracle)."""
    from tests.oracles import hf_generate

    harmful = list(PROMPTS.by_label("harmful").prompts)
    seen: list[str] = []

    def judge(reply: str) -> bool:  # records what it is shown
        seen.append(reply)
        return len(reply) % 2 == 0

    sweep = diff.swap_sweep(pair, harmful, None, groups=["layers 0-1"], refusal_tokens=["sorry"], judge=judge,
                            max_new_tokens=6)
    from transformers import AutoModelForCausalLM

    aligned_path, base_path = make_checkpoint(arch, seed=1), make_checkpoint(arch, seed=0)  # as the pair loads them
    oracle = AutoModelForCausalLM.from_pretrained(aligned_path)
    base_state = AutoModelForCausalLM.from_pretrained(base_path).state_dict()
    prefixes = tuple(HF_LAYER_PREFIX[arch].format(layer) for layer in (0, 1))
    oracle.load_state_dict({k: base_state[k] if k.startswith(prefixes) else v for k, v in oracle.state_dict().items()})
    oracle.save_pretrained(tmp_path)
    pair.tokenizer.save_pretrained(tmp_path)
    expected = [pair.tokenizer.decode(ids, skip_special_tokens=True).strip()
                for ids in hf_generate(tmp_path, harmful, max_new_tokens=6, do_sample=False)]
    assert seen[-len(harmful):] == expected  # after the two unswapped models' replies
    # the scores, read from the same passes as the replies, are the first answer token's (a pass of their own)
    from interp.metrics import refusal_scores

    plain = refusal_scores(pair.aligned, harmful, ["sorry"], diff.swap(pair, "layers 0-1"))
    assert sweep.harmful[0, 0].item() == pytest.approx(plain.mean().item(), abs=1e-4)
    assert sweep.harmful_rate[0, 0].item() == sum(len(r) % 2 == 0 for r in expected) / len(expected)
    assert sweep.harmless_rate.isnan().all() and len(seen) == 3 * len(harmful)  # the group, then aligned and base
    assert diff.layer_groups(5, per=2) == ["layers 0-1", "layers 2-3", "layers 4-4"]
    with pytest.raises(ValueError, match="layers A-B"):
        diff.swap(pair, "layers 1-0")


def test_a_judged_sweep_of_a_pair_with_no_refusal_tokens_still_reads_replies(same):
    """An aligned model that prefers no first token over its base (nothing to derive refusal tokens from): judged on
    replies the sweep still gives its rates, its scores NaN; unjudged it is the derivation's one-line error."""
    from interp.metrics import NoRefusalTokens

    harmful = list(PROMPTS.by_label("harmful").prompts)
    sweep = diff.swap_sweep(same, harmful, None, groups=["layer 0"], judge=lambda r: True, max_new_tokens=2)
    assert sweep.harmful_rate[0, 0].item() == 1.0 and sweep.harmful.isnan().all() and sweep.refusal_tokens == ()
    with pytest.raises(NoRefusalTokens, match="give the refusal tokens explicitly"):
        diff.swap_sweep(same, harmful, None, groups=["layer 0"])


def test_bad_input(pair):
    with pytest.raises(ValueError, match="chunk must be a positive"):
        diff.logit_lens(pair, PROMPTS, chunk=0)
    with pytest.raises(ValueError, match="out of range"):
        diff.swap(pair, f"layer {pair.cfg.n_layers}")
    with pytest.raises(ValueError, match="unknown group"):
        diff.swap(pair, "everything")
    with pytest.raises(ValueError, match="alpha must be in"):
        diff.swap(pair, "layer 0", alpha=1.5)
    with pytest.raises(ValueError, match="has no \\['harmless'\\] prompts"):
        diff.cluster_separation(pair, PROMPTS.by_label("harmful"))
    with pytest.raises(ValueError, match="subspace"):
        diff.weight_diff(pair, subspace=0.9)


def test_tied_embeddings_cannot_be_swapped_one_end_at_a_time(make_checkpoint, arch):
    pair = load_pair(make_checkpoint(arch, seed=0), make_checkpoint(arch, seed=1), device="cpu")
    tied = pair.aligned.original_model.config.tie_word_embeddings
    assert diff.end_groups(pair.aligned) == (["embeddings"] if tied else ["embed", "unembed"])
    if tied:  # GPT-2's default
        with pytest.raises(ValueError, match="ties its embedding"):
            diff.swap(pair, "embed")
    else:
        diff.swap(pair, "embed")
    diff.swap(pair, "embeddings")


def test_cluster_separation_on_organisms(organism_zoo):
    """The base already separates harmful from harmless; alignment sharpens it (see notebook 03)."""
    from interp import organisms

    pair = organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")
    prompts = organisms.prompt_set(["harmful_train", "harmless_train"])
    sep = diff.cluster_separation(pair, prompts)
    assert sep.accuracy["base"].max() > 0.9
    assert (sep.accuracy["aligned"][1:] >= sep.accuracy["base"][1:]).all()
