"""One writer per output: a lock file beside what is written, taken before long work and released after.

>>> import tempfile, pathlib
>>> page = pathlib.Path(tempfile.mkdtemp()) / "r.html"
>>> with output_lock(page):  # doctest: +ELLIPSIS
...     with output_lock(page):
...         pass
Traceback (most recent call last):
interp.locks.OutputBusyError: another interp process (pid ...) is writing .../r.html; wait for it, or ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputBusyError(OSError):
    """Another live process holds the output's lock."""


def running(pid: int) -> bool:
    """Whether a process ``pid`` is alive (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold ``.{name}.lock`` beside ``out`` (holding this pid) for the ``with`` block; another live holder is an
    :class:`OutputBusyError`, a dead one's lock (a killed run) is taken over."""
    out = Path(out)
    lock = out.with_name(f".{out.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = lock.read_text().strip() if lock.exists() else ""
            if holder.isdigit() and running(int(holder)):
                raise OutputBusyError(f"another interp process (pid {holder}) is writing {out}; wait for it, or "
                                      "choose another --out") from None
            lock.unlink(missing_ok=True)  # left by a run that was killed
    else:
        raise OutputBusyError(f"cannot take the lock {lock} for {out}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield lock
    finally:
        lock.unlink(missing_ok=True)
