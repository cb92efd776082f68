"""Registration, the probe's reasons, and typed errors for what the backend does not serve."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from snn_triton_test_helpers import SYNTHETIC_MODELS

import snn_triton
from snn import plugins
from snn.errors import BackendUnavailableError, UnsupportedOperationError
from snn.kernels import SurrogateSpec
from snn.neuron import LIFNode, ParametricLIFNode
from snn.surrogate import CLOSED_FORM_SURROGATES, ATan, PoissonPass, Sigmoid
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
    assert dict(info.kernels) == {"multi_step": "snn_triton.multistep:multi_step"}
    assert info.generates and info.models is None
    assert info.operations == frozenset(plugin.OPERATIONS)
    assert info.operations == registry.backend("torch").operations  # every operation snn.expr has
    assert info.surrogates is None and set(info.claimed_surrogates()) == set(CLOSED_FORM_SURROGATES)
    assert info.devices == frozenset({"cuda"})
    assert info.dtypes == frozenset({torch.float32, torch.float16, torch.bfloat16})
    assert info.auto_priority == 10
    assert info.provenance.distribution == "snn-triton"
    assert info.provenance.version == snn_triton.__version__
    assert info.emulated_devices == (frozenset({"cpu"}) if runtime.interpreter_enabled() else frozenset())
    assert not hasattr(plugin, "EXCLUDED_SURROGATES")
    # every registered model is served (models registered later too: nothing names them here)
    for name, item in registry.models.items():
        assert info.serves_model(item.implementation, "multi_step"), name
        assert "triton" in registry.backends_serving(item.implementation, "multi_step")
    reason = runtime.probe()
    if reason is None:
        assert registry.kernel("triton", "multi_step") is multistep.multi_step
    else:
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            registry.kernel("triton", "multi_step")


def test_a_third_party_model_is_served_without_naming_it(synthetic_models):
    info = synthetic_models.backend("triton")
    for name in SYNTHETIC_MODELS:
        assert info.serves_model(synthetic_models.model(name), "multi_step")


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
    config = registry.model("lif").config(Sigmoid().spec)
    chosen = registry.auto_backend(config, "multi_step", "cpu", torch.float32)
    # torch, or another backend that runs natively on the CPU (cpp, when snn-cpp is installed too)
    assert chosen != "triton" and "cpu" in registry.backend(chosen).devices


# -- typed errors ----------------------------------------------------------------------------


@pytest.fixture
def cpu_or_cuda(triton_ready):
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_neuron_with_surrogate_without_kernel_derivative(cpu_or_cuda):
    with pytest.raises(UnsupportedOperationError) as info:
        LIFNode(surrogate_function=PoissonPass(), backend="triton", step_mode="m")(torch.rand(3, 4, device=cpu_or_cuda))
    assert info.value.backend == "triton"
    assert "torch" in info.value.alternatives


def test_operation_not_rendered_is_refused_by_the_registry(monkeypatch, cpu_or_cuda):
    """A backend serves the models whose plans use only its operations: without ``sigmoid``,
    PLIF (and the Sigmoid surrogate) are refused with the missing operation named."""
    monkeypatch.setattr(plugin, "OPERATIONS", tuple(op for op in plugin.OPERATIONS if op != "sigmoid"))
    plugins.reset()
    try:
        registry = plugins.get_registry()
        assert not registry.backend("triton").serves_model(registry.model("plif"), "multi_step")
        node = ParametricLIFNode(surrogate_function=ATan(), backend="torch", step_mode="m")
        with pytest.raises(UnsupportedOperationError) as info:
            node.backend = "triton"
        assert "triton" not in info.value.alternatives and "torch" in info.value.alternatives
        config = registry.model("plif").config(ATan().spec)
        x = torch.rand(3, 4, device=cpu_or_cuda)
        with pytest.raises(UnsupportedOperationError, match=r"neuron model 'plif'.*\['sigmoid'\]"):
            multistep.multi_step(x, (torch.zeros(4, device=cpu_or_cuda),), config,
                                 learnables=(torch.zeros((), device=cpu_or_cuda),))
        config = registry.model("lif").config(Sigmoid().spec)
        with pytest.raises(UnsupportedOperationError, match="surrogate 'Sigmoid'"):
            multistep.multi_step(x, (torch.zeros(4, device=cpu_or_cuda),), config)
    finally:
        monkeypatch.undo()
        plugins.reset()


def test_neuron_runs_the_triton_kernel(cpu_or_cuda):
    x = torch.rand(6, 2, 5, device=cpu_or_cuda) * 1.5
    fast = LIFNode(tau=3.0, backend="triton", step_mode="m", store_v_seq=True)
    slow = LIFNode(tau=3.0, backend="torch", step_mode="m", store_v_seq=True)
    assert torch.equal(fast(x), slow(x))
    torch.testing.assert_close(fast.v_seq, slow.v_seq)


def config(name="lif", surrogate=None):
    return plugins.get_registry().model(name).config(surrogate or Sigmoid().spec)


def z(d, *shape, dtype=torch.float32):
    return torch.zeros(shape, device=d, dtype=dtype)


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), z(d, 4), "lif"), TypeError, "config"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 5),), config()),
         ValueError, r"states\['v'\]: expected shape \(4,\)"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 4, dtype=torch.half),), config()),
         TypeError, "expected dtype torch.float32"),
        (lambda d: multistep.multi_step(torch.rand(0, 4, device=d), (z(d, 4),), config()), ValueError, "T >= 1"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 4), z(d, 4)), config()),
         ValueError, "1 state"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 4),), config(), learnables=(z(d),)),
         ValueError, "learnable"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 4),), config("plif")),
         ValueError, "learnable"),
        (lambda d: multistep.multi_step(torch.arange(3, device=d), (z(d),), config()),
         TypeError, "x_seq: expected a floating-point tensor"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d).double(), (z(d, 4, dtype=torch.double),), config()),
         UnsupportedOperationError, r"dtype torch.float64.*'torch'"),
        (lambda d: multistep.multi_step(torch.rand(3, 4, device=d), (z(d, 4),),
                                        config(surrogate=SurrogateSpec("PoissonPass"))),
         UnsupportedOperationError, "surrogate 'PoissonPass'"),
    ],
    ids=["config", "state-shape", "state-dtype", "empty-T", "state-count", "learnable-for-lif", "plif-without-w",
         "integer-x", "float64", "surrogate"],
)
def test_kernel_argument_errors(cpu_or_cuda, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(cpu_or_cuda)


def test_cpu_tensor_without_interpreter(monkeypatch, triton_ready):
    monkeypatch.setattr(multistep, "interpreter_enabled", lambda: False)
    with pytest.raises(UnsupportedOperationError, match="device 'cpu'") as info:
        multistep.multi_step(torch.rand(3, 4), (torch.zeros(4),), config())
    assert "torch" in info.value.alternatives
