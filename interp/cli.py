"""The ``interp`` command.

    interp organisms build [--out DIR] [--force] [--seed N]   train base, sft and dpo (~2 min on CPU)
    interp organisms eval  [--dir DIR]                         refusal rates per split, as a table
    interp organisms path                                      where the zoo lives
    interp figures [--notebooks DIR] [--figures DIR]           build the zoo if missing, run every notebook
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _organisms_build(args) -> int:
    from interp.organisms import zoo

    out = zoo.default_dir() if args.out is None else Path(args.out)
    if zoo.is_complete(out) and not args.force:
        print(f"organisms already built in {out} (use --force to rebuild)")
        return 0
    path = zoo.build(out, force=args.force, config=zoo.BuildConfig(seed=args.seed))
    print(f"built organisms in {path}")
    print(json.loads((path / zoo.ZOO_CARD).read_text())["table"])
    return 0


def _organisms_eval(args) -> int:
    from interp.organisms import evaluate, zoo

    print(evaluate.format_table(zoo.evaluate_zoo(args.dir)))
    return 0


def _organisms_path(args) -> int:
    from interp.organisms import zoo

    path = zoo.default_dir()
    print(path, "(built)" if zoo.is_complete(path) else "(not built yet)")
    return 0


def _figures(args) -> int:
    from interp.figures import NotebookError, run_all

    try:
        run_all(Path(args.notebooks), Path(args.figures), zoo_dir=args.zoo)
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
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_organisms_build)
    e = org_sub.add_parser("eval", help="refusal rate of every organism on every split")
    e.add_argument("--dir", help="zoo directory (default: as for build)")
    e.set_defaults(func=_organisms_eval)
    org_sub.add_parser("path", help="print where the zoo lives").set_defaults(func=_organisms_path)

    f = sub.add_parser("figures", help="build the organisms if missing, execute every notebook, write figures/")
    f.add_argument("--notebooks", default="notebooks", help="folder of .ipynb files, run in name order")
    f.add_argument("--figures", default="figures", help="where the notebooks write their figures")
    f.add_argument("--zoo", help="organism zoo directory (default: as for organisms build)")
    f.set_defaults(func=_figures)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"interp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
