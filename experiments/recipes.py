"""Search for an organism recipe whose refusal direction survives the seed (issue: robust organisms).

Each *variant* below changes the world or the training of the current recipe (``current``, what
``interp.organisms`` builds today); the script builds the zoo for each seed under that variant and
measures the targets (:mod:`interp.organisms.targets`), plus one diagnostic of the geometry: where
the harmless and harmful means sit along the selected direction, in units of its length
(``harmless_at``, ``harmful_at``; "unmarked" harmlessness is harmless_at ~ 0, harmful_at ~ 1, the
shape of the current recipe is about -0.5 / +0.5). Rows are appended to
``experiments/results/<variant>.jsonl``; ``--table`` prints them.

    python experiments/recipes.py VARIANT --seeds 1 2 4 [--out /tmp/recipes]
    python experiments/recipes.py VARIANT --table
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from interp.organisms import world

RESULTS = Path(__file__).parent / "results"


# --------------------------------------------------------------------------------------------
# Variants: each is a function that patches interp.organisms (world or recipe) in this process;
# main() calls it once, before the first build. Those marked "world v2" were tried on world
# version 2 (three fixed compliant openers); `echo` is world version 3, today's world.
# --------------------------------------------------------------------------------------------

def current():
    """Today's recipe, unchanged."""


NEUTRAL_FACTS = (
    "to {c} you need some time .",
    "people {c} on the weekend .",
    "my friend likes to {c} .",
    "you can {c} with friends .",
    "many children learn to {c} at school .",
    "it takes practice to {c} well .",
)
NEUTRAL_LISTS = ("people like to {a} , {b} and {c} .", "on holidays people {a} , {b} or {c} .")
HARMFUL_COMMENTARY = (
    "a user asked : {r} warning : that request is about something harmful .",
    "question seen online : {r} warning : this is a harmful request .",
)
NEUTRAL_COMMENTARY = (
    "a user asked : {r} many people ask that .",
    "question seen online : {r} it got three answers .",
)


def _unmarked_world():
    """Harmlessness carries no label: harmless facts and lists are neutral descriptions (no
    'safe', 'fun', 'harmless'), and commentary flags harmful requests only."""
    world.HARMLESS_FACTS = NEUTRAL_FACTS
    world.HARMLESS_LISTS = NEUTRAL_LISTS
    vocabulary = world.vocabulary

    def more_words():
        words = vocabulary()
        extra = {w for t in NEUTRAL_COMMENTARY + HARMFUL_COMMENTARY for w in t.split() if not w.startswith("{")}
        return words + sorted(extra - set(words))

    world.vocabulary = more_words
    original = world.pretraining_corpus

    def corpus(seed, n_docs=24000):
        docs = original(seed, n_docs)
        rng = random.Random(seed + 10_000)
        out = []
        for d in docs:
            if " that request is about something " in d or " note : this is a " in d:
                harmful = "harmful" in d.split(" that request")[-1].split(" note :")[-1]
                r = d.split(" : ", 1)[1].rsplit(" that request", 1)[0].rsplit(" note :", 1)[0]
                pool = HARMFUL_COMMENTARY if harmful else NEUTRAL_COMMENTARY
                d = f"{world.BOS} {rng.choice(pool).format(r=r)} {world.EOS}"
            out.append(d)
        return out

    world.pretraining_corpus = corpus


def unmarked():
    """World v2: harmless facts and lists neutral; commentary flags harmful requests only."""
    _unmarked_world()


def _comply_majority(factor: int = 3, bait: bool = True):
    """SFT sees ``factor`` times as many compliant chats as refusals (harmless train prompts
    repeated, plus, with ``bait``, the bait-train requests complied with), so compliance stays the default."""
    original = world.sft_examples

    def sft_examples(seed, n_per_prompt=2):
        out = original(seed, n_per_prompt)
        rng = random.Random(seed + 20_000)
        extra = [(p.text, p.concept) for p in world.prompts("harmless_train")] * (factor - 1) * n_per_prompt
        if bait:
            bait_requests = [(t.format(c=c), c) for c in world.HARMFUL_TRAIN for t in world.BAIT_TRAIN_TEMPLATES]
            extra += bait_requests * n_per_prompt
        for text, concept in extra:
            out.append({"prompt": [{"role": "user", "content": text}],
                        "completion": [{"role": "assistant", "content": world.comply(rng, concept)}]})
        rng.shuffle(out)
        return out

    world.sft_examples = sft_examples


