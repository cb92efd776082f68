"""Compile generated C with the system's C compiler and load it with :mod:`ctypes`, cached on disk.

Why plain C and ``ctypes`` instead of ``torch.utils.cpp_extension``: the kernels need no torch
headers (they see raw pointers), and a C file of a few hundred lines compiles in well under a
second with ``gcc -O3``, where a C++ extension that includes torch's headers takes tens of
seconds per configuration (see the backend's documentation page for the measurements).

The compiler is ``$SNN_CPP_CC``, else ``$CC``, else the first of ``cc``, ``gcc`` and ``clang`` on
``PATH`` (a variable may hold a command with arguments, e.g. ``"ccache gcc"``; a variable that
names a missing program is not silently replaced by another compiler). :func:`toolchain`
compiles a small test library once per compiler with the best flags that work (OpenMP for
threads, glibc's vector math library so that loops calling ``exp`` vectorise, ``-march=native``)
and falls back to fewer of them; without any working compiler :func:`probe` returns the reason
and the install hint.

Cache: ``$SNN_CPP_CACHE_DIR``, else ``$XDG_CACHE_HOME/snn-cpp``, else ``~/.cache/snn-cpp``,
pruned after a process first compiles into it (:mod:`snn_cpp.cache_pruning`: libraries unused
for a month go, and the least recently used beyond 256 MiB). A library is stored as ``<source id>-<toolchain id>.so`` with its SHA-256 in ``<name>.so.sha256``
and its source in ``<name>.c``. Every file is written to a unique temporary name and renamed
into place (atomic on POSIX), builders of the same library take an advisory lock on
``<name>.lock`` so concurrent processes compile it once, and a library is loaded only after its
checksum and its embedded source id match, so a truncated or foreign file is rebuilt instead of
crashing the process.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from snn.errors import SNNError
from snn_cpp.codegen import ABI_VERSION
from snn_cpp.file_locks import exclusive_lock

__all__ = [
    "CACHE_ENV",
    "COMPILER_ENV",
    "INSTALL_HINT",
    "CompilerNotFoundError",
    "KernelBuildError",
    "KernelCacheError",
    "Toolchain",
    "cache_dir",
    "compiler_command",
    "toolchain",
    "load_library",
    "probe",
    "reset",
]

logger = logging.getLogger("snn")

#: Environment variable naming the compiler (before ``CC``).
COMPILER_ENV = "SNN_CPP_CC"
#: Environment variable naming the cache directory.
CACHE_ENV = "SNN_CPP_CACHE_DIR"
#: How to get a compiler, for error messages.
INSTALL_HINT = (
    "install a C compiler (Debian/Ubuntu: `apt-get install gcc`; Fedora: `dnf install gcc`; "
    "conda: `conda install -c conda-forge c-compiler`; macOS: `xcode-select --install`) "
    f"or point {COMPILER_ENV} or CC at one"
)
#: Seconds a compilation may take before it is abandoned.
COMPILE_TIMEOUT = 300.0

_BASE_FLAGS = (
    "-std=c99", "-O3", "-fPIC", "-shared", "-fvisibility=hidden",
    # values stay IEEE (no -ffast-math): these only drop errno updates and trap assumptions,
    # which lets libm calls and selections vectorise; -ffp-contract=off keeps a * b + c rounded
    # twice, as torch computes it.
    "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
)
_PROBE_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(SNN_LIBMVEC)
#define SNN_SIMD __attribute__((__simd__("notinbranch")))
SNN_SIMD float expf(float); SNN_SIMD float logf(float); SNN_SIMD float sinf(float); SNN_SIMD float cosf(float);
SNN_SIMD double exp(double); SNN_SIMD double log(double); SNN_SIMD double sin(double); SNN_SIMD double cos(double);
#endif
/* every vector function a kernel may call, each in a loop of its own (so that a missing one
   fails here, not in a kernel), and a loop on the threads a kernel would use; n <= 64 */
__attribute__((visibility("default"))) int snn_probe(const int64_t n, float *restrict x, double *restrict y,
                                                     const int threads) {
    float a[64], b[64], c[64];
    double d[64], e[64], f[64];
    for (int64_t i = 0; i < n; ++i) a[i] = logf(x[i] + 2.0f);
    for (int64_t i = 0; i < n; ++i) b[i] = sinf(x[i]);
    for (int64_t i = 0; i < n; ++i) c[i] = cosf(x[i]);
    for (int64_t i = 0; i < n; ++i) d[i] = log(y[i] + 2.0);
    for (int64_t i = 0; i < n; ++i) e[i] = sin(y[i]);
    for (int64_t i = 0; i < n; ++i) f[i] = cos(y[i]);
    for (int64_t i = 0; i < n; ++i) y[i] = exp(y[i]) + 0.0 * (d[i] + e[i] + f[i]);
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) x[i] = expf(x[i]) + 0.0f * (a[i] + b[i] + c[i]);
#ifdef _OPENMP
    return 1;
#else
    (void)threads;
    return 0;
#endif
}
"""


