"""The plugin: registration, what it serves, availability as ``snn doctor`` shows it, selection
errors, argument checks and imports without CuPy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import snn.plugins
import snn_cupy
from snn import doctor, neuron
from snn.errors import BackendUnavailableError, UnsupportedOperationError
from snn.models import NeuronModel
from snn.surrogate import CLOSED_FORM_SURROGATES, Sigmoid
from snn_cupy import kernels, plugin, probe as probe_module

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the backend is available")


@pytest.fixture
def registry() -> Iterator[Any]:
    snn.plugins.reset()
    yield snn.plugins.get_registry()
    snn.plugins.reset()


def test_registered_through_the_entry_point(registry: Any) -> None:
    info = registry.backend("cupy")
    assert dict(info.kernels) == {"multi_step": "snn_cupy.kernels:multi_step"}  # one kernel, every model
    assert info.generates and info.models is None and info.surrogates is None
    assert info.operations == frozenset(plugin.OPERATIONS)
    assert info.devices == frozenset({"cuda"})
    assert info.emulated_devices == frozenset()
    assert info.dtypes == frozenset({torch.float32, torch.float16})
    assert info.claimed_surrogates() == tuple(CLOSED_FORM_SURROGATES)
    assert len(info.claimed_surrogates()) >= 15
    assert info.auto_priority == 5
    assert info.provenance.plugin == "cupy"
    assert (info.provenance.distribution, info.provenance.version) == ("snn-cupy", snn_cupy.__version__)
    assert info.probe is probe_module.probe
    assert not registry.failures
    assert not hasattr(plugin, "EXCLUDED_SURROGATES")


def test_operations_are_every_expression_operation() -> None:
    """The generator renders every operation of snn.expr (the torch backend's list)."""
    from snn.backends.torch import OPERATIONS as TORCH_OPERATIONS

    assert set(plugin.OPERATIONS) == set(TORCH_OPERATIONS)


def test_serves_every_model(registry: Any, models: Any, model: NeuronModel) -> None:
    """Every registered model (and the synthetic ones, by their plans), every variant, in
    multi-step mode; no single-step kernel (single steps run on torch)."""
    info = registry.backend("cupy")
    if model in models.registered():
        assert info.serves_model(model, "multi_step")
        assert "cupy" in registry.backends_serving(model, "multi_step")
        assert not info.serves_model(model, "single_step")
    for config in models.configs(model, Sigmoid().spec):
        assert info.serves_config(config)


def test_host_emulation_registers_like_the_backend(registry: Any) -> None:
    from snn_cupy.host import HostPlugin

    with snn.plugins.temporary_plugin(HostPlugin(), name="cupy_host") as with_host:
        host, real = with_host.backend("cupy_host"), with_host.backend("cupy")
        assert dict(host.kernels) == {"multi_step": "snn_cupy.host:multi_step"}
        assert (host.operations, host.dtypes) == (real.operations, real.dtypes)
        assert host.devices == frozenset() and host.emulated_devices == frozenset({"cpu"})


@no_gpu
def test_doctor_lists_the_backend_unavailable_with_its_reason(registry: Any) -> None:
    report = doctor.collect()
    row = next(b for b in report["backends"] if b["name"] == "cupy")
    assert row["available"] is False
    assert row["reason"] == probe_module.probe()
    assert row["distribution"] == "snn-cupy"
    assert f"cupy (plugin cupy, snn-cupy 0.1.0): NOT AVAILABLE: {row['reason']}" in doctor.render_table(report)


@no_gpu
@pytest.mark.parametrize("node_type", [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode])
def test_selecting_the_backend_raises_with_the_reason(registry: Any, node_type: type) -> None:
    node = node_type(step_mode="m")
    with pytest.raises(BackendUnavailableError) as info:
        node.backend = "cupy"
    assert info.value.reason == probe_module.probe()
    assert info.value.name == "cupy"
    assert node.backend == "torch"
    with pytest.raises(BackendUnavailableError):
        node_type(step_mode="m", backend="cupy")
    with pytest.raises(BackendUnavailableError):
        registry.kernel("cupy", "multi_step")


def test_single_step_mode_is_not_served(registry: Any) -> None:
    node = neuron.LIFNode(step_mode="s")
    with pytest.raises(UnsupportedOperationError, match="cupy"):
        node.backend = "cupy"


@no_gpu
def test_auto_never_picks_an_unavailable_backend(registry: Any) -> None:
    config = neuron.LIFNode(step_mode="m").neuron_config()
    assert registry.auto_backend(config, "multi_step", "cuda", torch.float16) != "cupy"


def test_probe_error_is_chained_into_the_unavailable_error(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    error = ImportError("libnvrtc.so.12: cannot open shared object file")

    def broken() -> None:
        raise error

    monkeypatch.setattr(probe_module, "_cupy_installed", lambda: True)
    monkeypatch.setattr(probe_module, "_import_cupy", broken)
    snn.plugins.reset()
    fresh = snn.plugins.get_registry()
    with pytest.raises(BackendUnavailableError, match="fails to import.*libnvrtc") as info:
        fresh.kernel("cupy", "multi_step")
    # a BackendProbeError's message is the reason and its own cause is chained directly
    assert "CupyProbeError" not in str(info.value)
    assert info.value.__cause__ is error


def test_plugin_and_kernels_import_without_cupy() -> None:
    """With CuPy unimportable the plugin registers, reports 'not installed' and sources still build."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["cupy"] = None
        sys.modules["cupy_backends"] = None
        import torch
        import snn_cupy, snn_cupy.plugin, snn_cupy.kernels, snn_cupy.sources
        from snn import neuron
        from snn.errors import BackendUnavailableError
        import snn.plugins
        reason = snn.plugins.get_registry().backend("cupy").unavailable_reason()
        assert reason == 'cupy is not installed: pip install "snn-cupy[cuda12]"', reason
        node = neuron.LIFNode(step_mode="m")
        try:
            node.backend = "cupy"
        except BackendUnavailableError as exc:
            assert exc.reason == reason
        else:
            raise AssertionError("no error")
        assert len(snn_cupy.kernel_sources(node, torch.float16)) == 3
        assert sys.modules["cupy"] is None
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_importing_the_plugin_imports_no_kernel_code() -> None:
    script = "import sys, snn_cupy.plugin; print(sorted(m for m in sys.modules if m.startswith(('snn_cupy', 'cupy'))))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "['snn_cupy', 'snn_cupy.plugin', 'snn_cupy.probe']"


# -- the kernel validates its inputs before touching CuPy -------------------------------------


def _config(model: str = "lif") -> Any:
    return snn.plugins.get_registry().model(model).config(Sigmoid().spec)


def test_kernel_refuses_cpu_tensors(registry: Any) -> None:
    with pytest.raises(UnsupportedOperationError, match="cupy.*device 'cpu'"):
        kernels.multi_step(torch.zeros(3, 4), (torch.zeros(4),), _config())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: kernels.multi_step(torch.zeros(3, 4), (torch.zeros(4),), "lif"), TypeError, "config"),
        (lambda: kernels.multi_step([1.0], (torch.zeros(4),), _config()), TypeError, "x_seq"),
        (lambda: kernels.multi_step(torch.zeros(3, 4), torch.zeros(4), _config()), TypeError, "states"),
        (lambda: kernels.multi_step(torch.zeros(3, 4), (torch.zeros(4), torch.zeros(4)), _config()), ValueError,
         "states"),
        (lambda: kernels.multi_step(torch.zeros(3, 4), (torch.zeros(4),), _config("plif")), ValueError, "learnables"),
        (lambda: kernels.multi_step(torch.zeros(3, 4), (torch.zeros(4),), _config(), learnables=(torch.zeros(()),)),
         ValueError, "learnables"),
        (lambda: kernels.multi_step(torch.zeros(0, 4), (torch.zeros(4),), _config()), ValueError, "T >= 1"),
    ],
)
def test_kernel_rejects_bad_arguments(registry: Any, call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_host_kernel_checks_dtype_and_device(host_executor: Any) -> None:
    """The same checks through an executor the registry does not know (tests' direct use)."""
    bf16 = torch.zeros(3, 4, dtype=torch.bfloat16)
    with pytest.raises(UnsupportedOperationError, match="bfloat16"):
        kernels.run_multi_step(bf16, (torch.zeros(4, dtype=torch.bfloat16),), _config(), executor=host_executor)
    with pytest.raises(ValueError, match="the cupy_host kernels need a tensor on 'cpu'"):
        kernels.run_multi_step(torch.zeros(3, 4, device="meta"), (torch.zeros(4, device="meta"),), _config(),
                               executor=host_executor)


def test_plugin_constants() -> None:
    assert plugin.BACKEND_NAME == "cupy"
    assert plugin.DTYPES == (torch.float32, torch.float16)
    assert plugin.KERNELS == {"multi_step": "snn_cupy.kernels:multi_step"}


def test_kernels_reached_directly_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calling the kernels without choosing the backend through a neuron: no CuPy, or no device,
    is the probe's reason as a BackendUnavailableError, not ModuleNotFoundError or CUDARuntimeError."""
    from snn.errors import BackendUnavailableError
    from snn.plugins import get_registry
    from snn_cupy import runtime

    monkeypatch.setattr(runtime, "_runtime_checked", [])
    info = get_registry().backend("cupy")
    probed = list(info._probe_result)
    info._probe_result[:] = [('cupy is not installed: pip install "snn-cupy[cuda12]"', None)]  # as the probe says it
    try:
        with pytest.raises(BackendUnavailableError, match=r'cupy is not installed: pip install "snn-cupy\[cuda12\]"'):
            runtime._cupy()
    finally:
        info._probe_result[:] = probed
    assert runtime._runtime_checked == []  # asked again next time
