"""How fast the command answers when it only prints help, against a bare Python start in the same run.

The issue's aim: ``interp --help`` in about a second on a 2-core CPU; ``interp report --help`` and
``interp organisms path`` are timed too (none of the three loads torch: ``tests/test_startup.py``).

    python benchmarks/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 1.0


def seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    command = shutil.which("interp") or "interp"
    bare = seconds([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass        {bare:6.3f} s (reference)")
    for label, argv in (("interp --help", [command, "--help"]), ("interp report --help", [command, "report", "--help"]),
                        ("interp organisms path", [command, "organisms", "path"])):
        t = seconds(argv, args.repeat)
        print(f"{label:<21} {t:6.3f} s  {t / bare:5.1f}x python's start, {t / TARGET_SECONDS:4.2f}x the 1 s aim")


if __name__ == "__main__":
    main()
