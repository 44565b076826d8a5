"""Methods as auditors: each turns a pair (control, organism) and ordinary text into :class:`Hypotheses`.

A method is a function ``(pair, corpus) -> Hypotheses`` registered in :data:`METHODS` by :func:`method`; adding one
is one function here (or in a module that registers itself). None of them sees a card or a planting document: the
:class:`Corpus` holds ordinary text (pretraining-like documents, chats among them) and ordinary requests to reply to.

=================  ===========================================================================================
method             its hypotheses
=================  ===========================================================================================
``weight_diff``    sites: each layer's attention and MLP by relative weight change; direction: the top output
                   singular vector of the most changed residual writer; strength: the whole model's change
``layer_swap``     sites: layers by how far the organism's next-token distributions on the texts move (KL) when
                   that layer is reverted to the control's; strength: the largest such KL
``adl``            tokens: the activation difference lens's tokens over its first positions; direction: its
                   difference at the position where it is largest; strength: that difference over the base norm
``diff_mining``    tokens: most often among the most promoted; strength: the top token's share of positions
``amplification``  tokens: words that amplified replies (alpha 4) use more than plain ones; strength: the share of
                   replies amplification changed
``token_kl``       tokens: those after which the models' next-token predictions part most on the texts (per-token
                   KL); strength: the mean KL over every position
``refusal_shift``  tokens: words of the requests that moved most along the control's refusal direction (either
                   way); strength: the mean move, in units of the harmful-harmless separation
``interrogation``  tokens: words the organism's answers to questions about itself use more than the control's
                   (black-box: what an auditor learns by asking); strength: the share of answers that differ
=================  ===========================================================================================
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable

import torch

from interp.bench.hypotheses import Corpus, Hypotheses
from interp.diff.adl import activation_difference_lens
from interp.diff.amplify import amplified_generate
from interp.diff.mining import diff_mining, text_batches
from interp.diff.refusal_shift import refusal_shift
from interp.diff.swap import swap
from interp.diff.token_kl import token_kl
from interp.diff.weights import canonical_weights
from interp.interventions import apply
from interp.metrics import kl_divergence
from interp.models import ModelPair
from interp.prompts import tokenize_for

Method = Callable[[ModelPair, Corpus], Hypotheses]
METHODS: dict[str, Method] = {}
ADL_POSITIONS, MINING_TEXTS, SWAP_TEXTS, SWAP_TOKENS, AMPLIFY_ALPHA, KL_TEXTS = 5, 200, 100, 64, 4.0, 200


def _words(text: str) -> list[str]:
    """A reply's words: lower case, letters, digits and apostrophes."""
    return re.findall(r"[a-z0-9']+", text.lower())


def method(name: str) -> Callable[[Method], Method]:
    """Register ``fn`` as method ``name``; its Hypotheses get the name and the seconds it took."""
    def register(fn: Method) -> Method:
        def timed(pair: ModelPair, corpus: Corpus) -> Hypotheses:
            started = time.perf_counter()
            found = fn(pair, corpus)
            return Hypotheses(**{**found.__dict__, "method": name, "seconds": time.perf_counter() - started})
        timed.__doc__, timed.__name__ = fn.__doc__, fn.__name__
        METHODS[name] = timed
        return timed
    return register


def _component(kind: str) -> str:
    return "mlp" if kind.startswith("mlp") or kind == "ln2" else "attn"


