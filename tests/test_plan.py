"""The report's plan: its cost model counts what the sections compute, and its defaults stay in bounds."""

from __future__ import annotations

import pytest

from interp import report
from interp.report import plan

SMOLLM2 = plan.Shape(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, n_kv_heads=3, d_head=64, d_vocab=49152)


def test_a_block_and_an_unembedding_count_their_matrix_products():
    # q and o: 576 x 576; k and v: 576 x 192; gate, up, down: 576 x 1536; two operations per multiply-add
    assert SMOLLM2.block == 2 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536)
    assert SMOLLM2.unembed == 2 * 576 * 49152
    assert len(SMOLLM2.matrices()) == 7 * 30 + 1


@pytest.mark.parametrize("available", [0, 1, 2, 5, 40])
def test_patched_prompts_stay_within_what_is_there_and_the_cap(available):
    n = plan.patch_prompts(SMOLLM2, 37, available, "cpu")
    assert n <= min(available, plan.PATCH_PROMPTS) and n >= min(2, available)


def test_more_prompts_fit_the_patching_budget_on_a_smaller_model():
    tiny = plan.Shape(n_layers=6, d_model=64, d_mlp=256, n_heads=4, n_kv_heads=4, d_head=16, d_vocab=190)
    assert plan.patch_prompts(tiny, 10, 40, "cpu") == plan.PATCH_PROMPTS
    assert plan.patch_prompts(SMOLLM2, 37, 40, "cpu") < plan.PATCH_PROMPTS


def test_the_estimate_grows_with_the_work():
    sections = list(report.SECTIONS)
    small = plan.estimate(SMOLLM2, [20] * 64, [True] * 32 + [False] * 32, sections, 16, "cpu")
    large = plan.estimate(SMOLLM2, [40] * 128, [True] * 64 + [False] * 64, sections, 16, "cpu")
    for key in ("replies", "token_kl", "what_changed", "representations", "probes", "direction", "patching"):
        assert large[key].seconds > small[key].seconds, key
    assert large["behaviour"].seconds == 0  # its scores come with the replies
    assert large["weights"].seconds == small["weights"].seconds  # the weights do not depend on the prompts
    assert "total" in plan.describe(large) and all(key in plan.describe(large) for key in sections)


def test_a_section_that_will_not_run_is_shown_with_why_but_not_counted():
    work = {"a": plan.Work(0, 0, 60.0, "the a"), "b": plan.Work(0, 0, 600.0, "the b")}
    assert plan.describe(work).splitlines()[-1].replace(" ", "") == "total~11.0min"
    text = plan.describe(work, off={"b": "too long"})
    assert "off: too long" in text and "the b" not in text
    assert text.splitlines()[-1].replace(" ", "").startswith("total~60s")