class CompilerNotFoundError(SNNError, RuntimeError):
    """No usable C compiler: the message says what was tried and how to install one."""


class KernelBuildError(SNNError, RuntimeError):
    """The compiler rejected a generated source (a bug: the message holds its diagnostics)."""


class KernelCacheError(SNNError, RuntimeError):
    """The cache directory cannot be created or written, or other users can write it (code
    loaded from it would run in this process): the message names it and :data:`CACHE_ENV`."""


@dataclass(frozen=True)
class Toolchain:
    """A working compiler and the flags it compiles kernels with.

    Attributes:
        command: the compiler command (program and leading arguments).
        version: the first line of ``--version``.
        flags: compiler flags (before the output and source).
        libraries: linker arguments (after the source).
        openmp: whether kernels run on several threads.
        vector_math: whether loops calling ``exp``, ``log``, ``sin``, ``cos`` vectorise.
        ident: a hash of everything above and of the CPU (part of every cached file name).
    """

    command: tuple[str, ...]
    version: str
    flags: tuple[str, ...]
    libraries: tuple[str, ...]
    openmp: bool
    vector_math: bool
    ident: str


_lock = threading.Lock()
_toolchains: dict[tuple[str, ...], Toolchain | Exception] = {}
_loaded: dict[str, ctypes.CDLL] = {}
_pruned: set[str] = set()  # cache directories this process pruned
_warned_group_writable: set[str] = set()


def reset() -> None:
    """Forget the detected toolchain and the loaded libraries of this process (tests)."""
    with _lock:
        _toolchains.clear()
        _loaded.clear()
        _pruned.clear()


