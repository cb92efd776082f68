"""Advisory file locks on the kernel cache's ``<name>.lock`` files, safe against their removal.

A builder holds an entry's lock while it compiles, and cache pruning removes an entry's files,
its lock file last, while holding the same lock. A process that waited on the lock file
meanwhile then holds a lock on a file that no longer has a name, which a newcomer opening the
path would not see: :func:`exclusive_lock` checks after locking that the path still names the
file it locked, and otherwise locks the new one.

Example:
    >>> import tempfile, pathlib
    >>> with exclusive_lock(pathlib.Path(tempfile.mkdtemp()) / "entry.lock") as held:
    ...     held
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["exclusive_lock"]


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` names the open file ``fd``."""
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


@contextmanager
def exclusive_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive advisory lock of ``path`` (created if missing) inside the block.

    Args:
        path: the lock file.
        blocking: wait for another holder (``True``), or give up at once.

    Yields:
        Whether the lock is held: always ``True`` when blocking; without ``fcntl`` (not POSIX)
        ``True`` with no lock.

    Raises:
        OSError: the lock file cannot be created or opened.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    mode = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
    while True:
        handle = open(path, "a+b")
        try:
            try:
                fcntl.flock(handle.fileno(), mode)
            except BlockingIOError:
                handle.close()
                yield False
                return
            if not _still_named(handle.fileno(), path):  # removed while we waited: lock the new one
                continue
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return
        finally:
            handle.close()