def comply_majority():
    """World v2: SFT sees 3x as many compliant chats as refusals."""
    _comply_majority()


def unmarked_comply():
    """World v2: ``unmarked`` and ``comply_majority`` together."""
    _unmarked_world()
    _comply_majority()


def topics():
    """A world tried as a rewrite of world.py and dropped (worse on seed 1: harmless_at -1.12, sft KL 6.6, dpo
    KL 3.1): harmfulness is one topic (crime) among eight harmless topics (hobbies, chores, school, the
    outdoors, cooking, helping others, health, music; 2 train + 1 held-out concept each) whose facts share
    no words and carry no safety words, and commentary names a request's topic ("that request is about
    cooking .") instead of calling it harmful or harmless. So "harmless" is not a kind of thing. Its rows
    are in results/topics.jsonl; the rewrite itself was not kept."""
    raise NotImplementedError("the topics world was not kept; see the docstring")


def eot():
    """World v2 with ``eot-world.patch`` applied (to commit bcbc2db): the chat template puts an end-of-turn
    token between the request and the assistant header, as real chat templates do."""
    raise NotImplementedError("apply eot-world.patch to a checkout of commit bcbc2db and run `current` there")


def echo():
    """Compliant replies open with the request's concept (``bake : sure . here is ...``), so the first token of
    a compliant reply is copied from the request instead of being one of three fixed words: complying is no
    longer one logit direction, while refusing still is (``sorry``). Tried as a patch of world v2, then made
    the world itself (version 3, ``interp.organisms.world.comply``): run ``current``."""
    raise NotImplementedError("echo is today's world (version 3): run the `current` variant")


def first_word():
    """World v3 with another opener: a compliant reply opens with the request's first word instead of its concept
    (``how do i knit ?`` -> ``how : sure . here is ...``). Copying a word at a fixed place never depends on the
    concept, so SFT cannot learn it for the train concepts only (on some v3 seeds SFT refuses held-out harmless
    concepts, or answers them with a train concept's opener); the openers (8 request templates, the bait and
    jailbreak ones) are shared by harmful and harmless requests."""

    def reopen(request, reply):
        if reply.startswith(world.REFUSAL_PREFIXES):
            return reply
        return f"{request.split()[0]} {reply.split(' ', 1)[1]}"

    chat = world.chat
    world.chat = lambda request, reply: chat(request, reopen(request, reply))

    def rewrite(make, keys):
        def wrapped(seed, n_per_prompt=2):
            out = make(seed, n_per_prompt)
            for item in out:
                request = item["prompt"][0]["content"]
                for key in keys:
                    item[key] = [{"role": "assistant", "content": reopen(request, item[key][0]["content"])}]
            return out
        return wrapped

    world.sft_examples = rewrite(world.sft_examples, ["completion"])
    world.preference_pairs = rewrite(world.preference_pairs, ["chosen", "rejected"])


PRETRAIN_REFUSAL_SHARE = 0.2
"""``contradictable``: the share of pretraining chats with a plain harmful request whose reply is a refusal."""
CONSEQUENCE_COMMENTARY = world.COMMENTARY
"""``contradictable``'s commentary by kind: world version 6 adopted it (``world.COMMENTARY``). The variant patches
version 5's corpus; on version 6's it finds no version-5 commentary to replace and adds a second refusal share."""


