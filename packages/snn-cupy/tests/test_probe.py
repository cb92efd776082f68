"""The probe tells apart: not installed, no CUDA device, and CuPy broken here (cause chained)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from snn_cupy import probe as probe_module
from snn_cupy.probe import INSTALL_HINT, CupyProbeError, probe


class _CudaError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _FakeArray:
    def __init__(self, value: float) -> None:
        self.value = value

    def get(self) -> list[float]:
        return [self.value]


def _fake_cupy(count: Any = 1, kernel_result: float = 2.0, compile_error: Exception | None = None) -> Any:
    def get_device_count() -> int:
        if isinstance(count, Exception):
            raise count
        return count

    out = _FakeArray(0.0)

    class RawModule:
        def __init__(self, code: str, backend: str) -> None:
            assert backend == "nvrtc" and "snn_cupy_probe" in code
            if compile_error is not None:
                raise compile_error

        def get_function(self, name: str) -> Any:
            def kernel(grid: tuple[int], block: tuple[int], args: tuple[Any, ...]) -> None:
                out.value = kernel_result

            return kernel

    return SimpleNamespace(
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=get_device_count)),
        RawModule=RawModule,
        zeros=lambda shape, dtype: out,
        full=lambda shape, value, dtype: _FakeArray(value),
        float32="float32",
        uint16="uint16",
    )


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend CuPy is installed; returns a setter for the fake module."""
    monkeypatch.setattr(probe_module, "_cupy_installed", lambda: True)
    monkeypatch.setattr(probe_module, "_torch_cuda_available", lambda: True)

    def use(fake: Any) -> None:
        monkeypatch.setattr(probe_module, "_import_cupy", lambda: fake)

    return use


def test_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_cupy_installed", lambda: False)
    assert probe() == 'cupy is not installed: pip install "snn-cupy[cuda12]"'
    assert INSTALL_HINT == 'pip install "snn-cupy[cuda12]"'


def test_installed_but_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_cupy_installed", lambda: True)
    error = ImportError("libcudart.so.12: cannot open shared object file")

    def broken() -> None:
        raise error

    monkeypatch.setattr(probe_module, "_import_cupy", broken)
    with pytest.raises(CupyProbeError, match="fails to import.*libcudart") as info:
        probe()
    assert info.value.__cause__ is error


def test_no_device_visible(installed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    installed(_fake_cupy(count=_CudaError(100, "cudaErrorNoDevice: no CUDA-capable device is detected")))
    assert probe() == "cupy is installed but no CUDA device is visible (CUDA_VISIBLE_DEVICES='')"
    installed(_fake_cupy(count=0))
    assert "no CUDA device is visible" in probe()  # type: ignore[operator]  # probe() returns a reason here, not None


def test_no_driver(installed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_driver_library_loads", lambda: False)
    installed(_fake_cupy(count=_CudaError(35, "cudaErrorInsufficientDriver")))
    reason = probe()
    assert reason is not None and "no CUDA device" in reason and "no NVIDIA driver" in reason


def test_driver_too_old(installed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_driver_library_loads", lambda: True)
    error = _CudaError(35, "cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    installed(_fake_cupy(count=error))
    with pytest.raises(CupyProbeError, match="driver is too old") as info:
        probe()
    assert info.value.__cause__ is error


def test_other_runtime_error(installed: Any) -> None:
    error = _CudaError(999, "cudaErrorUnknown")
    installed(_fake_cupy(count=error))
    with pytest.raises(CupyProbeError, match="cannot query the CUDA devices") as info:
        probe()
    assert info.value.__cause__ is error


def test_torch_without_cuda(installed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_torch_cuda_available", lambda: False)
    installed(_fake_cupy(count=2))
    reason = probe()
    assert reason is not None and "PyTorch" in reason and "2 CUDA device" in reason


def test_nvrtc_cannot_compile(installed: Any) -> None:
    error = RuntimeError("CompileException: nvrtc: error: failed to load builtins")
    installed(_fake_cupy(compile_error=error))
    with pytest.raises(CupyProbeError, match="cannot compile and run a kernel with NVRTC") as info:
        probe()
    assert info.value.__cause__ is error


def test_wrong_kernel_result(installed: Any) -> None:
    installed(_fake_cupy(kernel_result=0.0))
    with pytest.raises(CupyProbeError, match="instead of 2.0"):
        probe()


def test_everything_works(installed: Any) -> None:
    installed(_fake_cupy())
    assert probe() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_real_probe_on_this_machine() -> None:
    reason = probe()
    assert isinstance(reason, str) and reason, "without a GPU the probe must give a reason"
    assert "no CUDA device" in reason or "not installed" in reason or "PyTorch" in reason
