"""Generated kernel sources as small Python modules in a private, content-addressed cache.

Triton reads a kernel's source with ``inspect.getsource`` (in compiled and in interpreter
mode), so a generated ``@triton.jit`` function must live in a real file. :func:`load_generated`
writes a module's source to ``<cache>/<prefix>_<hash>.py`` and imports it once per process.

Files are named by the hash of their content and written atomically (temporary file plus
``os.replace``), so concurrent processes never see a half-written module. The cache directory
is ``$SNN_TRITON_CACHE_DIR`` or ``<tempdir>/snn_triton_<user>``; it is created private
(mode 0700) and refused when it is a symbolic link, another user owns it or others may write
to it. A file is imported only when its content equals the expected source byte for byte (a
tampered file is rewritten first).
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

__all__ = ["MODULE_PREFIX", "cache_dir", "load_generated"]

#: Prefix of the ``sys.modules`` names of generated modules.
MODULE_PREFIX = "snn_triton_generated"

_lock = threading.Lock()


def cache_dir() -> Path:
    """The private directory that holds the generated modules (created on first use).

    Returns:
        ``$SNN_TRITON_CACHE_DIR`` when set, else ``<tempdir>/snn_triton_<user>``.

    Raises:
        PermissionError: the directory is a symbolic link, is owned by another user, or is
            writable by group or others.
    """
    configured = os.environ.get("SNN_TRITON_CACHE_DIR", "").strip()
    if configured:
        path = Path(configured)
    else:
        try:
            user = str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
        except Exception:  # getpass may fail without a login name
            user = "user"
        path = Path(tempfile.gettempdir()) / f"snn_triton_{user}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"snn_triton cache directory {str(path)!r} is not a plain directory")
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            raise PermissionError(
                f"snn_triton cache directory {str(path)!r} belongs to another user; set "
                "SNN_TRITON_CACHE_DIR to a private directory"
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"snn_triton cache directory {str(path)!r} is writable by other users; set "
                "SNN_TRITON_CACHE_DIR to a private directory or chmod it 700"
            )
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def load_generated(source: str, prefix: str) -> ModuleType:
    """Import the module whose source is ``source`` (written to the cache first if needed).

    Args:
        source: the module's source text.
        prefix: a short identifier naming what the module holds (``"fw"``, ``"bw"``); part of
            the file name.

    Returns:
        The imported module; the same object for the same source within a process.

    Raises:
        ValueError: ``prefix`` is not an identifier.
        PermissionError: the cache directory is not private (see :func:`cache_dir`).
        RuntimeError: the file changed on disk between writing and importing it.
    """
    if not prefix.isidentifier():
        raise ValueError(f"prefix: expected an identifier, got {prefix!r}")
    data = source.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()[:24]
    module_name = f"{MODULE_PREFIX}_{prefix}_{digest}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    with _lock:
        loaded = sys.modules.get(module_name)
        if loaded is not None:
            return loaded
        path = cache_dir() / f"{prefix}_{digest}.py"
        _write_atomically(path, data)
        if path.read_bytes() != data:  # someone replaced it between our write and our check
            raise RuntimeError(f"generated module {str(path)!r} changed on disk while being loaded")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load generated module {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module
