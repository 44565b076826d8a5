"""Linear products in bfloat16 (interp.matmul): each product equals plain torch's, a weight written or swapped is
seen at once, and a model loaded so equals Hugging Face's model with the same products."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from interp import load_pair, matmul
from interp.interventions import ReplaceWeights, apply
from interp.weight_edit import orthogonalize

REQUESTS = ["how do i bake ?", "tell me how to poison ."]


def plain(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The oracle: the product written out, no cache."""
    bias = None if layer.bias is None else layer.bias.detach().bfloat16()
    return F.linear(x.bfloat16(), layer.weight.detach().bfloat16(), bias).float()


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return matmul.use(torch.nn.Linear(16, 8), torch.bfloat16)


def test_a_product_is_plain_torch_s_in_bfloat16_and_returns_float32(layer):
    x = torch.randn(5, 16)
    with torch.no_grad():
        got = layer(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, plain(layer, x))
    assert not torch.equal(got, F.linear(x, layer.weight, layer.bias)), "the product really is taken in bfloat16"


def test_a_weight_written_in_place_or_replaced_is_seen_at_once(layer):
    x = torch.randn(3, 16)
    with torch.no_grad():
        layer(x)  # cached
        layer.weight.mul_(2)
        assert torch.equal(layer(x), plain(layer, x))
        layer.bias.add_(1)
        assert torch.equal(layer(x), plain(layer, x))
        original = layer.weight
        for _ in range(3):  # a new tensor each time, which the allocator may place where a freed one was
            layer.weight = torch.nn.Parameter(torch.randn(8, 16))
            assert torch.equal(layer(x), plain(layer, x))
        layer.weight = original
        assert torch.equal(layer(x), plain(layer, x))


def test_a_bfloat16_model_is_for_reading_until_gradients_are_asked_for_again(layer):
    assert not any(p.requires_grad for p in layer.parameters())
    x = torch.randn(3, 16, requires_grad=True)
    layer(x).sum().backward()  # activations still carry gradients (attribution patching)
    assert x.grad is not None and x.grad.abs().sum() > 0
    layer.requires_grad_(True)
    layer(x).sum().backward()
    w = layer.weight.detach().clone().requires_grad_(True)  # the oracle: the product written out
    F.linear(x.detach().bfloat16(), w.bfloat16(), layer.bias.detach().bfloat16()).float().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)


def test_a_move_to_another_device_is_seen(layer):
    x = torch.randn(3, 16)
    with torch.no_grad():
        layer(x)  # cached on the CPU
        layer.to("meta")  # a stale copy would stay on the CPU (the key holds the device: .to() may keep identities)
        assert layer(x.to("meta")).device.type == "meta"


def test_use_and_using_switch_back_and_forth(layer):
    assert matmul.of(layer) == torch.bfloat16
    with matmul.using(layer, torch.float32):
        assert type(layer) is torch.nn.Linear and matmul.of(layer) == torch.float32
    assert matmul.of(layer) == torch.bfloat16
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        matmul.use(layer, torch.float16)


def test_a_dtype_is_chosen_before_loading_and_costed_by_the_plan():
    from interp import flops

    assert matmul.resolve("bfloat16", "cpu", None) == torch.bfloat16
    assert matmul.resolve("auto", "cpu", torch.float16) == torch.float32, "a half-precision model multiplies as it is"
    with pytest.raises(ValueError, match="these load in torch.float16 already"):
        matmul.resolve("bfloat16", "cpu", torch.float16)
    assert flops.throughput("cpu", "bfloat16") == flops.THROUGHPUT["cpu"] * flops.BF16_GAIN["cpu"]
    assert flops.throughput("cpu") == flops.THROUGHPUT["cpu"]


def test_auto_follows_the_device_and_the_environment(monkeypatch):
    monkeypatch.delenv(matmul.ENV, raising=False)
    assert matmul.resolve(None, "cpu") == torch.float32
    assert matmul.resolve("bfloat16", "cpu") == torch.bfloat16
    assert matmul.resolve("auto", "cpu") == (torch.bfloat16 if matmul.native_bf16("cpu") else torch.float32)
    monkeypatch.setenv(matmul.ENV, "float32")
    assert matmul.resolve("auto", "cpu") == torch.float32
    assert matmul.resolve("bfloat16", "cpu") == torch.bfloat16, "a choice by name wins over the environment"
    monkeypatch.setenv(matmul.ENV, "half")
    with pytest.raises(ValueError, match=r"INTERP_MATMUL"):
        matmul.resolve("auto", "cpu")


def test_a_pair_loaded_with_bfloat16_products_equals_huggingface_s_model_with_them(make_checkpoint):
    base, aligned = make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1)
    pair = load_pair(base, aligned, device="cpu", matmul="bfloat16")
    exact = load_pair(base, aligned, device="cpu")
    assert pair.metadata["matmul"] == "bfloat16" and exact.metadata["matmul"] == "float32"
    assert matmul.of(pair.aligned) == torch.bfloat16 and matmul.of(exact.aligned) == torch.float32
    reference = AutoModelForCausalLM.from_pretrained(aligned, attn_implementation="eager").eval()
    for module in reference.modules():  # the oracle: Hugging Face's model with each product written out
        if type(module) is torch.nn.Linear:
            module.forward = lambda x, m=module: plain(m, x)
    enc = pair.to_tokens(REQUESTS)
    positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    mask = enc.attention_mask.bool()
    with torch.no_grad():
        ours = pair.aligned(enc.input_ids, attention_mask=enc.attention_mask)[mask]
        theirs = reference(**enc, position_ids=positions).logits[mask]
        full = exact.aligned(enc.input_ids, attention_mask=enc.attention_mask)[mask]
    torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=2e-2)
    assert (ours - full).abs().max() > 1e-5, "the products really ran in bfloat16"
    torch.testing.assert_close(ours, full, atol=5e-2, rtol=5e-2)


def test_a_weight_swap_and_an_orthogonalized_checkpoint_work_on_a_bfloat16_model(make_checkpoint, tmp_path):
    base, aligned = make_checkpoint("llama", seed=0), make_checkpoint("llama", seed=1)
    pair = load_pair(base, aligned, device="cpu", matmul="bfloat16")
    tokens = pair.to_tokens(REQUESTS).input_ids
    weights = {name: p.detach() for name, p in pair.base.named_parameters(remove_duplicate=False)}
    with torch.no_grad():
        before = pair.aligned(tokens)
        with apply(pair.aligned, ReplaceWeights(weights)):
            swapped = pair.aligned(tokens)
        assert torch.equal(swapped, pair.base(tokens)), "every weight swapped: the base's own logits"
        assert torch.equal(pair.aligned(tokens), before), "and back"
    direction = torch.randn(pair.cfg.d_model)
    out = orthogonalize(pair.aligned, direction, tmp_path / "orthogonalized")  # its float32 check passes
    assert (out / "config.json").exists() and matmul.of(pair.aligned) == torch.bfloat16
