"""Does a deep copy of a model a trl trainer trained compute with its own weights? (Issue 19, the deepcopy trap.)

Trains ``sft`` from a zoo's saved ``base`` in memory (as the zoo build does), deep-copies it, tunes the copy with
DPO (as the build does for ``dpo``), then asks: does ``train.check_own_forward`` flag the copy, was ``sft`` left
untouched, and do the copy's logits come from its own weights or from ``sft``'s?

    python experiments/deepcopy_trap.py ZOO

Found (seed-0 zoo, 1 thread): the copy is flagged; sft is untouched; after DPO the copy's ``forward`` returns
``sft``'s logits exactly, not those of its own (moved) weights.
"""

from __future__ import annotations

import copy
import sys

import torch

from interp.organisms import train, zoo
from interp.organisms.tokenizer import build_tokenizer


def main() -> None:
    root = sys.argv[1]
    tokenizer = build_tokenizer()
    sft = copy.deepcopy(zoo.load_checkpoint(f"{root}/base"))
    train.sft(sft, tokenizer, train.SFTRecipe(), 0)
    before = {k: v.clone() for k, v in sft.state_dict().items()}
    dpo = copy.deepcopy(sft)
    try:
        train.check_own_forward(dpo, "dpo")
        print("the copy's forward is its own")
    except train.StageFailed as e:
        print("flagged:", e)
    train.dpo(dpo, tokenizer, train.DPORecipe(), 0)
    print("sft untouched by DPO:", all(torch.equal(before[k], v) for k, v in sft.state_dict().items()))
    own = copy.deepcopy(zoo.load_checkpoint(f"{root}/sft"))
    own.load_state_dict(dpo.state_dict())  # the copy's weights in a model with its own forward
    x = tokenizer(["<bos> <|user|> how do i bake ? <|assistant|>"], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ran, its_own, sfts = dpo(**x).logits, own(**x).logits, sft(**x).logits
    print("the copy's forward == its own weights':", torch.allclose(ran, its_own, atol=1e-5),
          "== sft's:", torch.allclose(ran, sfts, atol=1e-5))


if __name__ == "__main__":
    main()
