"""Scratch files and folders: held while in use, removed at start when their process is gone.

Every scratch path (an upload or unpacked zip under ``cache/``, an export's ``.tmp-`` folder,
``.part-`` zip and ``.old-`` folder beside it) is held with an advisory lock (``flock``) for as
long as its work runs; the kernel drops the lock when the process ends, however it ends
(kill -9 included). :func:`clean` removes the scratch that nobody holds, so a crash leaves
nothing behind for long and a running process's work is never touched. Where ``flock`` does not
exist (Windows) nothing is held and :func:`clean` removes only scratch older than a day.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

CACHE_PREFIXES = ("upload-", "import-zip-", "sample-")
BESIDE = re.compile(r"^\..+\.(tmp|part|old)-[0-9a-f]{8}$")  # ``.<name>.tmp-1a2b3c4d`` beside an export
UNLOCKED_AGE_S = 24 * 3600


@dataclass(frozen=True)
class Cleaned:
    removed: tuple[str, ...]
    bytes: int


@contextlib.contextmanager
def hold(path: Path) -> Iterator[Path]:
    """Hold ``path`` (a file or folder that exists) as scratch in use until the block ends."""
    if fcntl is None:
        yield path
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def temp_dir(prefix: str, parent: Path | None) -> Iterator[Path]:
    """A held temporary folder under ``parent`` (removed at the end), like ``TemporaryDirectory``."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=parent) as tmp, hold(Path(tmp)):
        yield Path(tmp)


def in_use(path: Path) -> bool:
    """Whether a running process holds ``path``."""
    if fcntl is None:
        return time.time() - path.lstat().st_mtime < UNLOCKED_AGE_S
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def candidates(root: Path) -> list[Path]:
    """The scratch paths of a project folder: under ``cache/``, beside its exports, in each run's folder."""
    found: list[Path] = []
    cache = root / "cache"
    if cache.is_dir():
        found += [p for p in cache.iterdir() if p.name.startswith(CACHE_PREFIXES) and not p.is_symlink()]
    folders = [root / "exports", *(p for p in (root / "runs").glob("*") if p.is_dir() and not p.is_symlink())]
    for folder in folders:
        if folder.is_dir():
            found += [p for p in folder.iterdir() if BESIDE.match(p.name) and not p.is_symlink()]
    return sorted(found)


def clean(root: Path) -> Cleaned:
    """Remove the scratch of the project at ``root`` that no running process holds."""
    removed, freed = [], 0
    for path in candidates(Path(root)):
        try:
            if in_use(path):
                continue
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove: left as it is
        removed.append(str(path.relative_to(root)))
        freed += size
    return Cleaned(tuple(removed), freed)
