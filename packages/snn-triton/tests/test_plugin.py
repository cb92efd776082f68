"""Registration, the probe's reasons, and typed errors for what the backend does not serve."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import snn_triton
from snn import plugins
from snn.errors import BackendUnavailableError, UnsupportedOperationError
from snn.kernels import NeuronConfig, SurrogateSpec
from snn.neuron import LIFNode
from snn.surrogate import CLOSED_FORM_SURROGATES, PoissonPass, Rect, Sigmoid
from snn_triton import multistep, plugin, runtime


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environment,
        timeout=120,
    )


def test_plugin_imports_without_triton_and_probe_says_how_to_install():
    result = run_python("""
        import sys
        sys.modules["triton"] = None  # make "import triton" fail
        import snn_triton.plugin as p
        print(p.probe())
        from snn.plugins import get_registry
        info = get_registry().backend("triton")
        print(info.unavailable_reason())
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == ['triton is not installed: pip install "snn-core[triton]"'] * 2


def test_importing_the_plugin_does_not_import_triton():
    result = run_python("""
        import sys
        import snn_triton, snn_triton.plugin
        print("triton" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_probe_without_cuda_or_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = runtime.probe()
    assert reason is not None and reason.startswith("no CUDA device")
    assert "TRITON_INTERPRET=1" in reason


def test_probe_with_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.probe() is None


def test_probe_with_broken_triton(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "triton":
            raise RuntimeError("libtriton.so: undefined symbol")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    reason = runtime.probe()
    assert "RuntimeError" in reason and "undefined symbol" in reason and "snn-core[triton]" in reason


def test_registration():
    registry = plugins.get_registry()
    info = registry.backend("triton")
    assert dict(info.kernels) == {
        ("if", "multi_step"): "snn_triton.multistep:if_multi_step",
        ("lif", "multi_step"): "snn_triton.multistep:lif_multi_step",
        ("plif", "multi_step"): "snn_triton.multistep:plif_multi_step",
    }
    assert info.devices == frozenset({"cuda"})
    assert info.dtypes == frozenset({torch.float32, torch.float16, torch.bfloat16})
    assert info.surrogates == frozenset(CLOSED_FORM_SURROGATES) and len(info.surrogates) >= 15
    assert info.auto_priority == 10
    assert info.provenance.distribution == "snn-triton"
    assert info.provenance.version == snn_triton.__version__
    assert info.emulated_devices == (frozenset({"cpu"}) if runtime.interpreter_enabled() else frozenset())
    reason = runtime.probe()
    if reason is None:
        assert registry.kernel("triton", "lif", "multi_step") is multistep.lif_multi_step
    else:
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            registry.kernel("triton", "lif", "multi_step")


def test_emulated_cpu_only_under_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    plugins.reset()
    try:
        info = plugins.get_registry().backend("triton")
        assert info.emulated_devices == frozenset()
        assert not info.serves_device("cpu")
    finally:
        monkeypatch.undo()
        plugins.reset()


def test_auto_never_picks_the_interpreter():
    registry = plugins.get_registry()
    assert registry.auto_backend("lif", "multi_step", "cpu", torch.float32, "Sigmoid") == "torch"


# -- typed errors ----------------------------------------------------------------------------


@pytest.fixture
def cpu_or_cuda(triton_ready):
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_neuron_with_surrogate_without_kernel_derivative(cpu_or_cuda):
    node = LIFNode(surrogate_function=PoissonPass(), backend="triton", step_mode="m")
    with pytest.raises(UnsupportedOperationError, match="PoissonPass") as info:
        node(torch.rand(3, 4, device=cpu_or_cuda))
    assert info.value.backend == "triton"
    assert "torch" in info.value.alternatives


def test_unclaimed_surrogate_is_refused_by_the_registry(monkeypatch, cpu_or_cuda):
    monkeypatch.setattr(plugin, "EXCLUDED_SURROGATES", frozenset({"Rect"}))
    plugins.reset()
    try:
        node = LIFNode(surrogate_function=Rect(), backend="triton", step_mode="m")
        with pytest.raises(UnsupportedOperationError) as info:
            node(torch.rand(3, 4, device=cpu_or_cuda))
        message = str(info.value)
        assert "surrogate 'Rect'" in message and "'torch'" in message and "'triton'" not in info.value.alternatives
    finally:
        monkeypatch.undo()
        plugins.reset()


def test_neuron_runs_the_triton_kernel(cpu_or_cuda):
    x = torch.rand(6, 2, 5, device=cpu_or_cuda) * 1.5
    fast = LIFNode(tau=3.0, backend="triton", step_mode="m", store_v_seq=True)
    slow = LIFNode(tau=3.0, backend="torch", step_mode="m", store_v_seq=True)
    assert torch.equal(fast(x), slow(x))
    torch.testing.assert_close(fast.v_seq, slow.v_seq)


def config(kind="lif", surrogate=None):
    return NeuronConfig(kind, 1.0, 0.0, False, True, 2.0 if kind == "lif" else None, surrogate or Sigmoid().spec)


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d), torch.zeros(4, device=d), config("if")),
         ValueError, "config.kind"),
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d), torch.zeros(5, device=d), config()),
         ValueError, r"v0: expected shape \(4,\)"),
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d), torch.zeros(4, device=d).half(), config()),
         TypeError, "v0: expected dtype torch.float32"),
        (lambda d: multistep.lif_multi_step(torch.rand(0, 4, device=d), torch.zeros(4, device=d), config()),
         ValueError, "T >= 1"),
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d), torch.zeros(4, device=d), config(),
                                            w=torch.zeros((), device=d)),
         TypeError, "only PLIF"),
        (lambda d: multistep.plif_multi_step(torch.rand(3, 4, device=d), torch.zeros(4, device=d), config("plif")),
         TypeError, "w: expected"),
        (lambda d: multistep.lif_multi_step(torch.arange(3, device=d), torch.zeros((), device=d), config()),
         TypeError, "x_seq: expected a floating-point tensor"),
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d).double(),
                                            torch.zeros(4, device=d).double(), config()),
         UnsupportedOperationError, r"dtype torch.float64.*'torch'"),
        (lambda d: multistep.lif_multi_step(torch.rand(3, 4, device=d), torch.zeros(4, device=d),
                                            config(surrogate=SurrogateSpec("PoissonPass"))),
         UnsupportedOperationError, "surrogate 'PoissonPass'"),
    ],
    ids=["kind", "v0-shape", "v0-dtype", "empty-T", "w-for-lif", "plif-without-w", "integer-x", "float64",
         "surrogate"],
)
def test_kernel_argument_errors(cpu_or_cuda, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(cpu_or_cuda)


def test_cpu_tensor_without_interpreter(monkeypatch, triton_ready):
    monkeypatch.setattr(multistep, "interpreter_enabled", lambda: False)
    with pytest.raises(UnsupportedOperationError, match="device 'cpu'") as info:
        multistep.lif_multi_step(torch.rand(3, 4), torch.zeros(4), config())
    assert "torch" in info.value.alternatives