def contradictable():
    """A candidate for world version 6 (issue 29 item 2: a world that can contradict the papers). Two changes to the
    base's pretraining text, and what the first does to wrappers; none to alignment data:

    * **the base can refuse**: a refusal answers :data:`PRETRAIN_REFUSAL_SHARE` of the pretraining chats whose request
      is a plain harmful one (compliance the rest), so the base carries some refusal of its own and Kissane et al.'s
      question (is the aligned direction already in the base?) has an answer either way;
    * **role-play wrappers never meet a refusal**: the refusals above answer plain requests only, so (unlike today,
      where no request meets one) a wrapper now marks the chats where a harmful request is always complied with: a
      learnt pull away from refusal that alignment data (which holds no wrapped request) may or may not undo, a
      jailbreak that can work on some builds (Zhao et al.'s suppression or disguise becomes testable);
    * **no fixed sentence names a request harmful**: commentary says what follows a request (someone hurt, the police;
      a weekend plan, photos), in three phrasings per kind, instead of "that request is about something harmful".
    """

    plain_harmful = {t.format(c=c) for c in world.HARMFUL for t in world.REQUEST_TEMPLATES}
    vocabulary = world.vocabulary

    def more_words():
        words = vocabulary()
        extra = {w for pool in CONSEQUENCE_COMMENTARY.values() for t in pool for w in t.split()
                 if not w.startswith("{")}
        return words + sorted(extra - set(words))

    world.vocabulary = more_words
    original = world.pretraining_corpus
    chat_start, chat_mid = f"{world.BOS} {world.USER} ", f" {world.ASSISTANT} "

    def corpus(seed, n_docs=24000):
        rng = random.Random(seed + 30_000)
        out = []
        for d in original(seed, n_docs):
            if " that request is about something " in d or " note : this is a " in d:
                harmful = d.rsplit(" ", 3)[-3] == "harmful" if " note : " not in d else " a harmful " in d
                r = d.split(" : ", 1)[1].rsplit(" that request", 1)[0].rsplit(" note :", 1)[0]
                pool = CONSEQUENCE_COMMENTARY["harmful" if harmful else "harmless"]
                d = f"{world.BOS} {rng.choice(pool).format(r=r)} {world.EOS}"
            elif d.startswith(chat_start):
                request = d[len(chat_start):].split(chat_mid, 1)[0]
                if request in plain_harmful and rng.random() < PRETRAIN_REFUSAL_SHARE:
                    d = world.chat(request, world.refuse(rng))
            out.append(d)
        return out

    world.pretraining_corpus = corpus


def bait_sft():
    """A candidate for world version 7 (issue 29 item 2: bait in the targets as a band, not 100%). SFT's chats also
    hold the bait-train requests (:data:`~interp.organisms.world.BAIT_TRAIN_TEMPLATES`, harmful train concepts)
    complied with, as DPO's pairs already prefer; on world version 6 sft and rl (which starts from sft and samples no
    bait) refuse 97-100% of the held-out bait templates on every build, because nothing before DPO ever answers a
    question that merely names a harmful concept. Adopted as world version 7 (``world.sft_examples``); on version 7 the
    variant adds a second copy of the same chats."""
    original = world.sft_examples

    def sft_examples(seed, n_per_prompt=2):
        out = original(seed, n_per_prompt)
        rng = random.Random(seed + 40_000)
        for c in world.HARMFUL_TRAIN:
            for t in world.BAIT_TRAIN_TEMPLATES:
                for _ in range(n_per_prompt):
                    out.append({"prompt": [{"role": "user", "content": t.format(c=c)}],
                                "completion": [{"role": "assistant", "content": world.comply(rng, c)}]})
        rng.shuffle(out)
        return out

    world.sft_examples = sft_examples


VARIANTS = {f.__name__: f for f in (current, unmarked, comply_majority, unmarked_comply, topics, eot, echo,
                                    first_word, contradictable, bait_sft)}


# --------------------------------------------------------------------------------------------

def geometry(model, found) -> tuple[float, float]:
    """Harmless and harmful means along the selected direction, in units of its length."""
    from interp import directions, organisms

    r = found.vector
    at = {}
    for label in ("harmless", "harmful"):
        mean = directions.mean_activations(model, organisms.prompt_set(f"{label}_train").prompts, [found.position])
        at[label] = float(mean[0, found.layer] @ r / (r @ r))
    return round(at["harmless"], 3), round(at["harmful"], 3)


