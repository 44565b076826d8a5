"""Doctests of the library run against a tiny random-weight checkpoint pair, made here offline.

Names every docstring example may use: ``base_dir`` / ``aligned_dir`` (two saved 2-layer Llama
checkpoints with the organisms' tokenizer), ``pair`` (loaded from them), ``model``
(``pair.aligned``), ``requests`` (three requests), ``harmful`` (eight harmful requests),
``r_hat`` (a unit vector) and ``v`` (a vector), both ``[d_model]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def _doctest_pair(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from interp import load_pair
    from interp.organisms.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    dirs = []
    for seed, name in ((0, "base"), (1, "aligned"), (2, "reward")):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                             tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=1)
        path = tmp_path_factory.mktemp(f"doctest-{name}")
        (LlamaForSequenceClassification if name == "reward" else LlamaForCausalLM)(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs.append(path)
    return dirs, load_pair(*dirs[:2], device="cpu")


@pytest.fixture(autouse=True)
def _doctest_names(request):
    if type(request.node).__name__ != "DoctestItem":
        return
    namespace = request.getfixturevalue("doctest_namespace")
    (base_dir, aligned_dir, reward_dir), pair = request.getfixturevalue("_doctest_pair")
    generator = torch.Generator().manual_seed(0)
    r = torch.randn(pair.cfg.d_model, generator=generator)
    from interp.organisms import prompts as world_prompts

    namespace.update(
        base_dir=base_dir, aligned_dir=aligned_dir, reward_dir=reward_dir, pair=pair, model=pair.aligned,
        requests=["how do i bake ?", "how do i knit ?", "why is it wrong to stab ?"],
        harmful=[p.text for p in world_prompts("harmful_train")][:8],
        harmless=[p.text for p in world_prompts("harmless_train")][:8],
        texts=[p.text for s in ("harmful_train", "harmless_train", "bait", "jailbreak") for p in world_prompts(s)],
        r_hat=r / r.norm(), v=torch.randn(pair.cfg.d_model, generator=generator),
    )
