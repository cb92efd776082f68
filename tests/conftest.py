"""Shared set-up of the cross-package tests (tox environment ``all``).

- ``backend_device``: tests that take this argument are parametrised with every installed
  backend that can run here, paired with each device it serves that exists here: on a CPU-only
  machine ``torch``, the example plugin's ``example`` and, when ``TRITON_INTERPRET=1`` is set,
  ``triton`` on its CPU interpreter (CuPy needs a GPU). Each value is ``(backend, device)``.
- ``deadline``: a context manager factory failing a block that runs longer than ``seconds``
  (``TimeoutError``), so a hang is a test failure instead of a stuck suite.
- ``kernel_backend_device``: as ``backend_device`` plus the host emulations of GPU-only kernel
  sources that can run here (``cupy_host``: the CuPy backend's CUDA C compiled for the CPU by
  :mod:`snn_cupy.host`), registered with :func:`snn.plugins.temporary_plugin` for the test.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

# the tests' own helper modules (if_lif_plif.py) import by name
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def _devices_here() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


def runnable_backends() -> list[tuple[str, str]]:
    """``(backend, device)`` for every installed, available backend and each device it serves here."""
    from snn.plugins import get_registry

    pairs = []
    for name, info in get_registry().backends.items():
        if info.unavailable_reason() is not None:
            continue
        for device in _devices_here():
            if info.serves_device(device):
                pairs.append((name, device))
    return sorted(pairs, key=lambda p: (p[0] != "torch", p[0], p[1]))


#: Host emulations of GPU kernel sources: backend name -> (module, plugin class).
HOST_EMULATIONS: dict[str, tuple[str, str]] = {"cupy_host": ("snn_cupy.host", "HostPlugin")}


def _host_emulations() -> list[tuple[str, str]]:
    """``(name, "cpu")`` of each host emulation whose module imports and whose probe passes."""
    found = []
    for name, (module_name, _) in HOST_EMULATIONS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if module.probe() is None:
            found.append((name, "cpu"))
    return found


def pytest_configure(config: pytest.Config) -> None:
    # Triton's CPU interpreter evaluates kernels with numpy, which warns on inf - inf, 0 * inf
    # and guarded divisions; those are the inputs some of these tests feed on purpose.
    for message in ("invalid value encountered", "divide by zero encountered", "overflow encountered"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:RuntimeWarning:triton.runtime.interpreter")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_device" in metafunc.fixturenames:
        pairs = runnable_backends()
        metafunc.parametrize("backend_device", pairs, ids=[f"{b}-{d}" for b, d in pairs])
    if "kernel_backend_device" in metafunc.fixturenames:
        pairs = runnable_backends() + _host_emulations()
        metafunc.parametrize("kernel_backend_device", pairs, ids=[f"{b}-{d}" for b, d in pairs], indirect=True)


@pytest.fixture
def kernel_backend_device(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(backend, device)``; a host emulation is registered for the duration of the test."""
    backend, device = request.param
    if backend not in HOST_EMULATIONS:
        yield backend, device
        return
    from snn.plugins import temporary_plugin

    module_name, class_name = HOST_EMULATIONS[backend]
    plugin = getattr(importlib.import_module(module_name), class_name)()
    with temporary_plugin(plugin, name=backend):
        yield backend, device


@pytest.fixture
def deadline() -> Callable[[float], contextlib.AbstractContextManager[None]]:
    """``with deadline(seconds): ...`` raises ``TimeoutError`` if the block runs too long.

    Uses ``SIGALRM`` in the main thread (Python code, including Triton's interpreter, is
    interrupted); elsewhere it only measures and fails afterwards.
    """

    @contextlib.contextmanager
    def limit(seconds: float) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            import time

            start = time.monotonic()
            yield
            if time.monotonic() - start > seconds:
                raise TimeoutError(f"the block ran longer than {seconds} s")
            return

        def expire(signum: int, frame: object) -> None:
            raise TimeoutError(f"the block ran longer than {seconds} s (a hang?)")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return limit
