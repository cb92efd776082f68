"""The plugin: registration, availability as ``snn doctor`` shows it, selection errors, imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch

import snn.plugins
import snn_cupy
from snn import doctor, neuron
from snn.errors import BackendUnavailableError, UnsupportedOperationError
from snn.kernels import NeuronConfig
from snn.surrogate import CLOSED_FORM_SURROGATES, Sigmoid
from snn_cupy import kernels, plugin
from snn_cupy import probe as probe_module

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the backend is available")


@pytest.fixture
def registry() -> Iterator[object]:
    snn.plugins.reset()
    yield snn.plugins.get_registry()
    snn.plugins.reset()


def test_registered_through_the_entry_point(registry: object) -> None:
    info = registry.backend("cupy")  # type: ignore[attr-defined]
    assert dict(info.kernels) == {
        ("if", "multi_step"): "snn_cupy.kernels:if_multi_step",
        ("lif", "multi_step"): "snn_cupy.kernels:lif_multi_step",
        ("plif", "multi_step"): "snn_cupy.kernels:plif_multi_step",
    }
    assert info.devices == frozenset({"cuda"})
    assert info.emulated_devices == frozenset()
    assert info.dtypes == frozenset({torch.float32, torch.float16})
    assert info.surrogates == frozenset(CLOSED_FORM_SURROGATES)
    assert len(info.surrogates) >= 15
    assert info.auto_priority == 5
    assert info.provenance.plugin == "cupy"
    assert (info.provenance.distribution, info.provenance.version) == ("snn-cupy", snn_cupy.__version__)
    assert info.probe is probe_module.probe
    assert not registry.failures  # type: ignore[attr-defined]


@no_gpu
def test_doctor_lists_the_backend_unavailable_with_its_reason(registry: object) -> None:
    report = doctor.collect()
    row = next(b for b in report["backends"] if b["name"] == "cupy")
    assert row["available"] is False
    assert row["reason"] == probe_module.probe()
    assert row["distribution"] == "snn-cupy"
    assert f"cupy (plugin cupy, snn-cupy 0.1.0): NOT AVAILABLE: {row['reason']}" in doctor.render_table(report)


@no_gpu
@pytest.mark.parametrize("node_type", [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode])
def test_selecting_the_backend_raises_with_the_reason(registry: object, node_type: type) -> None:
    node = node_type(step_mode="m")
    with pytest.raises(BackendUnavailableError) as info:
        node.backend = "cupy"
    assert info.value.reason == probe_module.probe()
    assert info.value.name == "cupy"
    assert node.backend == "torch"
    with pytest.raises(BackendUnavailableError):
        node_type(step_mode="m", backend="cupy")
    with pytest.raises(BackendUnavailableError):
        registry.kernel("cupy", node.neuron_kind, "multi_step")  # type: ignore[attr-defined]


def test_single_step_is_not_served(registry: object) -> None:
    node = neuron.LIFNode(step_mode="s")
    with pytest.raises(UnsupportedOperationError, match="cupy"):
        node.backend = "cupy"


@no_gpu
def test_auto_never_picks_an_unavailable_backend(registry: object) -> None:
    chosen = registry.auto_backend("lif", "multi_step", "cuda", torch.float16, "Sigmoid")  # type: ignore[attr-defined]
    assert chosen != "cupy"


def test_probe_error_is_chained_into_the_unavailable_error(registry: object, monkeypatch: pytest.MonkeyPatch) -> None:
    error = ImportError("libnvrtc.so.12: cannot open shared object file")

    def broken() -> None:
        raise error

    monkeypatch.setattr(probe_module, "_cupy_installed", lambda: True)
    monkeypatch.setattr(probe_module, "_import_cupy", broken)
    snn.plugins.reset()
    fresh = snn.plugins.get_registry()
    with pytest.raises(BackendUnavailableError, match="fails to import.*libnvrtc") as info:
        fresh.kernel("cupy", "lif", "multi_step")
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


# -- the kernel functions validate their inputs before touching CuPy ---------------------------


def _config(kind: str = "lif") -> NeuronConfig:
    return NeuronConfig(kind, 1.0, 0.0, False, True, 2.0 if kind == "lif" else None, Sigmoid().spec)


def test_kernels_refuse_cpu_tensors() -> None:
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="x_seq: the cupy kernels need a CUDA tensor"):
        kernels.lif_multi_step(x, torch.zeros(4), _config())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: kernels.lif_multi_step(torch.zeros(3, 4, dtype=torch.bfloat16), torch.zeros(4, dtype=torch.bfloat16),
                                        _config()),
         TypeError, "float32 and torch.float16"),
        (lambda: kernels.if_multi_step(torch.zeros(3, 4), torch.zeros(4), _config()), ValueError, "config.kind"),
        (lambda: kernels.lif_multi_step(torch.zeros(3, 4), torch.zeros(4), "lif"), TypeError, "config"),
        (lambda: kernels.lif_multi_step([1.0], torch.zeros(4), _config()), TypeError, "x_seq"),
        (lambda: kernels.plif_multi_step(torch.zeros(3, 4), torch.zeros(4), _config("plif")), TypeError, "w:"),
        (lambda: kernels.lif_multi_step(torch.zeros(3, 4), torch.zeros(4), _config(), w=torch.zeros(())),
         TypeError, "only PLIF"),
    ],
)
def test_kernels_reject_bad_arguments(call: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_plugin_constants() -> None:
    assert plugin.BACKEND_NAME == "cupy"
    assert plugin.DTYPES == (torch.float32, torch.float16)
    assert plugin.claimed_surrogates() == tuple(CLOSED_FORM_SURROGATES)
