"""Keeping the kernel cache bounded: libraries unused for a while go, the oldest first when it is full.

Every configuration a process compiles (a neuron model, a dtype, a surrogate, the toolchain)
leaves a library of some hundred KiB in the cache (:func:`snn_cpp.build.cache_dir`), and a new
compiler, a new CPU or a new snn version makes all earlier ones unreachable. So after it first
compiles a library, a process prunes the cache (:func:`prune_cache`; only a compilation makes
the cache grow):

- an entry (``<name>.so``, its ``.so.sha256``, ``.c`` and ``.lock``, and temporary files of an
  interrupted build) whose library was last used more than :data:`MAX_AGE_DAYS` days ago is
  removed; loading a library from the cache marks it used (its modification time), once per
  process;
- then, while the entries hold more than :data:`MAX_BYTES`, the least recently used go;
- an entry whose lock another process holds (it is building that library) is left alone, and
  every removal holds the entry's lock, so a builder never sees half an entry. A library that a
  running process has loaded stays mapped there; the next process to need it compiles it again.

Only regular files named like cache entries (``<32 hex>-<16 hex>.<suffix>``) are touched; an
entry holding a directory or a symbolic link is left alone. Pruning decides from one scan of the
directory, and under the entry's lock checks again that its library was not used meanwhile.

Example:
    >>> from snn_cpp.cache_pruning import prune_cache
    >>> report = prune_cache(max_age_days=365.0)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from snn_cpp.file_locks import exclusive_lock

__all__ = ["MAX_AGE_DAYS", "MAX_BYTES", "PruneReport", "prune_cache"]

#: Entries whose library was not used for this many days are removed.
MAX_AGE_DAYS = 30.0
#: The most bytes the cache's entries may hold after pruning (least recently used go first).
MAX_BYTES = 256 << 20
#: Files of an entry without a library (an interrupted build) are removed after this many seconds.
_LEFTOVER_SECONDS = 24 * 3600.0
_ENTRY_FILE = re.compile(r"^([0-9a-f]{32}-[0-9a-f]{16})\.")


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_cache` did.

    Attributes:
        removed: entries removed.
        freed_bytes: bytes of the files removed.
        kept: entries left.
        kept_bytes: bytes of the entries left.
        busy: entries left because another process held their lock.
    """

    removed: int
    freed_bytes: int
    kept: int
    kept_bytes: int
    busy: int


@dataclass
class _Entry:
    name: str
    files: list[Path]
    size: int
    last_used: float
    has_library: bool
    foreign: bool  # holds something other than regular files (a directory, a link): left alone


def _entries(directory: Path) -> list[_Entry]:
    grouped: dict[str, _Entry] = {}
    try:
        listing = list(os.scandir(directory))
    except OSError:
        return []
    for item in listing:
        match = _ENTRY_FILE.match(item.name)
        if match is None:
            continue
        try:
            info = item.stat(follow_symlinks=False)
        except OSError:  # removed meanwhile
            continue
        entry = grouped.setdefault(match.group(1), _Entry(match.group(1), [], 0, 0.0, False, False))
        if not stat.S_ISREG(info.st_mode):
            entry.foreign = True
            continue
        entry.files.append(Path(item.path))
        entry.size += info.st_size
        if item.name == f"{entry.name}.so":
            entry.has_library = True
            entry.last_used = info.st_mtime
        elif not entry.has_library:
            entry.last_used = max(entry.last_used, info.st_mtime)
    return list(grouped.values())


def _remove(entry: _Entry, directory: Path) -> int | None:
    """Remove the entry's files under its lock, the lock file last.

    Returns:
        The bytes removed (0: nothing left to remove, e.g. another process pruned it, or its
        library was used since the scan), or ``None`` when another process holds the lock.
    """
    lock = directory / f"{entry.name}.lock"
    library = directory / f"{entry.name}.so"
    try:
        with exclusive_lock(lock, blocking=False) as held:
            if not held:
                return None
            if entry.has_library:
                try:
                    if os.lstat(library).st_mtime != entry.last_used:
                        return 0  # used (or rebuilt) since the scan
                except FileNotFoundError:
                    return 0  # another process pruned it
            freed = 0
            for path in entry.files:
                if path == lock:
                    continue
                try:
                    info = os.lstat(path)
                    if stat.S_ISREG(info.st_mode):
                        path.unlink()
                        freed += info.st_size
                except OSError:  # gone meanwhile, or not ours to remove
                    pass
            try:
                size = os.lstat(lock).st_size
                lock.unlink()  # while held: a process waiting on it locks the next lock file
                freed += size
            except OSError:
                pass
            return freed
    except OSError:  # the lock file cannot be created or locked (a read-only cache, no flock)
        return None


def prune_cache(
    directory: str | os.PathLike[str] | None = None,
    *,
    max_age_days: float = MAX_AGE_DAYS,
    max_bytes: int = MAX_BYTES,
    now: float | None = None,
) -> PruneReport:
    """Remove cache entries unused for ``max_age_days``, then the least recently used ones
    until the rest hold at most ``max_bytes``.

    Args:
        directory: the cache (default: :func:`snn_cpp.build.cache_dir`).
        max_age_days: entries whose library was last used longer ago go (a float ``>= 0``).
        max_bytes: the most bytes the remaining entries may hold (an int ``>= 0``).
        now: the current time as :func:`time.time` gives it (default: now; for tests).

    Returns:
        A :class:`PruneReport`.

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range.
        snn_cpp.build.KernelCacheError: the default directory cannot be used.
    """
    if isinstance(max_age_days, bool) or not isinstance(max_age_days, (int, float)):
        raise TypeError(f"prune_cache: max_age_days must be a number of days, got {type(max_age_days).__name__}")
    if not max_age_days >= 0:
        raise ValueError(f"prune_cache: max_age_days must be >= 0, got {max_age_days!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"prune_cache: max_bytes must be an int, got {type(max_bytes).__name__}")
    if max_bytes < 0:
        raise ValueError(f"prune_cache: max_bytes must be >= 0, got {max_bytes!r}")
    if directory is None:
        from snn_cpp.build import cache_dir

        path = cache_dir()
    else:
        path = Path(directory)
    current = time.time() if now is None else float(now)
    removed = freed = 0
    busy: set[str] = set()

    def gone(entry: _Entry) -> bool:
        nonlocal removed, freed
        outcome = _remove(entry, path)
        if outcome is None:
            busy.add(entry.name)
            return False
        if outcome == 0 and entry.size > 0:
            return False  # used since the scan, or already gone: not counted
        removed += 1
        freed += outcome
        return True

    kept = []
    for entry in _entries(path):
        if entry.foreign:
            continue
        limit = max_age_days * 86400.0 if entry.has_library else min(max_age_days * 86400.0, _LEFTOVER_SECONDS)
        if not (current - entry.last_used > limit and gone(entry)):
            kept.append(entry)
    total = sum(entry.size for entry in kept)
    if total > max_bytes:
        kept.sort(key=lambda entry: entry.last_used)  # least recently used first
        survivors = []
        for entry in kept:
            if total > max_bytes and gone(entry):
                total -= entry.size
            else:
                survivors.append(entry)
        kept = survivors
    return PruneReport(removed, freed, len(kept), total, len(busy))
