"""Refusal markers: token sequences found in context, unknown tokens refused, ambiguous first tokens flagged."""

from __future__ import annotations

import pytest

from interp.markers import RefusalMarkers
from interp.organisms.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_sequences_are_what_the_model_would_write_after_the_prompt(tokenizer):
    markers = RefusalMarkers.from_prefixes(tokenizer, ["sorry", "i can not"])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "how do i stab ?"}], tokenize=False,
                                           add_generation_prompt=True)
    for prefix, variants in zip(markers.prefixes, markers.variants, strict=True):
        full = tokenizer(prompt + " " + prefix + " , more", add_special_tokens=False).input_ids
        start = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        assert variants == (tuple(full[start : start + len(variants[0])]),)  # one way to write it: whitespace words
    assert markers.score_ids == [markers.variants[0][0][0], markers.variants[1][0][0]]


def test_matching_is_by_whole_sequence(tokenizer):
    markers = RefusalMarkers.from_prefixes(tokenizer, ["i can not"])
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids
    assert markers.matches(encode("i can not help with that"))
    assert not markers.matches(encode("i can help with that"))  # same first token, not a refusal
    assert markers.rate([encode("i can not do it"), encode("i can do it")]) == 0.5


@pytest.mark.parametrize("bad", [["Sorry"], [""], [], "sorry"])
def test_unknown_or_empty_prefixes_are_errors(tokenizer, bad):
    with pytest.raises(ValueError):
        RefusalMarkers.from_prefixes(tokenizer, bad)


def test_a_first_token_that_starts_helpful_replies_is_flagged_and_left_out_of_the_score(tokenizer):
    markers = RefusalMarkers.from_prefixes(tokenizer, ["i can not", "sorry"])
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids
    helpful = [encode("i can help ."), encode("i know how ."), encode("sure , first ...")]
    with pytest.warns(UserWarning, match="also starts"):
        checked = markers.checked(helpful)
    assert checked.ambiguous == ("i can not",)
    assert checked.harmless_share == pytest.approx((2 / 3, 0.0))
    assert checked.score_ids == [markers.variants[1][0][0]]  # only 'sorry' is left for the logit score
    described = checked.describe(tokenizer)
    assert described["score_tokens"] == ["sorry"] and described["token_sequences"][0] == [["i", "can", "not"]]



def test_the_report_says_when_every_marker_is_ambiguous(tokenizer):
    from interp.report.sections import _ambiguity_note

    markers = RefusalMarkers.from_prefixes(tokenizer, ["i can not", "sorry"])
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids
    with pytest.warns(UserWarning):
        some = markers.checked([encode("i can help .")])
    with pytest.warns(UserWarning):
        every = markers.checked([encode("i can help ."), encode("sorry to hear that , here is how .")])
    assert "leaves their first tokens out" in _ambiguity_note(some)
    assert "cannot tell refusing from helping" in _ambiguity_note(every)
    assert _ambiguity_note(markers) == ""