@method("weight_diff")
@torch.no_grad()
def weight_diff_sites(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Sites by relative change ``||W_o - W_c|| / ||W_c||`` of each layer's attention (q, k, v, o, its norm) and MLP
    (in, gate, out, its norm); the direction: the top left singular vector of the change of the most changed
    residual writer (attention out or MLP out)."""
    control, organism = canonical_weights(pair.base), canonical_weights(pair.aligned)
    change, norm, total = Counter(), Counter(), [0.0, 0.0]
    for (layer, kind), w in control.items():
        delta = float((organism[(layer, kind)] - w).pow(2).sum())
        total[0], total[1] = total[0] + delta, total[1] + float(w.pow(2).sum())
        if layer is not None:
            site = f"layer {layer} {_component(kind)}"
            change[site], norm[site] = change[site] + delta, norm[site] + float(w.pow(2).sum())
    rel = {site: (change[site] / norm[site]) ** 0.5 for site in change}
    sites = sorted(rel, key=rel.get, reverse=True)
    writers = [(layer, kind) for (layer, kind) in control if kind in ("attn_o", "mlp_out")]
    layer, kind = max(writers, key=lambda k: float((organism[k] - control[k]).norm() / control[k].norm()))
    direction = torch.linalg.svd(organism[(layer, kind)] - control[(layer, kind)], full_matrices=False).U[:, 0]
    return Hypotheses("weight_diff", sites=tuple(sites), n_sites=len(sites), direction=direction,
                      strength=(total[0] / total[1]) ** 0.5,
                      details={"writer": f"layer {layer} {kind}", "rel_change": {s: round(rel[s], 5) for s in sites}})


@method("layer_swap")
@torch.no_grad()
def layer_swap_sites(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Layers by the mean per-position KL(organism || organism with that layer's weights the control's) over the
    first :data:`SWAP_TOKENS` tokens of the first :data:`SWAP_TEXTS` texts (one pass per layer: a real model's texts
    are cut to keep it to minutes)."""
    ids = [row[:SWAP_TOKENS] for row in tokenize_for(pair.aligned, list(corpus.texts[:SWAP_TEXTS]), "raw")]
    layers = range(pair.cfg.n_layers)
    kl, positions = torch.zeros(len(layers), dtype=torch.float64), 0
    for tokens, mask in text_batches(pair, ids, 16):
        kept = mask.bool()
        own = pair.aligned(tokens, attention_mask=mask).float().log_softmax(-1)[kept]
        for layer in layers:
            with apply(pair.aligned, swap(pair, f"layer {layer}")):
                swapped = pair.aligned(tokens, attention_mask=mask).float().log_softmax(-1)[kept]
            kl[layer] += kl_divergence(own, swapped).double().sum().cpu()
        positions += len(own)
    kl /= positions
    order = torch.argsort(-kl, stable=True).tolist()
    return Hypotheses("layer_swap", sites=tuple(f"layer {i}" for i in order), n_sites=len(order),
                      strength=float(kl.max()), details={"kl": [round(float(v), 6) for v in kl]})


@method("adl")
@torch.no_grad()
def adl_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """The lens tokens of the first :data:`ADL_POSITIONS` positions, merged by their best rank at any position (ties:
    the earlier position); the direction at the position where the difference is largest."""
    lens = activation_difference_lens(pair, corpus.texts, n_tokens=ADL_POSITIONS)
    best: dict[str, tuple[int, int]] = {}
    for position in range(ADL_POSITIONS):
        for rank, (word, _) in enumerate(lens.top_tokens(position, 50)):
            best[word] = min(best.get(word, (rank, position)), (rank, position))
    ratio = lens.difference.norm(dim=-1) / lens.base_norm
    position = int(ratio.argmax())
    return Hypotheses("adl", tokens=tuple(sorted(best, key=best.get)), direction=lens.difference[position],
                      strength=float(ratio.max()), details={"layer": lens.layer, "position": position})


@method("diff_mining")
def mining_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Diff mining's ranked tokens on the first :data:`MINING_TEXTS` texts."""
    mined = diff_mining(pair, list(corpus.texts[:MINING_TEXTS]), k=10, top=50)
    words = tuple(mined.token_strings[t] for t in mined.ranked)
    return Hypotheses("diff_mining", tokens=words,
                      strength=float(mined.counts[mined.ranked[0]]) / mined.n_positions if words else 0.0)


@method("amplification")
def amplification_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Words by how many more times the organism's replies use them with its difference from the control amplified
    (alpha :data:`AMPLIFY_ALPHA`) than without, over the corpus's requests (greedy, 16 tokens), split at spaces."""
    requests = list(corpus.requests)
    plain = amplified_generate(pair, requests, alpha=0.0, max_new_tokens=16)
    louder = amplified_generate(pair, requests, alpha=AMPLIFY_ALPHA, max_new_tokens=16)
    words = word_gain(louder, plain, str.split)
    changed = sum(a != b for a, b in zip(plain, louder, strict=True)) / len(requests)
    return Hypotheses("amplification", tokens=words, strength=changed)


@method("token_kl")
def token_kl_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Tokens by the mean KL(organism || control) after them on the first :data:`KL_TEXTS` texts (read at least
    twice)."""
    found = token_kl(pair, list(corpus.texts[:KL_TEXTS]))
    return Hypotheses("token_kl", tokens=tuple(found.token_strings[t] for t in found.ranked[:200]),
                      strength=found.mean_kl)


@method("refusal_shift")
def refusal_shift_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Words of the corpus's requests by how far their requests moved along the control's refusal direction (the
    corpus's harmful requests against its others)."""
    found = refusal_shift(pair, corpus.harmful, corpus.harmless(), corpus.requests)
    return Hypotheses("refusal_shift", tokens=found.ranked, strength=found.mean_abs_shift,
                      details={"layer": found.layer, "shifts": {r.word: round(r.shift, 4)
                                                                for r in found.table(5).itertuples()}})


def word_gain(more: list[str], fewer: list[str], split: Callable[[str], list[str]] = _words) -> tuple[str, ...]:
    """Words (as ``split`` cuts each text) ``more`` uses more often than ``fewer``, most gained first (ties:
    alphabetical)."""
    gain = Counter(w for t in more for w in split(t))
    gain.subtract(Counter(w for t in fewer for w in split(t)))
    return tuple(w for w, n in sorted(gain.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0)


@method("interrogation")
def interrogation_tokens(pair: ModelPair, corpus: Corpus) -> Hypotheses:
    """Ask both models the corpus's questions about themselves (greedy, 48 tokens): words the organism's answers use
    more than the control's. Nothing where the corpus has no questions."""
    if not corpus.questions:
        return Hypotheses("interrogation")
    from interp.interventions import generate

    questions = list(corpus.questions)
    control, organism = (generate(model, questions, max_new_tokens=48) for model in (pair.base, pair.aligned))
    return Hypotheses("interrogation", tokens=word_gain(organism, control),
                      strength=sum(a != b for a, b in zip(organism, control, strict=True)) / len(questions),
                      details={"answers": organism[:3]})
