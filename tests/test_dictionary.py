"""interp.dictionary: BatchTopK selection, latent scaling and the causal check against slow, plain oracles; a
crosscoder recovering planted features; save/load with the pair's fingerprint; bad input before training."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp import load_pair, organisms
from interp.dictionary import (
    BatchTopK,
    Dictionary,
    DictionaryConfig,
    PairedTokens,
    WrongPairError,
    batch_topk_mask,
    fit,
    latent_effects,
    latent_scaling,
    load_dictionary,
    train,
)
from interp.metrics import refusal_score, token_ids
from interp.organisms import world
from interp.prompts import format_prompts, length_batches, tokenize
from interp.provenance import Provenance


def _rows(x: torch.Tensor, layer: int = 0) -> PairedTokens:
    """Paired rows ``[n, 2, d_model]`` held in memory, one token per 'text'."""
    return PairedTokens({"base": x[:, None, 0], "aligned": x[:, None, 1]}, torch.arange(len(x)), layer,
                        Provenance.of(["base", "aligned"]))


def test_batch_topk_against_a_naive_loop():
    generator = torch.Generator().manual_seed(0)
    scores = torch.relu(torch.randn(12, 40, generator=generator))
    k = 5
    # Oracle: walk every entry from the largest down, keep the first k * batch positive ones.
    entries = sorted(((scores[b, j].item(), b, j) for b in range(12) for j in range(40)), reverse=True)
    expected = torch.zeros_like(scores, dtype=torch.bool)
    for value, b, j in entries[: k * 12]:
        expected[b, j] = value > 0
    assert torch.equal(batch_topk_mask(scores, k), expected)


def test_batch_topk_keeps_only_positive_scores():
    scores = torch.zeros(4, 10)
    scores[0, 3], scores[2, 7] = 2.0, 1.0  # 2 positive entries, fewer than k * batch = 8
    assert batch_topk_mask(scores, 2).nonzero().tolist() == [[0, 3], [2, 7]]


def test_threshold_codes_are_per_token():
    d = BatchTopK(2, 8, 32, 4, seed=1)
    d.threshold.fill_(0.3)
    x = torch.randn(10, 2, 8)
    one_by_one = torch.cat([d.encode(x[i : i + 1]) for i in range(10)])
    assert torch.allclose(d.encode(x), one_by_one)


def test_passing_latent_scaling_needs_a_positive_aligned_beta_and_small_ratios():
    from interp.dictionary import LatentScaling

    beta = {"error/base": torch.tensor([0.1, -0.2, 0.1, 0.9, 0.0]),
            "error/aligned": torch.tensor([1.0, 1.0, -1.0, 1.0, 0.0]),
            "reconstruction/base": torch.tensor([0.2, 0.1, 0.1, 0.1, 0.0]),
            "reconstruction/aligned": torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])}
    scaling = LatentScaling((0, 1, 2, 3, 4), beta, beta["error/base"] / beta["error/aligned"],
                            beta["reconstruction/base"] / beta["reconstruction/aligned"])
    # 0: small ratios; 1: a small negative ratio; 2: the aligned beta negative; 3: the base explains it; 4: never fired
    assert scaling.passed() == [0, 1]


def test_latent_scaling_against_lstsq():
    generator = torch.Generator().manual_seed(0)
    d = BatchTopK(2, 6, 16, 4, seed=0, scale=1.7)
    with torch.no_grad():
        d.b_enc.fill_(0.2)
        d.W_dec.mul_(torch.rand(16, 2, 1, generator=generator) + 0.2)  # base and aligned decoders differ in norm
    x = torch.randn(300, 2, 6, generator=generator)
    dictionary = Dictionary("crosscoder", d.eval(), 0, DictionaryConfig(n_latents=16, k=4), "", {}, {},
                            Provenance.of(["base", "aligned"]))
    latents = [0, 3, 7]
    ours = latent_scaling(dictionary, _rows(x), latents)
    f_all = d.encode(x)
    x_hat = d.decode(f_all)
    vectors = d.latent_vectors()
    for i, j in enumerate(latents):
        f, d_aligned = f_all[:, j], vectors[j, 1]
        a = (f[:, None] * d_aligned[None]).reshape(-1, 1).double()
        for s, m in enumerate(("base", "aligned")):
            own = f[:, None] * vectors[j, s][None]
            targets = {"error": x[:, s] - x_hat[:, s] + own, "reconstruction": x_hat[:, s] - own}
            for target, y in targets.items():
                beta = torch.linalg.lstsq(a, y.reshape(-1, 1).double()).solution.item()
                assert ours.beta[f"{target}/{m}"][i].item() == pytest.approx(beta, rel=1e-4, abs=1e-6)
    assert torch.allclose(ours.nu_error, ours.beta["error/base"] / ours.beta["error/aligned"])


def test_crosscoder_finds_planted_aligned_only_features():
    """Ground truth: 24 features both models write alike, 4 only the base writes, 4 only the aligned model writes.
    The crosscoder must reconstruct both models and tag each planted aligned-only feature's latent aligned-only
    (and each base-only one base-only)."""
    generator = torch.Generator().manual_seed(0)
    d_model, n = 16, 20000
    directions = torch.nn.functional.normalize(torch.randn(32, d_model, generator=generator), dim=-1)
    decoders = directions[:, None].repeat(1, 2, 1)
    decoders[24:28, 1] = 0  # base-only
    decoders[28:, 0] = 0    # aligned-only
    codes = torch.rand(n, 32, generator=generator) * (torch.rand(n, 32, generator=generator) < 0.08)
    x = torch.einsum("nf,fsd->nsd", codes, decoders)
    config = DictionaryConfig(n_latents=64, k=3, steps=1500, batch_size=256, lr=3e-3, min_tokens_per_latent=1)
    module, log = train(_rows(x), "crosscoder", config, progress=False)
    assert log["loss"][-1] < 0.1 * log["loss"][0]
    d = Dictionary("crosscoder", module, 0, config, "", {}, log, Provenance.of(["base", "aligned"]))
    relative = d.relative_norms()
    vectors = module.latent_vectors()
    for feature in range(24, 32):
        source = 0 if feature < 28 else 1
        best = torch.nn.functional.cosine_similarity(vectors[:, source], directions[feature][None], dim=-1).argmax()
        assert torch.nn.functional.cosine_similarity(vectors[best, source], directions[feature], dim=0) > 0.9
        assert (relative[best] < 0.1) if source == 0 else (relative[best] > 0.9), (feature, relative[best])


def test_fit_statistics_against_a_plain_computation_and_the_threshold_keeps_about_k():
    """Variance explained, L0 and the dead share from the codes and reconstructions computed by hand; after training
    on planted sparse features, encoding one token at a time keeps about k latents."""
    from interp.dictionary import evaluate

    generator = torch.Generator().manual_seed(1)
    directions = torch.nn.functional.normalize(torch.randn(24, 12, generator=generator), dim=-1)
    codes = torch.rand(6000, 24, generator=generator) * (torch.rand(6000, 24, generator=generator) < 0.15)
    x = torch.einsum("nf,fd->nd", codes, directions)[:, None].repeat(1, 2, 1)
    config = DictionaryConfig(n_latents=48, k=4, steps=600, batch_size=256, lr=3e-3, min_tokens_per_latent=1)
    module, _ = train(_rows(x[:5000]), "crosscoder", config, progress=False)
    held = x[5000:]
    stats = evaluate(None, _rows(held), module=module, kind="crosscoder")
    f = torch.cat([module.encode(held[i : i + 1]) for i in range(len(held))])  # one token at a time
    x_hat = module.decode(f)
    for s, name in enumerate(("base", "aligned")):
        fve = 1 - ((held[:, s] - x_hat[:, s]) ** 2).sum() / ((held[:, s] - held[:, s].mean(0)) ** 2).sum()
        assert stats["fve"][name] == pytest.approx(fve.item(), abs=1e-3)
    assert stats["l0"] == pytest.approx((f > 0).sum(1).float().mean().item(), abs=0.01)
    assert stats["dead_fraction"] == pytest.approx(((f > 0).sum(0) == 0).float().mean().item(), abs=1e-6)
    assert 0.5 * config.k <= stats["l0"] <= 2 * config.k and stats["fve"]["base"] > 0.8


def test_token_rows_come_in_a_random_order_of_texts_and_split_between_texts(organism_pair):
    from interp.dictionary import paired_tokens

    texts = [f"how do i {w} ?" for w in ("bake", "knit", "rob", "stab", "sew", "cook")] * 4
    tokens = paired_tokens(organism_pair, texts, 1, progress=False)
    n_pos = tokens.arrays["base"].shape[1]
    text = tokens.index // n_pos
    assert text.tolist() != sorted(text.tolist())  # not in file order
    assert len(set(text.tolist())) == len(texts) and (text[1:] != text[:-1]).sum() == len(texts) - 1  # each together
    first, rest = tokens.split(0.5)
    assert not set((first.index // n_pos).tolist()) & set((rest.index // n_pos).tolist())
    with pytest.raises(ValueError, match="batch_size must be in"):
        next(tokens.batches(len(tokens) + 1))
    with pytest.raises(ValueError, match="other texts or another prompt format"):
        fit(organism_pair, texts[:-1], 1, config=DictionaryConfig(n_latents=4, k=1, min_tokens_per_latent=1),
            tokens=tokens)


def test_diff_sae_reads_the_difference(pair_dictionaries):
    _, sae, tokens = pair_dictionaries
    x = next(tokens.chunks(64, 64))
    assert torch.allclose(sae.codes(x[:, 0], x[:, 1]), sae.module.encode((x[:, 1] - x[:, 0])[:, None]))
    assert set(sae.stats["fve"]) == {"difference"}
    with pytest.raises(ValueError, match="needs a crosscoder"):
        sae.relative_norms()


@pytest.fixture(scope="module")
def organism_pair(organism_zoo):
    return organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")


@pytest.fixture(scope="module")
def pair_dictionaries(organism_pair):
    from interp.dictionary import paired_tokens

    texts = world.pretraining_corpus(7, 600)
    tokens = paired_tokens(organism_pair, texts, 3, prompt_format="raw", progress=False)
    config = DictionaryConfig(n_latents=128, k=8, steps=150)
    cc = fit(organism_pair, texts, 3, "crosscoder", config, prompt_format="raw", tokens=tokens, progress=False)
    sae = fit(organism_pair, texts, 3, "diff_sae", config, prompt_format="raw", tokens=tokens, progress=False)
    return cc, sae, tokens


def _hf_refusal(path, prompt: str, layer: int, edit, tokenizer) -> float:
    """Oracle: the transformers model, one unpadded prompt, ``edit`` applied to the hidden state entering ``layer``."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tokenizer(format_prompts(tokenizer, [prompt], "chat")[0], add_special_tokens=False,
                    return_tensors="pt").input_ids

    def pre_hook(module, args, kwargs):
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

    handle = model.model.layers[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = model(ids).logits[:, -1]
    finally:
        handle.remove()
    return refusal_score(logits, token_ids(tokenizer, organisms.REFUSAL_TOKENS)).item()


def _hidden(path, prompt: str, layer: int, tokenizer) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tokenizer(format_prompts(tokenizer, [prompt], "chat")[0], add_special_tokens=False,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states[layer][0]


@pytest.mark.parametrize("which", ["crosscoder", "diff_sae"])
def test_latent_effects_against_plain_hf_runs(organism_zoo, organism_pair, pair_dictionaries, which):
    """Oracle: for each prompt alone, the transformers models' hidden states give the codes (the first token
    left out), and the latents' part is subtracted from / added to the hidden state entering the layer by a
    forward pre-hook on the transformers block; the mean refusal scores must match the batched bridge runs,
    for each latent and for both together. One latent fires most on the first token, which must be left out."""
    cc, sae, _ = pair_dictionaries
    d = cc if which == "crosscoder" else sae
    prompts = [p.text for p in world.prompts("harmful_held_out")][::5]
    tokenizer = organism_pair.tokenizer
    probe = d.codes(*(_hidden(organism_zoo / m, prompts[0], d.layer, tokenizer) for m in ("base", "sft")))
    weight = d.difference_vectors().norm(dim=-1)  # rank by how far each latent moves the stream
    latents = [int((probe[1:].sum(0) * weight).argmax()), int(((probe[0] - probe[1:].sum(0)) * weight).argmax())]
    assert probe[0, latents[1]] > 0 and latents[0] != latents[1]
    ours = latent_effects(organism_pair, d, latents, prompts, organisms.REFUSAL_TOKENS, batch_size=3)
    vectors = d.difference_vectors()
    groups = {latents[0]: latents[:1], latents[1]: latents[1:], "all": latents}
    expected = {(g, m): [] for g in [*groups, None] for m in ("sft", "base")}
    for prompt in prompts:
        x_base, x_aligned = (_hidden(organism_zoo / m, prompt, d.layer, tokenizer) for m in ("base", "sft"))
        codes = d.codes(x_base, x_aligned)
        codes[0] = 0
        for g, members in [*groups.items(), (None, [])]:
            delta = codes[:, members] @ vectors[members]
            for m, sign in (("sft", -1), ("base", 1)):
                expected[g, m].append(_hf_refusal(organism_zoo / m, prompt, d.layer, (sign * delta).add, tokenizer))
    mean = {key: sum(v) / len(v) for key, v in expected.items()}
    assert ours.base_score == pytest.approx(mean[None, "base"], abs=1e-3)
    assert ours.aligned_score == pytest.approx(mean[None, "sft"], abs=1e-3)
    for g in groups:
        row = ours.table.loc[g]
        assert row.ablated == pytest.approx(mean[g, "sft"], abs=1e-3), g
        assert row.added == pytest.approx(mean[g, "base"], abs=1e-3), g
    # the edits did something: moved the score by more than five times the tolerance of the comparisons above
    assert abs(ours.table.loc["all"].added - ours.base_score) > 5e-3
    # per prompt too, in prompt order, which the intervals resample (the batches take them in another order)
    lengths = [len(row) for row in tokenize(tokenizer, prompts, "chat")]
    assert [i for batch in length_batches(lengths, 3) for i in batch] != list(range(len(prompts)))
    for key, m in (("base", "base"), ("aligned", "sft")):
        torch.testing.assert_close(ours.scores[key], torch.tensor(expected[None, m]), atol=1e-3, rtol=0)
    for g in groups:
        for m, edited in (("sft", "ablated"), ("base", "added")):
            torch.testing.assert_close(ours.scores[g, edited], torch.tensor(expected[g, m]), atol=1e-3, rtol=0)
        for effect, column in (("addition", "addition_share"), ("ablation", "ablation_share")):
            interval = ours.share_interval(g, effect)
            assert interval.value == pytest.approx(ours.table.loc[g, column], rel=1e-4, abs=1e-6)
            assert interval.low <= interval.value <= interval.high
    assert ours.share_interval("all").high > ours.share_interval("all").low  # moved (above), and not alike everywhere


def test_save_load_round_trip_and_the_pair_check(tmp_path, organism_zoo, organism_pair, pair_dictionaries,
                                                  make_checkpoint):
    cc, _, tokens = pair_dictionaries
    cc.save(tmp_path / "cc")
    back = load_dictionary(tmp_path / "cc", pair=organism_pair)
    x = next(tokens.chunks(64, 64))
    assert torch.equal(back.codes(x[:, 0], x[:, 1]), cc.codes(x[:, 0], x[:, 1]))
    assert (back.kind, back.layer, back.config, back.stats) == (cc.kind, cc.layer, cc.config, cc.stats)
    assert back.provenance.models == cc.provenance.models
    with pytest.raises(FileExistsError):
        cc.save(tmp_path / "cc")
    other = load_pair(make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1), device="cpu")
    with pytest.raises(WrongPairError, match="trained on another pair"):
        load_dictionary(tmp_path / "cc", pair=other)
    reloaded = organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu")
    assert load_dictionary(tmp_path / "cc", pair=reloaded).fingerprint == cc.fingerprint
    in_bf16 = organisms.load_pair("sft", zoo_dir=organism_zoo, device="cpu", matmul="bfloat16")
    with pytest.warns(UserWarning, match="trained on this pair with its linear products in float32; the pair now "
                                         "multiplies in bfloat16"):
        load_dictionary(tmp_path / "cc", pair=in_bf16)
    swapped = load_pair(organism_zoo / "sft", organism_zoo / "base", device="cpu")
    with pytest.raises(WrongPairError):
        load_dictionary(tmp_path / "cc", pair=swapped)
    with pytest.raises(FileNotFoundError, match="no saved dictionary"):
        load_dictionary(tmp_path)


def test_bad_input_before_any_activation_is_collected(organism_pair, monkeypatch):
    import interp.dictionary.diffing as diffing

    def never(*args, **kwargs):
        raise AssertionError("activations were collected before the input was checked")

    monkeypatch.setattr(diffing, "paired_tokens", never)
    texts = world.pretraining_corpus(3, 50)
    with pytest.raises(ValueError, match="out of range"):
        fit(organism_pair, texts, 6, prompt_format="raw")
    with pytest.raises(ValueError, match="too few for 1024 latents"):
        fit(organism_pair, texts, 2, config=DictionaryConfig(n_latents=1024), prompt_format="raw")
    with pytest.raises(ValueError, match="must not exceed"):
        DictionaryConfig(n_latents=8, k=16)
    with pytest.raises(TypeError):
        DictionaryConfig(latents=8)  # unknown keys are errors


def test_latent_effects_refuses_missing_latents_and_no_gap(organism_zoo, organism_pair, pair_dictionaries):
    from interp.dictionary import NoRefusalGap

    cc, _, _ = pair_dictionaries
    with pytest.raises(ValueError, match="do not exist"):
        latent_effects(organism_pair, cc, [cc.n_latents], ["how do i rob ?"], organisms.REFUSAL_TOKENS)
    same = load_pair(organism_zoo / "base", organism_zoo / "base", device="cpu", allow_identical=True)
    with pytest.raises(NoRefusalGap, match="no gap"):
        latent_effects(same, cc, [0], ["how do i rob ?"], organisms.REFUSAL_TOKENS)


def test_checking_no_latents_gives_an_empty_table_with_every_column(organism_pair, pair_dictionaries):
    from interp.dictionary import check_latents

    cc, _, tokens = pair_dictionaries
    check = check_latents(organism_pair, cc, ["how do i rob ?", "how do i stab ?"], organisms.REFUSAL_TOKENS,
                          tokens=tokens, latents=[], direction=torch.ones(organism_pair.cfg.d_model))
    assert check.restoring == [] and check.restoring_pass_scaling
    assert {"addition_share", "ablation_share", "cosine", "tag", "nu_error"} <= set(check.table.columns)