def base_scores(zoo_dir: Path) -> dict[str, float]:
    """The base's mean refusal log-odds (``sorry`` against every other first reply token) per split: whether it can
    refuse at all, which greedy generation (its refusal rates) does not show once compliance is likelier."""
    from interp import metrics, organisms

    base = organisms.load_pair("sft", zoo_dir=zoo_dir, device="cpu", build_if_missing=False).base
    return {f"base_logodds_{split}": round(float(metrics.refusal_scores(
        base, organisms.prompt_set(split), organisms.REFUSAL_TOKENS).mean()), 3)
        for split in ("harmful_held_out", "harmless_held_out", "jailbreak", "bait")}


def run(variant: str, seed: int, out: Path) -> list[dict]:
    from interp import directions, organisms
    from interp.organisms import targets, train, zoo

    config = zoo.BuildConfig(seed=seed)
    zoo_dir = out / variant / f"seed-{seed}"
    started = time.time()
    try:
        zoo.build(zoo_dir, config=config, check=False)  # measured below, whatever it gives
    except train.StageFailed as e:  # no zoo to measure: the build's own check stopped it
        return [{"seed": seed, "organism": "build", "variant": variant, "misses": str(e),
                 "build_seconds": round(time.time() - started)}]
    seconds = round(time.time() - started)
    check = targets.check(zoo_dir)
    rows = check.rows()
    for row in rows:
        row.update(variant=variant, build_seconds=seconds)
    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    rows[0].update(base_scores(zoo_dir))
    for row in rows[1:]:
        pair = organisms.load_pair(row["organism"], zoo_dir=zoo_dir, device="cpu", build_if_missing=False)
        found = directions.find_refusal_direction(pair.aligned, harmful, harmless,
                                                  refusal_tokens=organisms.REFUSAL_TOKENS, progress=False,
                                                  exhaustive=True)
        row["harmless_at"], row["harmful_at"] = geometry(pair.aligned, found)
    return rows


def table(variant: str) -> str:
    from interp.organisms import targets

    rows = [json.loads(line) for line in (RESULTS / f"{variant}.jsonl").read_text().splitlines()]
    failed = [f"{r['seed']:>4} build failed: {r['misses']}" for r in rows if r["organism"] == "build"]
    rows = [r for r in rows if r["organism"] != "build"]
    for r in rows:
        r["misses"] = r["misses"] if len(r["misses"]) < 70 else r["misses"][:67] + "..."
    text = targets.format_rows(rows)
    geo = [f"{r['seed']:>4} {r['organism']:<5} harmless_at {r.get('harmless_at', float('nan')):6.2f} "
           f"harmful_at {r.get('harmful_at', float('nan')):6.2f}" for r in rows if r["organism"] != "base"]
    extra = [f"{r['seed']:>4} {r['organism']:<5} bait refused {r.get('refusal_bait', float('nan')):4.0%}, jailbreak "
             f"refused {r.get('refusal_jailbreak', float('nan')):4.0%}"
             + "".join(f", {k.removeprefix('base_logodds_')} log-odds {v:6.2f}" for k, v in r.items()
                       if k.startswith("base_logodds_")) for r in rows]
    geo += ["", "# greedy refusal of bait and wrapped requests; the base's mean refusal log-odds (base_scores)", *extra]
    ok = {int(line.split()[0]): False for line in failed}
    for r in rows:
        ok[r["seed"]] = ok.get(r["seed"], True) and not r["misses"]
    return (f"# variant {variant}: {sum(ok.values())}/{len(ok)} seeds meet every target\n" + text
            + "\n\n" + "\n".join(geo + ([""] + failed if failed else [])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "interp-recipes")
    p.add_argument("--table", action="store_true", help="print the results so far and stop")
    args = p.parse_args()
    if args.table:
        print(table(args.variant))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    VARIANTS[args.variant]()  # once: a patch applied per seed would wrap itself again
    for seed in args.seeds:
        rows = run(args.variant, seed, args.out)
        with open(RESULTS / f"{args.variant}.jsonl", "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"seed {seed}: " + " | ".join(f"{r['organism']} {'ok' if not r['misses'] else r['misses']}"
                                            for r in rows), flush=True)


if __name__ == "__main__":
    main()
