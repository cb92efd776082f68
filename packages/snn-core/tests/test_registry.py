"""snn.registry: registrar validation, kernel caching, availability, 'auto' selection."""

from __future__ import annotations

import types

import pytest
import torch

import snn
from snn import plugins
from snn.errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    DuplicateRegistrationError,
    UnsupportedOperationError,
)
from snn.registry import BackendRegistrar, Provenance, Registry

KERNEL = "snn.kernels:NeuronConfig"  # any importable attribute stands in for a kernel here


def _plugin(**backends: dict) -> types.SimpleNamespace:
    @snn.hookimpl
    def snn_register_backends(register):
        for name, options in backends.items():
            register(name, **options)

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def _backend(**overrides):
    options = dict(
        kernels={("lif", "multi_step"): KERNEL},
        devices=("cpu",),
        dtypes=(torch.float32,),
        surrogates=("Sigmoid",),
        probe=lambda: None,
    )
    options.update(overrides)
    return options


def test_kernel_is_imported_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend()), name="fake-plugin") as registry:
        first = registry.kernel("fake", "lif", "multi_step")
        calls = []
        monkeypatch.setattr("snn.registry._import_target", lambda target: calls.append(target))
        assert registry.kernel("fake", "lif", "multi_step") is first
        assert calls == []
        info = registry.backend("fake")
        assert info.provenance.plugin == "fake-plugin"


def test_missing_kernel_lists_backends_that_have_it() -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        with pytest.raises(UnsupportedOperationError, match="'if'.*backends that do: .*'torch'"):
            registry.kernel("fake", "if", "multi_step")


def test_unavailable_backend_chains_probe_exception() -> None:
    def probe():
        raise OSError("driver too old")

    with plugins.temporary_plugin(_plugin(broken=_backend(probe=probe))) as registry:
        with pytest.raises(BackendUnavailableError, match="driver too old") as caught:
            registry.kernel("broken", "lif", "multi_step")
        assert isinstance(caught.value.__cause__, OSError)


def test_unknown_backend_lists_known_and_install_hint() -> None:
    registry = plugins.get_registry()
    with pytest.raises(BackendNotFoundError, match=r"'nope'.*known:.*'torch'"):
        registry.backend("nope")
    registry_without = Registry()
    with pytest.raises(BackendNotFoundError, match=r'pip install "snn-core\[cupy\]"'):
        registry_without.backend("cupy")


def test_check_kernel_inputs_names_what_is_missing() -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        registry.check_kernel_inputs("fake", "cpu", torch.float32, "Sigmoid")
        with pytest.raises(UnsupportedOperationError, match="surrogate 'ATan'"):
            registry.check_kernel_inputs("fake", "cpu", torch.float32, "ATan")
        with pytest.raises(UnsupportedOperationError, match="dtype torch.float64"):
            registry.check_kernel_inputs("fake", "cpu", torch.float64, "Sigmoid")
        with pytest.raises(UnsupportedOperationError, match="device 'cuda'"):
            registry.check_kernel_inputs("fake", "cuda", torch.float32, "Sigmoid")


def test_auto_prefers_priority_and_skips_emulated_and_unavailable() -> None:
    backends = {
        "fast": _backend(auto_priority=5),
        "faster_but_emulated": _backend(devices=(), emulated_devices=("cpu",), auto_priority=50),
        "fastest_but_down": _backend(auto_priority=99, probe=lambda: "no device"),
    }
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        assert registry.auto_backend("lif", "multi_step", "cpu", torch.float32, "Sigmoid") == "fast"
        assert registry.auto_backend("lif", "multi_step", "cpu", torch.float32, "ATan") == "torch"


def test_registrar_validates_arguments_and_refuses_duplicates() -> None:
    registry = Registry()
    register = BackendRegistrar(registry, Provenance("first"))
    register("b", **_backend())
    with pytest.raises(DuplicateRegistrationError, match="'first'.*'second'"):
        BackendRegistrar(registry, Provenance("second"))("b", **_backend())
    with pytest.raises(ValueError, match="kernels"):
        register("c", **_backend(kernels={("lif", "sometimes"): KERNEL}))
    with pytest.raises(ValueError, match="module:attribute"):
        register("d", **_backend(kernels={("lif", "multi_step"): "no_colon"}))
    with pytest.raises(TypeError, match="dtypes"):
        register("e", **_backend(dtypes=("float32",)))
    with pytest.raises(TypeError, match="name"):
        register(" spaced ", **_backend())


def test_designated_probe_error_gives_its_message_as_reason() -> None:
    from snn.errors import BackendProbeError

    def probe():
        try:
            raise OSError("libnvrtc.so: cannot open shared object file")
        except OSError as exc:
            raise BackendProbeError("NVRTC cannot be loaded") from exc

    with plugins.temporary_plugin(_plugin(odd=_backend(probe=probe))) as registry:
        assert registry.backend("odd").unavailable_reason() == "NVRTC cannot be loaded"
        with pytest.raises(BackendUnavailableError, match="cannot run here: NVRTC cannot be loaded$") as caught:
            registry.backend("odd").raise_if_unavailable()
        assert isinstance(caught.value.__cause__, OSError)
