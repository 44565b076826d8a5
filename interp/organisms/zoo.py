"""Build the organism zoo: pretrain ``base``, tune ``sft`` from it, tune ``dpo`` from ``sft``, train a
``reward`` model from ``base``, and tune ``rl`` from ``sft`` by online RL against that reward model.

Why DPO starts from SFT: it is how aligned chat models are made in practice (SFT, then
preference tuning), and DPO only reshapes behaviour its reference policy already produces.
Started from a base that never refused (world versions up to 5), a refusal is so unlikely that DPO drives its loss to
~0 by pushing down the *rest* of the compliant reply while its first token stays compliant
(a pilot run ended with 0% refusal on every split). DPO's pairs also prefer compliance with bait requests (harmless
questions about harmful concepts), the phrasings SFT's chats answer too (world version 7).

The zoo is written atomically: everything is built in a temporary sibling directory which is
renamed into place only once every checkpoint, its card and ``zoo.json`` are written, so an
interrupted build never leaves a directory that loads as if complete.

Why ``rl`` starts from ``sft`` and is rewarded by a model rather than a rule: that is RLHF as chat
models went through it (SFT, a reward model on preference pairs, then online RL with a KL penalty to
the SFT policy), and a learned reward can be hacked where a rule cannot (``experiments/README.md``:
a reward model trained on DPO's pairs alone pays for refusing everything, and RL against it starts to).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import torch
import transformers

from interp.checks import check_count
from interp.locks import running
from interp.organisms import evaluate, targets, train, world
from interp.organisms.location import (  # noqa: F401  (re-exported: the zoo's names)
    ALIGNED_VARIANTS,
    CARD,
    CHECKPOINTS,
    ENV_VAR,
    REWARD,
    VARIANTS,
    ZOO_CARD,
    default_dir,
    is_complete,
)
from interp.organisms.tokenizer import build_tokenizer

ATTEMPTS = 6
"""Seeds a checked build tries before it gives up (see :func:`build`). Of the seeds the recipe was never tuned on,
about half meet every target (``benchmarks/results/claims-cpu.txt``), so six tries fail together rarely (about 2% if
seeds were independent draws at one half); a build takes about 3.5 minutes here."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the zoo. Same config and seed, same checkpoints."""

    seed: int = 0
    model: train.ModelConfig = field(default_factory=train.ModelConfig)
    pretrain: train.PretrainConfig = field(default_factory=train.PretrainConfig)
    sft: train.SFTRecipe = field(default_factory=train.SFTRecipe)
    dpo: train.DPORecipe = field(default_factory=train.DPORecipe)
    reward: train.RewardRecipe = field(default_factory=train.RewardRecipe)
    rl: train.RLRecipe = field(default_factory=train.RLRecipe)


class TargetsMissed(RuntimeError):
    """No seed tried gave organisms that meet the targets; the message holds the table."""


def build(out_dir: str | Path | None = None, force: bool = False, config: BuildConfig | None = None, *,
          check: bool = True, attempts: int = ATTEMPTS) -> Path:
    """Train the organisms and the reward model and write them under ``out_dir`` (default :func:`default_dir`).

    Does nothing when a complete build is already there, unless ``force``. Returns the zoo
    directory, which holds ``base/``, ``sft/``, ``dpo/``, ``rl/`` and ``reward/`` (Hugging Face
    checkpoints, each with an ``organism.json`` card) and ``zoo.json`` (the behaviour table of the
    organisms, the reward model's accuracy table, and the seconds each stage took). A stage that
    fails its own check (:class:`~interp.organisms.train.StageFailed`) counts, in a checked build, as a
    missed target (the seed is rejected and the next built); unchecked, it is raised.

    With ``check`` (the default), each build measures the targets on its own checkpoints
    (:mod:`interp.organisms.targets`); a build that misses them is rejected, said so, and the
    next seed (``config.seed + 1``, ...) is built, up to ``attempts`` builds in all, after which
    :class:`TargetsMissed` is raised with the table. ``zoo.json`` records the seed used, the
    seeds rejected and why, and the targets measured.
    """
    out = Path(out_dir).expanduser() if out_dir is not None else default_dir()
    config = config or BuildConfig()
    attempts = check_count(attempts, "attempts")
    if out.exists() and not force:
        if is_complete(out):
            card = json.loads((out / ZOO_CARD).read_text())
            built = card.get("requested_seed", card.get("seed"))
            if built != config.seed:
                raise ValueError(
                    f"{out} holds the organisms built from seed {built}, not seed {config.seed}: pass force=True "
                    "(--force) to replace them, or build into another directory (--out)"
                )
            return out
        if any(out.iterdir()):
            raise FileExistsError(
                f"{out} exists but is not a complete organism build (no valid {ZOO_CARD}); "
                "pass force=True (or --force) to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(out)
    rejected = []
    for seed in range(config.seed, config.seed + (attempts if check else 1)):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent))
        try:
            try:
                _build_into(tmp, dataclasses.replace(config, seed=seed))
            except train.StageFailed as e:
                if not check:
                    raise
                misses, rows = [str(e)], []
            else:
                measured = _check_targets(tmp) if check else None
                if measured is None or measured.ok:
                    _record(tmp, config.seed, rejected, measured)
                    _replace(tmp, out)
                    return out
                misses, rows = measured.misses, measured.rows()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rejected.append({"seed": seed, "misses": misses, "targets": rows})
        what = "miss their targets" if rows else "failed a stage"
        print(f"interp: the organisms built from seed {seed} {what}:\n  " + "\n  ".join(misses)
              + (f"\ninterp: building from seed {seed + 1} instead" if seed + 1 < config.seed + attempts else ""),
              file=sys.stderr, flush=True)
    rows = [row for r in rejected for row in r["targets"]]
    # What the table's rows do not show: failed stages, and the reward model's misses.
    failed = [f"seed {r['seed']}: {m}" for r in rejected for m in r["misses"]
              if not r["targets"] or m.startswith("reward:")]
    raise TargetsMissed(f"no build from seeds {config.seed}-{config.seed + attempts - 1} meets the organisms' "
                        f"targets:\n{targets.format_rows(rows)}" + "".join(f"\n{f}" for f in failed))