def cache_dir() -> Path:
    """The cache directory (created on first use, private to the user).

    Raises:
        KernelCacheError: it cannot be created, is not a directory, belongs to another user or
            is writable by every user (a library loaded from it runs its initialisers in
            this process before any check of its contents). A group-writable directory (umask
            002) is used, with a warning logged once.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        path = Path(configured).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "snn-cpp"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise KernelCacheError(
            f"the kernel cache {str(path)!r} cannot be created ({exc}); set {CACHE_ENV} to a writable directory"
        ) from exc
    getuid = getattr(os, "getuid", None)
    if getuid is not None and (info.st_uid != getuid() or info.st_mode & stat.S_IWOTH):
        whose = "belongs to another user" if info.st_uid != getuid() else "can be written by every user"
        raise KernelCacheError(
            f"the kernel cache {str(path)!r} (mode {stat.filemode(info.st_mode)}, owner uid {info.st_uid}) {whose}, "
            f"and libraries loaded from it run in this process; make it yours and not world-writable "
            f"(chmod 700) or set {CACHE_ENV} to a private directory"
        )
    if getuid is not None and info.st_mode & stat.S_IWGRP and str(path) not in _warned_group_writable:
        _warned_group_writable.add(str(path))
        logger.warning(
            "snn-cpp: the kernel cache %s is writable by its group (mode %s); libraries loaded from it run in "
            "this process (chmod g-w to keep it to yourself)", path, stat.filemode(info.st_mode),
        )
    return path


def compiler_command() -> tuple[str, ...]:
    """The compiler command to use, resolved on ``PATH``.

    Raises:
        CompilerNotFoundError: the configured program does not exist, or none is on ``PATH``.
    """
    for variable in (COMPILER_ENV, "CC"):
        configured = os.environ.get(variable)
        if configured is None or not configured.strip():
            continue
        try:
            words = shlex.split(configured)
        except ValueError as exc:
            raise CompilerNotFoundError(
                f"${variable}: expected a compiler command (a program and its options, quoted as in a shell), "
                f"got {configured!r} ({exc}); {INSTALL_HINT}"
            ) from None
        program = shutil.which(words[0])
        if program is None:
            raise CompilerNotFoundError(
                f"the C compiler {words[0]!r} named by ${variable} was not found; {INSTALL_HINT}"
            )
        return (program, *words[1:])
    for name in ("cc", "gcc", "clang"):
        program = shutil.which(name)
        if program is not None:
            return (program,)
    raise CompilerNotFoundError(f"no C compiler found on PATH (looked for cc, gcc, clang); {INSTALL_HINT}")


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU model and feature flags where readable."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            seen = set()
            for line in handle:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU implementer", "CPU part") and key not in seen:
                    seen.add(key)
                    parts.append(line.strip())
    except OSError:
        pass
    return "\n".join(parts)


def _candidate_flags() -> list[tuple[tuple[str, ...], tuple[str, ...], bool, bool]]:
    """``(flags, libraries, openmp, vector_math)`` to try, best first."""
    # glibc's libmvec: x86-64 since glibc 2.22, AArch64 since 2.38 (the probe finds out)
    vector_math = platform.system() == "Linux" and platform.machine() in ("x86_64", "aarch64")
    candidates: list[tuple[tuple[str, ...], tuple[str, ...], bool, bool]] = []
    for native in (True, False):
        arch = ("-march=native",) if native else ()
        for openmp in (True, False):
            omp = ("-fopenmp",) if openmp else ()
            if vector_math:
                candidates.append(((*_BASE_FLAGS, *arch, *omp, "-DSNN_LIBMVEC"), ("-lmvec", "-lm"), openmp, True))
            candidates.append(((*_BASE_FLAGS, *arch, *omp), ("-lm",), openmp, False))
    return candidates


def _version(command: tuple[str, ...]) -> str:
    try:
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompilerNotFoundError(f"the C compiler {command[0]!r} cannot be run ({exc}); {INSTALL_HINT}") from exc
    lines = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not lines:
        raise CompilerNotFoundError(
            f"the C compiler {command[0]!r} failed on --version (exit {done.returncode}); {INSTALL_HINT}"
        )
    return lines[0]


def toolchain() -> Toolchain:
    """The compiler and flags kernels are built with, detected once per process and compiler.

    Tries the flag sets of :func:`_candidate_flags` in order on a small test library (cached
    like every kernel, so later processes only load it) and keeps the first that compiles,
    loads and runs.

    Raises:
        CompilerNotFoundError: no compiler, or none of the flag sets works.
    """
    command = compiler_command()
    with _lock:
        found = _toolchains.get(command)
    if isinstance(found, Toolchain):
        return found
    if isinstance(found, Exception):
        raise found
    try:
        version = _version(command)
        cpu = _cpu_identity()
        errors = []
        result = None
        for flags, libraries, openmp, vector_math in _candidate_flags():
            ident_text = "\n".join([*command, version, *flags, *libraries, str(ABI_VERSION)])
            if "-march=native" in flags:
                ident_text += "\n" + cpu
            ident = hashlib.sha256(ident_text.encode()).hexdigest()[:16]
            candidate = Toolchain(command, version, flags, libraries, openmp, vector_math, ident)
            try:
                library = load_library(_PROBE_SOURCE, None, candidate)
                values = (ctypes.c_float * 16)(*([1.0] * 16))
                doubles = (ctypes.c_double * 16)(*([1.0] * 16))
                library.snn_probe.restype = ctypes.c_int
                library.snn_probe.argtypes = (ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
                library.snn_probe(16, ctypes.cast(values, ctypes.c_void_p), ctypes.cast(doubles, ctypes.c_void_p), 1)
                if abs(values[15] - 2.718281828) > 1e-5 or abs(doubles[15] - 2.718281828459045) > 1e-12:
                    raise KernelBuildError(f"the test library computed exp(1) = {values[15]}, {doubles[15]}")
            except (KernelBuildError, OSError) as exc:
                errors.append(f"{' '.join(flags)}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
                continue
            result = candidate
            break
        if result is None:
            raise CompilerNotFoundError(
                f"the C compiler {command[0]!r} ({version}) cannot build a shared library here: "
                + "; ".join(errors[-2:]) + f"; {INSTALL_HINT}"
            )
    except CompilerNotFoundError as exc:
        with _lock:
            _toolchains[command] = exc
        raise
    with _lock:
        _toolchains[command] = result
    if not result.openmp:
        logger.info("snn-cpp: %s builds without OpenMP: kernels run on one thread", command[0])
    return result


def probe() -> str | None:
    """``None`` when kernels can be compiled and loaded here, else the reason and the install hint
    (no compiler, or a cache directory that cannot be used or written)."""
    try:
        toolchain()
        directory = cache_dir()
    except (CompilerNotFoundError, KernelCacheError) as exc:
        return str(exc)
    except OSError as exc:
        return f"the kernel cache is not usable ({exc}); set {CACHE_ENV} to a writable directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the kernel cache {str(directory)!r} is not writable; set {CACHE_ENV} to a writable directory"
    return None


# ---------------------------------------------------------------------------------------------
# the cache


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def _open_checked(path: Path, checksum: str | None, ident: str | None) -> ctypes.CDLL | None:
    """The library at ``path`` if its checksum (when given) and source id (when given) match."""
    if checksum is not None and _sha256(path) != checksum:
        return None
    library = ctypes.CDLL(str(path))
    if ident is not None:
        function = getattr(library, "snn_source_id", None)
        if function is None:
            return None
        function.restype = ctypes.c_char_p
        function.argtypes = ()
        if function().decode() != ident:
            return None
    return library


def _try_cached(path: Path, ident: str | None) -> ctypes.CDLL | None:
    sums = path.with_name(path.name + ".sha256")
    try:
        checksum = sums.read_text().strip()
        if not path.is_file() or len(checksum) != 64:
            return None
        return _open_checked(path, checksum, ident)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _compile(source: str, path: Path, chain: Toolchain, ident: str | None) -> ctypes.CDLL:
    source_path = path.with_suffix(".c")
    _write_atomic(source_path, source.encode())
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.so")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        command = [*chain.command, *chain.flags, "-o", str(tmp), str(source_path), *chain.libraries]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise KernelBuildError(f"compiling {source_path} took more than {COMPILE_TIMEOUT:.0f} s") from exc
        except OSError as exc:
            raise CompilerNotFoundError(f"the C compiler {chain.command[0]!r} cannot be run ({exc}); {INSTALL_HINT}") from exc
        if done.returncode != 0:
            diagnostics = (done.stderr or done.stdout).strip()[-4000:]
            raise KernelBuildError(f"{' '.join(command)} failed (exit {done.returncode}):\n{diagnostics}")
        checksum = _sha256(tmp)
        try:
            library = _open_checked(tmp, None, ident)
        except OSError as exc:  # an undefined symbol, a cache on a noexec mount ...
            raise KernelBuildError(f"the library built from {source_path} cannot be loaded: {exc}") from exc
        if library is None:
            raise KernelBuildError(f"the library built from {source_path} does not carry its source id")
        os.replace(tmp, path)
        _write_atomic(path.with_name(path.name + ".sha256"), (checksum + "\n").encode())
        logger.debug("snn-cpp: compiled %s in %.2f s", path.name, time.perf_counter() - start)
        return library
    finally:
        with _suppress_os_error():
            tmp.unlink()


def load_library(source: str, ident: str | None, chain: Toolchain | None = None) -> ctypes.CDLL:
    """The library compiled from ``source``: from this process, from the cache, or built now.

    Args:
        source: C source.
        ident: the source id the library must return from ``snn_source_id()`` (``None``: the
            source has no such function; the file name still derives from its hash).
        chain: the toolchain (default: :func:`toolchain`).

    Raises:
        CompilerNotFoundError: no usable compiler.
        KernelBuildError: the compiler rejected the source.
        KernelCacheError: the cache directory is not usable.
    """
    chain = toolchain() if chain is None else chain
    digest = hashlib.sha256(source.encode()).hexdigest()[:32]
    name = f"{digest}-{chain.ident}"
    with _lock:
        found = _loaded.get(name)
    if found is not None:
        return found
    directory = cache_dir()
    path = directory / f"{name}.so"
    library = _try_cached(path, ident)
    compiled = False
    if library is None:
        try:
            # a lock on the file the path names once held (pruning may remove it while we wait)
            with exclusive_lock(directory / f"{name}.lock"):
                library = _try_cached(path, ident)  # another process may have built it meanwhile
                if library is None:
                    library = _compile(source, path, chain, ident)
                    compiled = True
        except (PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise KernelCacheError(
                f"the kernel cache {str(directory)!r} is not writable ({exc}); set {CACHE_ENV} to a writable directory"
            ) from exc
        except OSError as exc:  # a full disk, a quota, a file-size limit ...
            raise KernelCacheError(
                f"writing the kernel {path.name} into the cache {str(directory)!r} failed ({exc}); free space there "
                f"or set {CACHE_ENV} to another directory"
            ) from exc
    if not compiled:
        with _suppress_os_error():
            os.utime(path)  # used now: pruning keeps recently used libraries
    with _lock:
        library = _loaded.setdefault(name, library)
    if compiled:
        _prune_once(directory)
    return library


def _prune_once(directory: Path) -> None:
    """Prune the cache (:func:`snn_cpp.cache_pruning.prune_cache`) once per process and directory,
    after this process first compiled a library into it; housekeeping, so failures are only logged."""
    key = str(directory)
    with _lock:
        if key in _pruned:
            return
        _pruned.add(key)
    from snn_cpp.cache_pruning import prune_cache

    try:
        report = prune_cache(directory)
    except OSError as exc:
        logger.debug("snn-cpp: pruning the kernel cache %s failed: %s", directory, exc)
        return
    if report.removed:
        logger.debug(
            "snn-cpp: removed %d cache entries (%d bytes) from %s; %d left (%d bytes)",
            report.removed, report.freed_bytes, directory, report.kept, report.kept_bytes,
        )

