"""One writer per output: an advisory lock (``flock``) on a file beside what is written, held for the long work.

The kernel releases the lock when its holder exits, however it exits, so a killed run never blocks the next one.

>>> import tempfile, pathlib
>>> page = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> with output_lock(page):  # doctest: +ELLIPSIS
...     with output_lock(page):
...         pass
Traceback (most recent call last):
interp.locks.OutputBusyError: another interp process (pid ...) is writing .../r.json (it holds .../.r.json.lock); ...
"""

from __future__ import annotations

import fcntl
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
    """Hold an exclusive lock on ``.{name}.lock`` beside ``out`` for the ``with`` block (the file holds the holder's
    pid, for the message); another process holding it is an :class:`OutputBusyError`."""
    out = Path(out)
    lock = out.with_name(f".{out.name}.lock")
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise OutputBusyError(f"another interp process (pid {holder}) is writing {out} (it holds {lock}); wait "
                                  "for it, or choose another --out") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield lock
        finally:
            lock.unlink(missing_ok=True)  # while still held: the next run makes a new one