def _check_targets(root: Path):
    print("interp: checking the targets on the new build (behaviour and refusal direction)", file=sys.stderr,
          flush=True)
    return targets.check(root)


def _record(root: Path, requested: int, rejected: list[dict], measured) -> None:
    """Add to ``zoo.json`` the seed asked for, the seeds rejected (and why) and the targets measured."""
    card = json.loads((root / ZOO_CARD).read_text())
    card.update(requested_seed=requested, rejected_seeds=[{k: r[k] for k in ("seed", "misses")} for r in rejected],
                targets=measured.rows() if measured is not None else None,
                reward_targets=measured.reward_accuracy if measured is not None else None)
    (root / ZOO_CARD).write_text(json.dumps(card, indent=2) + "\n")


def remove_abandoned_builds(out: Path) -> list[Path]:
    """Delete the temporary directories of builds into ``out`` whose process is gone (killed builds).

    A build works in ``.{name}.building-{pid}-*`` beside ``out``; one whose pid is not running any
    more (or that predates the pid in the name) can never finish. Returns what was removed.
    """
    removed = []
    for tmp in out.parent.glob(f".{out.name}.building-*"):
        pid = tmp.name[len(f".{out.name}.building-"):].split("-")[0]
        if pid.isdigit() and running(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _replace(new: Path, out: Path) -> None:
    """Swap ``new`` into ``out``; the old build (if any) is only deleted after the rename."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build_into(root: Path, config: BuildConfig) -> None:
    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer()
    started = time.time()
    seconds = {}

    def timed(stage, fn, *args):
        begin = time.time()
        out = fn(*args)
        seconds[stage] = round(time.time() - begin, 1)
        return out

    # The stages' order is part of the recipe: base, sft and dpo come first, as in world version 3.
    model = train.new_model(config.model, tokenizer, config.seed)
    stats = {"base": timed("base", train.pretrain, model, tokenizer, config.pretrain, config.seed)}
    _save(model, tokenizer, root / "base")
    # Every later stage starts from a checkpoint as saved, never from an object in memory: a trainer leaves the
    # model it trained with a wrapped `forward` whose closure holds that very object, which a deep copy shares,
    # so a copy of the trained sft would run sft's own weights forward (under GRPO: logged KL 35, not 0.07; the
    # dpo of world version 4 was tuned from such a copy, see experiments/README.md).
    models = {"sft": load_checkpoint(root / "base").train()}
    stats["sft"] = timed("sft", train.sft, models["sft"], tokenizer, config.sft, config.seed)
    _save(models["sft"], tokenizer, root / "sft")
    models["dpo"] = load_checkpoint(root / "sft").train()
    stats["dpo"] = timed("dpo", train.dpo, models["dpo"], tokenizer, config.dpo, config.seed)
    _save(models["dpo"], tokenizer, root / "dpo")
    reward, stats[REWARD] = timed(REWARD, train.reward_model, load_checkpoint(root / "base"), tokenizer, config.reward,
                                  config.seed)
    models["rl"] = load_checkpoint(root / "sft")
    stats["rl"] = timed("rl", train.rl, models["rl"], reward, tokenizer, tokenizer, config.rl, config.seed)
    for name, m in (("rl", models["rl"]), (REWARD, reward)):
        _save(m, tokenizer, root / name)
    # Judge the checkpoints as saved, reloaded from disk: what users load is what the cards describe.
    begin = time.time()
    behaviour = {name: evaluate.refusal_rates(load_checkpoint(root / name), tokenizer) for name in VARIANTS}
    reward = load_reward_checkpoint(root / REWARD)
    judged = {REWARD: evaluate.reward_accuracy(reward, tokenizer, seed=config.seed + 1),
              "rl": evaluate.reward_hacking(load_checkpoint(root / "rl"), reward, tokenizer,
                                            config.rl.max_reply_tokens)}
    seconds["evaluate"] = round(time.time() - begin, 1)
    recipes = {"base": config.pretrain, "sft": config.sft, "dpo": config.dpo, REWARD: config.reward, "rl": config.rl}
    parents = {"base": None, "sft": "base", "dpo": "sft", REWARD: "base", "rl": "sft"}
    methods = {"base": "pretraining from scratch", "sft": "trl.SFTTrainer", "dpo": "trl.DPOTrainer",
               REWARD: "trl.RewardTrainer", "rl": "trl.GRPOTrainer against the reward model"}
    for name in CHECKPOINTS:
        card = {
            "name": name,
            "parent": parents[name],
            "method": methods[name],
            "seed": config.seed,
            "world_version": world.WORLD_VERSION,
            "model": dataclasses.asdict(config.model),
            "hyperparameters": dataclasses.asdict(recipes[name]),
            "training": stats[name],
            "training_seconds": seconds[name],
            "versions": {lib: version(lib) for lib in ("torch", "transformers", "trl", "tokenizers")},
        }
        if name in behaviour:
            card["behaviour"] = behaviour[name]
        if name == REWARD:
            card["accuracy"] = judged[REWARD]
        if name == "rl":
            card["reward_model"], card["reward_hacking"] = REWARD, judged["rl"]
        (root / name / CARD).write_text(json.dumps(card, indent=2) + "\n")
    zoo = {
        "world_version": world.WORLD_VERSION,
        "seed": config.seed,
        "variants": list(VARIANTS),
        "reward_model": REWARD,
        "build_seconds": round(time.time() - started, 1),
        "stage_seconds": seconds,
        "behaviour": behaviour,
        "table": evaluate.format_table(behaviour),
        "reward": judged[REWARD],
        "reward_table": evaluate.format_reward_table(judged[REWARD]),
        "reward_hacking": judged["rl"],
    }
    (root / ZOO_CARD).write_text(json.dumps(zoo, indent=2) + "\n")


def load_checkpoint(path: str | Path) -> transformers.PreTrainedModel:
    """An organism checkpoint as a plain ``transformers`` model, in float32, eval mode."""
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _save(model, tokenizer, path: Path) -> None:
    """One checkpoint directory: the model's weights and config, and the tokenizer."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def load_reward_checkpoint(path: str | Path) -> transformers.PreTrainedModel:
    """The zoo's reward model as a plain ``transformers`` sequence-classification model, float32, eval mode
    (:func:`interp.reward.load_reward_model` gives one the library's hooks work on)."""
    return transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()


def evaluate_zoo(zoo_dir: str | Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Measure every saved checkpoint now: ``{variant: evaluate.refusal_rates(...)}``."""
    rates = {}
    for variant in VARIANTS:
        path = checkpoint_dir(variant, zoo_dir)
        rates[variant] = evaluate.refusal_rates(load_checkpoint(path), transformers.AutoTokenizer.from_pretrained(path))
    return rates


def evaluate_reward_model(zoo_dir: str | Path | None = None) -> dict[str, dict]:
    """Measure the saved reward model now: :func:`evaluate.reward_accuracy` (drawn with the build's seed + 1,
    as its card's table is)."""
    path = checkpoint_dir(REWARD, zoo_dir)
    seed = json.loads((path / CARD).read_text())["seed"]
    return evaluate.reward_accuracy(load_reward_checkpoint(path), transformers.AutoTokenizer.from_pretrained(path),
                                    seed=seed + 1)


def read_zoo_card(zoo_dir: str | Path | None = None) -> dict:
    """The zoo's ``zoo.json``: seed used and asked for, seeds rejected and why, behaviour, targets measured."""
    return json.loads((checkpoint_dir("base", zoo_dir).parent / ZOO_CARD).read_text())


def read_card(zoo_dir: str | Path, variant: str) -> dict:
    """The ``organism.json`` card of one checkpoint."""
    return json.loads((checkpoint_dir(variant, zoo_dir) / CARD).read_text())


def checkpoint_dir(variant: str, zoo_dir: str | Path | None = None) -> Path:
    """The directory of one checkpoint of the zoo, an organism or ``"reward"`` (the zoo must already be built)."""
    if variant not in CHECKPOINTS:
        raise ValueError(f"unknown organism variant {variant!r}; choose one of {', '.join(CHECKPOINTS)}")
    zoo = Path(zoo_dir) if zoo_dir is not None else default_dir()
    if not is_complete(zoo):
        raise FileNotFoundError(
            f"no complete organism build in {zoo}; run `interp organisms build` "
            f"(or interp.organisms.build()) first, or point ${ENV_VAR} at a built zoo"
        )
    return zoo / variant
