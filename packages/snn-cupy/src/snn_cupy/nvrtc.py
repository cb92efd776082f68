"""Compile kernel sources with NVRTC without a GPU (checks, tests and diagnostics).

NVRTC turns CUDA C into PTX (and, given a real architecture, into a cubin through its built-in
ptxas) on any machine where the library can be loaded; no device and no driver are needed.
The runtime path on a GPU compiles through :class:`cupy.RawModule` instead.

The library is looked up through CuPy's own bindings (``cupy_backends.cuda.libs.nvrtc``, which
find the ``nvidia-cuda-nvrtc-cu12`` wheel or a CUDA toolkit) and, when CuPy is absent, with
:mod:`ctypes` in the NVIDIA wheels, ``CUDA_PATH`` / ``CUDA_HOME``, ``/usr/local/cuda`` and the
system library path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["NvrtcNotFoundError", "NvrtcCompileError", "Compiled", "find_nvrtc", "compile_source"]


class NvrtcNotFoundError(RuntimeError):
    """No NVRTC library can be loaded on this machine."""


class NvrtcCompileError(RuntimeError):
    """NVRTC rejected a source.

    Attributes:
        log: the compiler log.
    """

    def __init__(self, message: str, log: str) -> None:
        self.log = log
        super().__init__(f"{message}\n{log}")


@dataclass(frozen=True)
class Compiled:
    """The result of one compilation.

    Attributes:
        ptx: the PTX text.
        cubin: the cubin bytes when a real architecture (``sm_XX``) was requested, else ``None``.
        log: the compiler log (warnings).
    """

    ptx: str
    cubin: bytes | None
    log: str


class _Backend:
    """Minimal NVRTC interface: ``version`` and ``compile``."""

    description = ""

    def version(self) -> tuple[int, int]:
        raise NotImplementedError

    def compile(self, source: str, name: str, options: Sequence[str], cubin: bool) -> Compiled:
        raise NotImplementedError


class _CupyBackend(_Backend):
    def __init__(self, module: Any) -> None:
        self._nvrtc = module
        self.description = "NVRTC through cupy_backends.cuda.libs.nvrtc"
        module.getVersion()

    def version(self) -> tuple[int, int]:
        major, minor = self._nvrtc.getVersion()
        return int(major), int(minor)

    def compile(self, source: str, name: str, options: Sequence[str], cubin: bool) -> Compiled:
        nvrtc = self._nvrtc
        program = nvrtc.createProgram(source, name, [], [])
        try:
            try:
                nvrtc.compileProgram(program, list(options))
            except Exception as exc:
                raise NvrtcCompileError(f"NVRTC failed to compile {name}: {exc}", _text(nvrtc.getProgramLog(program))) from exc
            log = _text(nvrtc.getProgramLog(program))
            ptx = _text(nvrtc.getPTX(program))
            binary = bytes(nvrtc.getCUBIN(program)) if cubin else None
            return Compiled(ptx, binary, log)
        finally:
            nvrtc.destroyProgram(program)


class _CtypesBackend(_Backend):
    def __init__(self, path: str) -> None:
        self._lib = ctypes.CDLL(path)
        self.description = f"NVRTC loaded from {path}"
        self.version()

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            self._lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            message = self._lib.nvrtcGetErrorString(ctypes.c_int(status)).decode()
            raise RuntimeError(f"{what} failed: {message} ({status})")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def _fetch(self, program: ctypes.c_void_p, size_fn: str, get_fn: str) -> bytes:
        size = ctypes.c_size_t()
        self._check(getattr(self._lib, size_fn)(program, ctypes.byref(size)), size_fn)
        buffer = ctypes.create_string_buffer(size.value)
        self._check(getattr(self._lib, get_fn)(program, buffer), get_fn)
        return buffer.raw[: size.value]

    def compile(self, source: str, name: str, options: Sequence[str], cubin: bool) -> Compiled:
        program = ctypes.c_void_p()
        self._check(
            self._lib.nvrtcCreateProgram(
                ctypes.byref(program), source.encode(), name.encode(), 0, None, None
            ),
            "nvrtcCreateProgram",
        )
        try:
            encoded = [o.encode() for o in options]
            array = (ctypes.c_char_p * len(encoded))(*encoded)
            status = self._lib.nvrtcCompileProgram(program, len(encoded), array)
            log = _text(self._fetch(program, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog"))
            if status != 0:
                raise NvrtcCompileError(f"NVRTC failed to compile {name} (status {status})", log)
            ptx = _text(self._fetch(program, "nvrtcGetPTXSize", "nvrtcGetPTX"))
            binary = self._fetch(program, "nvrtcGetCUBINSize", "nvrtcGetCUBIN") if cubin else None
            return Compiled(ptx, binary, log)
        finally:
            self._lib.nvrtcDestroyProgram(ctypes.byref(program))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("utf-8", errors="replace")
    return str(value).rstrip("\0")


def _candidate_paths() -> list[str]:
    """Places where a libnvrtc may live, most specific first."""
    paths: list[str] = []
    for package in ("nvidia.cuda_nvrtc", "nvidia.cu13", "nvidia.cu12"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            paths += sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")))
    for variable in ("CUDA_PATH", "CUDA_HOME"):
        home = os.environ.get(variable)
        if home:
            paths += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    paths += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    found = ctypes.util.find_library("nvrtc")
    if found:
        paths.append(found)
    return [p for p in paths if "builtins" not in os.path.basename(p) and ".alt." not in os.path.basename(p)]


@lru_cache(maxsize=2)
def find_nvrtc(prefer_cupy: bool = True) -> _Backend:
    """A loadable NVRTC.

    Args:
        prefer_cupy: try CuPy's bindings before :mod:`ctypes`.

    Raises:
        NvrtcNotFoundError: none can be loaded (the message lists what was tried).
    """
    tried: list[str] = []
    if prefer_cupy:
        try:
            from cupy_backends.cuda.libs import nvrtc as cupy_nvrtc

            return _CupyBackend(cupy_nvrtc)
        except Exception as exc:  # ImportError without CuPy, or a library load failure
            tried.append(f"cupy_backends ({type(exc).__name__}: {exc})")
    for path in _candidate_paths():
        try:
            return _CtypesBackend(path)
        except OSError as exc:
            tried.append(f"{path} ({exc})")
    raise NvrtcNotFoundError(
        "no NVRTC library found; install it with `pip install nvidia-cuda-nvrtc-cu12` "
        "(or a CUDA toolkit). Tried: " + ("; ".join(tried) or "nothing")
    )


def compile_source(
    source: str, name: str = "snn_cupy.cu", *, arch: str = "compute_75", options: Sequence[str] = ()
) -> Compiled:
    """Compile ``source`` with NVRTC (no GPU needed).

    Args:
        source: CUDA C source.
        name: the file name shown in diagnostics.
        arch: a virtual (``compute_XX``: PTX only) or real (``sm_XX``: PTX and cubin) architecture.
        options: extra NVRTC options.

    Returns:
        The PTX, the cubin for a real architecture, and the log.

    Raises:
        NvrtcNotFoundError: NVRTC cannot be loaded.
        NvrtcCompileError: the source does not compile (the log is attached).
        ValueError: ``arch`` is neither ``compute_XX`` nor ``sm_XX``.
    """
    if not (arch.startswith(("compute_", "sm_")) and arch.split("_", 1)[1].isalnum()):
        raise ValueError(f"arch: expected 'compute_XX' or 'sm_XX', got {arch!r}")
    backend = find_nvrtc()
    return backend.compile(source, name, [f"--gpu-architecture={arch}", *options], arch.startswith("sm_"))
