"""Source generation: the public ``kernel_sources`` API, caching, names and injection safety."""

from __future__ import annotations

import math
import re
import struct

import pytest
import torch

import snn_cupy
from snn import neuron, surrogate
from snn.kernels import NeuronConfig, SurrogateSpec
from snn_cupy._codegen import entry_name, literal
from snn_cupy.sources import (
    backward_kernel_source,
    config_sources,
    forward_kernel_source,
    neuron_config,
    surrogate_body,
)
from snn_cupy.templates import BackwardSpec, ForwardSpec, backward_source, forward_source

NAME = re.compile(r"^snn_(if|lif|plif)_(fwd_train|fwd_infer|bwd)_(f32|f16)_[0-9a-f]{16}$")


def _lif(**kwargs: object) -> NeuronConfig:
    base = dict(kind="lif", v_threshold=1.0, v_reset=0.0, detach_reset=False, decay_input=True, tau=2.0,
                surrogate=surrogate.Sigmoid().spec)
    base.update(kwargs)
    return NeuronConfig(**base)  # type: ignore[arg-type]


# -- kernel_sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("node_type", [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_sources_of_a_neuron(node_type: type, dtype: torch.dtype) -> None:
    node = node_type(step_mode="m", surrogate_function=surrogate.ATan())
    sources = snn_cupy.kernel_sources(node, dtype)
    assert len(sources) == 3
    kind = {neuron.IFNode: "if", neuron.LIFNode: "lif", neuron.ParametricLIFNode: "plif"}[node_type]
    tag = "f32" if dtype == torch.float32 else "f16"
    roles = sorted(NAME.match(name).group(2) for name in sources)  # type: ignore[union-attr]
    assert roles == ["bwd", "fwd_infer", "fwd_train"]
    for name, text in sources.items():
        match = NAME.match(name)
        assert match is not None and match.group(1) == kind and match.group(3) == tag
        entries = re.findall(r'extern "C" __global__ void __launch_bounds__\(256\) (\w+)\(', text)
        assert entries == [f"{name}_v1"] + ([f"{name}_v2"] if dtype == torch.float16 else [])
        assert "#include" not in text  # no CUDA header needed
    assert sources == config_sources(node.neuron_config(), dtype)


def test_kernel_sources_follow_the_neuron() -> None:
    a = neuron.LIFNode(tau=2.0, step_mode="m")
    b = neuron.LIFNode(tau=3.0, step_mode="m")
    c = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
    sa, sb, sc = (snn_cupy.kernel_sources(n, torch.float32) for n in (a, b, c))
    assert set(sa) != set(sb)
    # detach_reset and the surrogate shape only the backward kernel
    assert [k for k in sa if "_fwd_" in k] == [k for k in sc if "_fwd_" in k]
    assert [k for k in sa if "_bwd_" in k] != [k for k in sc if "_bwd_" in k]
    assert literal(1.0 / 3.0, "tau") in next(v for k, v in sb.items() if "_fwd_train_" in k)


def test_plif_decay_is_a_runtime_argument() -> None:
    a, b = neuron.ParametricLIFNode(init_tau=2.0), neuron.ParametricLIFNode(init_tau=5.0)
    assert snn_cupy.kernel_sources(a, torch.float16) == snn_cupy.kernel_sources(b, torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64, "float32"])
def test_kernel_sources_rejects_other_dtypes(dtype: object) -> None:
    with pytest.raises(TypeError, match="dtype"):
        snn_cupy.kernel_sources(neuron.IFNode(), dtype)


def test_kernel_sources_rejects_non_neurons() -> None:
    with pytest.raises(TypeError, match="neuron: expected"):
        snn_cupy.kernel_sources(torch.nn.Linear(2, 2), torch.float32)
    custom = neuron.IFNode(surrogate_function=lambda x: (x >= 0).float())
    with pytest.raises(TypeError, match="surrogate|no kernel configuration"):
        snn_cupy.kernel_sources(custom, torch.float32)


def test_surrogate_without_closed_form_is_refused() -> None:
    node = neuron.IFNode(surrogate_function=surrogate.PoissonPass())
    with pytest.raises(ValueError, match="closed-form"):
        snn_cupy.kernel_sources(node, torch.float32)


def test_neuron_config_matches_the_neuron() -> None:
    node = neuron.LIFNode(tau=4.0, decay_input=False, v_threshold=0.5, v_reset=None, detach_reset=True)
    config = neuron_config(node)
    assert (config.kind, config.tau, config.decay_input, config.v_threshold, config.v_reset) == (
        "lif", 4.0, False, 0.5, None
    )


# -- caching -----------------------------------------------------------------------------------


def test_sources_are_cached_per_configuration() -> None:
    config = _lif()
    assert forward_kernel_source(config, torch.float32, True) is forward_kernel_source(_lif(), torch.float32, True)
    assert backward_kernel_source(config, torch.float16) is backward_kernel_source(_lif(), torch.float16)
    assert backward_kernel_source(config, torch.float16) is not backward_kernel_source(config, torch.float32)
    assert surrogate_body(config.surrogate) is surrogate_body(surrogate.Sigmoid().spec)


