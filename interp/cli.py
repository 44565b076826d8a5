"""The ``interp`` command.

    interp organisms build [--out DIR] [--force] [--seed N] [--attempts K]
                                                              train base, sft and dpo (a few minutes on CPU)
    interp organisms eval  [--dir DIR]                         refusal rates per split, as a table
    interp organisms path                                      where the zoo lives
    interp organisms prompts --out FILE [--splits ...]         the world's prompts as a JSONL file for a report
    interp figures [--notebooks DIR] [--figures DIR]           build the zoo if missing, run every notebook
    interp figures --pair real:smollm2-safety                  the notebooks that answer on a real pair, on it
    interp report BASE ALIGNED --prompts FILE --out report.html [--refusal-prefix TEXT ...] [--no-SECTION ...]
                                                                    [--device D] [--allow-identical] ...
                                                               audit a checkpoint pair: one HTML page + JSON
    interp bench [ZOO ...] [--root DIR] [--out PREFIX] [--organisms ...] [--methods ...] [--real]
                                                               the auditing benchmark: planted organisms, every
                                                               method on each, a leaderboard (txt, png, jsonl)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

REPORT_SPLITS = ("harmful_train", "harmless_train", "harmful_held_out", "harmless_held_out")


def _organisms_build(args) -> int:
    from interp.organisms import zoo

    out = zoo.default_dir() if args.out is None else Path(args.out)
    config = zoo.BuildConfig(seed=args.seed)
    if zoo.is_complete(out) and not args.force:
        zoo.build(out, config=config)  # a build from another seed is an error, not "already built"
        print(f"organisms already built in {out} from seed {args.seed} (use --force to rebuild)")
        return 0
    try:
        path = zoo.build(out, force=args.force, config=config,
                         attempts=zoo.ATTEMPTS if args.attempts is None else args.attempts)
    except zoo.TargetsMissed as e:
        print(f"interp: error: {e}", file=sys.stderr)
        return 1
    card = json.loads((path / zoo.ZOO_CARD).read_text())
    print(f"built organisms in {path} from seed {card['seed']}"
          + (f" (seeds rejected: {', '.join(str(r['seed']) for r in card['rejected_seeds'])})"
             if card["rejected_seeds"] else ""))
    print(card["table"])
    print("\nreward model: does the preferred reply (refusal if harmful, compliance if not) score higher?\n"
          + card["reward_table"])
    print("build seconds by stage: " + ", ".join(f"{k} {v}" for k, v in card["stage_seconds"].items()))
    return 0


def _organisms_eval(args) -> int:
    from interp.organisms import evaluate, zoo

    print(evaluate.format_table(zoo.evaluate_zoo(args.dir)))
    print("\nreward model: does the preferred reply (refusal if harmful, compliance if not) score higher?\n"
          + evaluate.format_reward_table(zoo.evaluate_reward_model(args.dir)))
    return 0


def _organisms_path(args) -> int:
    from interp.organisms import location

    path = location.default_dir()
    if path.exists() and not path.is_dir():
        source = f" (${location.ENV_VAR})" if os.environ.get(location.ENV_VAR) else ""
        raise NotADirectoryError(f"the zoo's path {str(path)!r}{source} is a file, not a folder: name a folder")
    print(path, "(built)" if location.is_complete(path) else "(not built yet)")
    return 0


def _organisms_prompts(args) -> int:
    from interp.organisms import world

    out = Path(args.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the output folder {str(out.parent)!r} does not exist")
    rows = [{"prompt": p.text, "label": p.label, "concept": p.concept, "held_out": p.held_out, "split": p.split}
            for split in args.splits for p in world.prompts(split)]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} prompts ({', '.join(args.splits)}) to {out}")
    return 0


def _report(args) -> int:
    from interp import pairs, report

    skip = [key for key in report.SECTIONS if getattr(args, f"no_{key}")]
    if args.dictionary and "dictionary" in skip:
        raise ValueError("--dictionary and --no-dictionary contradict each other; give one")
    base, aligned, products = args.base, args.aligned, args.matmul or "float32"
    if pairs.is_spec(base) and not Path(base).exists():
        if aligned is not None:
            raise ValueError(f"{base} names a pair (its base and its aligned checkpoint): give no ALIGNED after it")
        products = args.matmul or pairs.matmul(base) or "float32"  # as a notebook on that pair multiplies
        base, aligned = pairs.checkpoints(base)
    elif aligned is None:
        raise ValueError("give BASE and ALIGNED checkpoints, or one pair by name (real:smollm2-safety, organisms:dpo)")
    report.run(base, aligned, args.prompts, args.out, refusal_prefixes=args.refusal_prefix, skip=skip,
               device=args.device, prompt_format=args.prompt_format, max_new_tokens=args.max_new_tokens,
               allow_identical=args.allow_identical, dictionary=True if args.dictionary else None,
               matmul=products, allow_nonfinite=args.allow_nonfinite)
    return 0


def _bench(args) -> int:
    from interp.bench.command import bench

    print(bench(args.zoos, root=args.root, out=args.out, organisms=args.organisms, methods=args.methods,
                real=args.real))
    return 0


def _figures(args) -> int:
    from interp.figures import NotebookError, run_all

    try:
        run_all(Path(args.notebooks), Path(args.figures), zoo_dir=args.zoo, pair=args.pair)
    except NotebookError as e:
        print(f"interp figures: {e}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    org = sub.add_parser("organisms", help="build and evaluate the embedded model organisms")
    org_sub = org.add_subparsers(dest="action", required=True)
    b = org_sub.add_parser("build", help="train base, sft and dpo (deterministic, atomic)")
    b.add_argument("--out", help="zoo directory (default: $INTERP_ORGANISMS_DIR or the user cache)")
    b.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    b.add_argument("--seed", type=int, default=0, help="the first seed tried (default 0)")
    b.add_argument("--attempts", type=int,
                   help="seeds tried (--seed, --seed + 1, ...) until a build meets the organisms' targets (default 6)")
    b.set_defaults(func=_organisms_build)
    e = org_sub.add_parser("eval", help="refusal rate of every organism on every split")
    e.add_argument("--dir", help="zoo directory (default: as for build)")
    e.set_defaults(func=_organisms_eval)
    org_sub.add_parser("path", help="print where the zoo lives").set_defaults(func=_organisms_path)
    pr = org_sub.add_parser("prompts", help="write the world's prompts (prompt, label, concept, held_out) as JSONL")
    pr.add_argument("--out", required=True, help="the .jsonl file to write")
    pr.add_argument("--splits", nargs="+", default=list(REPORT_SPLITS), help="world splits to include")
    pr.set_defaults(func=_organisms_prompts)

    f = sub.add_parser("figures", help="build the organisms if missing, execute every notebook, write figures/")
    f.add_argument("--notebooks", default="notebooks", help="folder of .ipynb files, run in name order")
    f.add_argument("--figures", default="figures", help="where the notebooks write their figures")
    f.add_argument("--zoo", help="organism zoo directory (default: as for organisms build)")
    f.add_argument("--pair", help="run the notebooks on this pair (real:smollm2-safety, organisms:sft, ...): the "
                                  "ones that answer on its kind, figures of a real pair in FIGURES/real")
    f.set_defaults(func=_figures)

    r = sub.add_parser("report", help="audit a checkpoint pair: a self-contained HTML page and a JSON of its numbers")
    r.add_argument("base", help="the base checkpoint: a hub name or a local directory; or a pair by name "
                   "(real:smollm2-safety, organisms:dpo), built first when it is not, with ALIGNED left out")
    r.add_argument("aligned", nargs="?", help="the aligned checkpoint: a hub name or a local directory")
    r.add_argument("--prompts", required=True, help="JSONL or CSV with prompt, label (harmful/harmless), "
                   "optional held_out and concept; or the field's prompt sets by name, e.g. harmbench+alpaca "
                   "(their test split; harmbench+alpaca:validation for another; sets: harmbench, strongreject, "
                   "advbench, alpaca, mtbench, edgy)")
    r.add_argument("--out", required=True, help="the HTML page to write (its folder must exist); JSON goes beside it")
    r.add_argument("--refusal-prefix", action="append", metavar="TEXT",
                   help="how a refusal starts (repeatable); default: derived from how the aligned model answers "
                   "harmful prompts where the base does not")
    r.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    r.add_argument("--prompt-format", default="chat", help="'chat' (the aligned tokenizer's chat template), 'raw', "
                   "or a template such as 'Question: {prompt}\\nAnswer:' (default: chat)")
    r.add_argument("--matmul", choices=["float32", "bfloat16", "auto"],
                   help="the dtype of the models' linear products: bfloat16 keeps weights and activations float32 and "
                   "runs 2-2.5x faster on a CPU with AVX512-BF16 or AMX (first-token KL ~0.002 nats from float32 on "
                   "SmolLM2-135M); auto: bfloat16 where the device has it (default: float32, exact; auto for a real "
                   "pair by name, as its notebooks run)")
    r.add_argument("--max-new-tokens", type=int, default=16, help="length of the greedy replies judged (default 16)")
    r.add_argument("--allow-nonfinite", action="store_true", help="audit even when a checkpoint holds NaN or "
                   "infinite weights (to study such a model on purpose; otherwise an error naming the tensors)")
    r.add_argument("--allow-identical", action="store_true", help="audit even when BASE and ALIGNED hold the same "
                   "weights (a null control: every difference is zero); otherwise that is an error")
    for key in REPORT_SECTIONS:
        r.add_argument(f"--no-{key.replace('_', '-')}", dest=f"no_{key}", action="store_true",
                       help=f"skip the {key.replace('_', ' ')} section")
    r.add_argument("--dictionary", action="store_true", help="run the dictionary section (a crosscoder) even when "
                   "the plan estimates it too long to run by default (it says so before loading)")
    r.set_defaults(func=_report)

    be = sub.add_parser("bench", help="the auditing benchmark: organisms with planted changes and ground-truth cards, "
                        "every method on each, graded without a judge (a leaderboard: txt, png, jsonl)")
    be.add_argument("zoos", nargs="*", help="zoo folders (each with sft/ and zoo.json; default: the zoo of "
                    "'interp organisms build')")
    be.add_argument("--root", help="where the organisms are kept (default: the user cache, by control checkpoint)")
    be.add_argument("--out", default="audit", help="PREFIX of the rows (PREFIX.jsonl: a rerun resumes), the "
                    "leaderboard (PREFIX.txt) and its figure (PREFIX.png); default ./audit")
    be.add_argument("--organisms", nargs="+", help="plants to build and audit (default: all)")
    be.add_argument("--methods", nargs="+", help="methods to run (default: all)")
    be.add_argument("--real", action="store_true", help="SmolLM2-135M-Instruct's plants instead of a toy zoo's "
                    "(about 5 minutes each to build; the cost is said before)")
    be.set_defaults(func=_bench)
    return p


REPORT_SECTIONS = ("behaviour", "token_kl", "what_changed", "weights", "representations", "probes", "direction",
                   "patching", "jailbreak", "dictionary")
"""The keys of :data:`interp.report.sections.SECTIONS`, in page order (a test checks they agree): named here so
that building the parser, and ``interp --help``, imports no torch."""


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that ``finally`` blocks remove temporary files as on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (OSError, ValueError, ImportError) as e:
        print(f"interp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("interp: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