def test_distinct_configurations_give_distinct_names() -> None:
    names = set()
    count = 0
    for v_reset in (0.0, -0.3, None):
        for detach in (False, True):
            for decay_input in (False, True):
                for alpha in (2.0, 4.0):
                    config = _lif(v_reset=v_reset, detach_reset=detach, decay_input=decay_input,
                                  surrogate=surrogate.Sigmoid(alpha=alpha).spec)
                    names.add(backward_kernel_source(config, torch.float32).name)
                    count += 1
    assert len(names) == count


# -- numbers and names in source -------------------------------------------------------------


def _hex_literals(text: str) -> list[float]:
    return [float.fromhex(m) for m in re.findall(r"\((-?0x[0-9a-f.]+p[+-]\d+)f\)", text)]


def test_numbers_are_exact_float32_literals() -> None:
    config = _lif(v_threshold=0.1, v_reset=-0.3, tau=3.0)
    text = forward_kernel_source(config, torch.float32, True).source
    values = _hex_literals(text)

    def f32(x: float) -> float:
        return struct.unpack("f", struct.pack("f", x))[0]

    assert f32(0.1 - (-0.3)) in values  # the threshold in the shifted frame
    assert f32(-0.3) in values
    assert f32(1.0 / 3.0) in values
    assert all(v == f32(v) for v in values)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e39])
def test_non_finite_or_unrepresentable_numbers_are_refused(bad: float) -> None:
    spec = ForwardSpec("lif", True, bad, 0.0, True, 2.0, "f32", True)
    with pytest.raises(ValueError, match="v_threshold"):
        forward_source(spec)
    spec = ForwardSpec("lif", True, 1.0, bad, True, 2.0, "f32", True)
    with pytest.raises(ValueError, match="v_reset"):
        forward_source(spec)
    with pytest.raises(ValueError, match="tau"):
        forward_source(ForwardSpec("lif", True, 1.0, 0.0, True, bad if bad != 1e39 else -bad, "f32", True))


def test_non_finite_surrogate_parameters_are_refused() -> None:
    for value in (math.inf, math.nan):
        with pytest.raises(ValueError):
            surrogate_body(SurrogateSpec("Sigmoid", (("alpha", value),)))
    with pytest.raises(ValueError):  # a surrogate's own range check (QPseudoSpike needs alpha > 1)
        surrogate_body(SurrogateSpec("QPseudoSpike", (("alpha", 0.5),)))


def test_names_are_not_user_controlled() -> None:
    hostile = 'Sigmoid"); } __global__ void evil() { //'
    with pytest.raises(ValueError, match="unknown surrogate"):
        surrogate_body(SurrogateSpec(hostile, (("alpha", 4.0),)))
    with pytest.raises(ValueError, match="kind"):
        entry_name("lif; evil()", "bwd", "f32", "")
    with pytest.raises(ValueError, match="role"):
        entry_name("lif", "bwd evil", "f32", "")
    with pytest.raises(ValueError, match="dtype_tag"):
        entry_name("lif", "bwd", "f64", "")
    with pytest.raises(ValueError, match="kind"):
        forward_source(ForwardSpec("lif\n#include <x>", True, 1.0, 0.0, True, 2.0, "f32", True))
    with pytest.raises(ValueError, match="dtype_tag"):
        forward_source(ForwardSpec("lif", True, 1.0, 0.0, True, 2.0, "f32 evil", True))
    with pytest.raises(TypeError, match="v_threshold"):
        forward_source(ForwardSpec("lif", True, "1.0); evil(", 0.0, True, 2.0, "f32", True))  # type: ignore[arg-type]


def test_only_fixed_identifiers_in_source() -> None:
    """Every identifier in a generated source comes from the templates, the preamble or the hash."""
    config = NeuronConfig("plif", 0.7, -0.2, True, False, None, surrogate.S2NN().spec)
    text = backward_kernel_source(config, torch.float16).source
    template_text = backward_kernel_source(
        NeuronConfig("plif", 1.0, 0.0, False, True, None, surrogate.Sigmoid().spec), torch.float32
    ).source
    strip = re.compile(r"0x[0-9a-fA-F.]+p[+-]\d+f|\bsnn_\w+_[0-9a-f]{16}(_v[12])?\b|\bsnn_surrogate_[0-9a-f]{16}\b|"
                       r"SNN_SURROGATE_[0-9A-F]{16}")
    words = set(re.findall(r"[A-Za-z_]\w*", strip.sub(" ", text)))
    allowed = set(re.findall(r"[A-Za-z_]\w*", strip.sub(" ", template_text))) | {
        "expf", "fmaxf", "fminf", "logf", "fabsf", "sqrtf", "cosf", "unsigned", "int",
    }
    assert words <= allowed, words - allowed


def test_backward_spec_surrogate_body_is_an_expression() -> None:
    spec = BackwardSpec("if", True, 1.0, 0.0, False, False, None, surrogate_body(surrogate.Erf().spec), "f32")
    text = backward_source(spec).source
    assert "return " + surrogate_body(surrogate.Erf().spec) + ";" in text
