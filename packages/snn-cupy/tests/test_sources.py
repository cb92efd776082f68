"""Source generation: the public ``kernel_sources`` API, caching, names, literals and injection safety."""

from __future__ import annotations

import itertools
import math
import re
import struct
from typing import Any

import pytest
import torch

import snn_cupy
from snn import neuron, surrogate
from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronModel, State, SurrogateSpec, kernel_plan
from snn.neuron import IF_MODEL, LIF_MODEL, PLIF_MODEL
from snn_cupy._codegen import entry_name, literal
from snn_cupy.sources import (
    backward_kernel_source,
    config_sources,
    forward_kernel_source,
    neuron_config,
    surrogate_body,
)
from snn_cupy.templates import backward_source, forward_source

NAME = re.compile(r"^snn_(fwd_train|fwd_infer|bwd)_(f32|f16)_[0-9a-f]{16}$")
ENTRY = re.compile(r'extern "C" __global__ void __launch_bounds__\(256\) (\w+)\(')


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _hex_literals(text: str) -> list[float]:
    return [float.fromhex(m) for m in re.findall(r"\((-?0x[0-9a-f.]+p[+-]\d+)f\)", text)]


# -- kernel_sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("node_type", [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_sources_of_a_neuron(node_type: type, dtype: torch.dtype) -> None:
    node = node_type(step_mode="m", surrogate_function=surrogate.ATan())
    sources = snn_cupy.kernel_sources(node, dtype)
    assert len(sources) == 3
    tag = "f32" if dtype == torch.float32 else "f16"
    roles = sorted(NAME.match(name).group(1) for name in sources)  # type: ignore[union-attr]  # kernel names follow NAME by construction
    assert roles == ["bwd", "fwd_infer", "fwd_train"]
    for name, text in sources.items():
        match = NAME.match(name)
        assert match is not None and match.group(2) == tag
        assert ENTRY.findall(text) == [f"{name}_v1"] + ([f"{name}_v2"] if dtype == torch.float16 else [])
        assert "#include" not in text  # no CUDA header needed
    assert sources == config_sources(node.neuron_config(), dtype)
    assert sources == snn_cupy.kernel_sources(node.neuron_config(), dtype)  # a config works too


def test_kernel_sources_of_any_model(models: Any, model: NeuronModel) -> None:
    """Registered and synthetic models alike: three sources, each entry taking the pointers the
    plan needs (one per state, per learnable, per saved charged state) then ``n`` and ``steps``."""
    config = model.config(surrogate.Sigmoid().spec)
    plan = kernel_plan(config)
    m, n_p = len(model.states), len(model.learnables)
    train = forward_kernel_source(config, torch.float16, True)
    infer = forward_kernel_source(config, torch.float16, False)
    bwd = backward_kernel_source(config, torch.float16)
    assert len(train.params) == 1 + m + n_p + 1 + len(plan.saved_states) + 2 * m
    assert len(infer.params) == 1 + m + n_p + 1 + 2 * m
    assert len(bwd.params) == (1 + 2 * m + len(plan.saved_states) + plan.save_input
                               + len(plan.initial_states_needed) + n_p + 1 + m + n_p)
    for source in (train, infer, bwd):
        signature = source.source[source.source.index(source.entries[0][0]):].split("{", 1)[0]
        assert signature.count("__restrict__") == len(source.params)
        assert "const long long n" in signature and "const int steps" in signature
    assert ("x_seq" in bwd.params) == plan.save_input
    assert [p for p in train.params if p.startswith("saved_h")] == [f"saved_h{j}" for j in plan.saved_states]


def test_kernel_sources_follow_the_neuron() -> None:
    a = neuron.LIFNode(tau=2.0, step_mode="m")
    b = neuron.LIFNode(tau=3.0, step_mode="m")
    c = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
    d = neuron.LIFNode(tau=2.0, step_mode="m", surrogate_function=surrogate.Erf())
    sa, sb, sc, sd = (snn_cupy.kernel_sources(n, torch.float32) for n in (a, b, c, d))
    assert set(sa) != set(sb)
    # detach_reset and the surrogate shape only the backward kernel
    for other in (sc, sd):
        assert [k for k in sa if "_fwd_" in k] == [k for k in other if "_fwd_" in k]
        assert [k for k in sa if "_bwd_" in k] != [k for k in other if "_bwd_" in k]
    # LIF divides by tau, as SpikingJelly does (a product with 1 / tau rounds differently)
    assert literal(3.0, "tau") in next(v for k, v in sb.items() if "_fwd_train_" in k)


def test_learnable_values_are_runtime_arguments() -> None:
    a, b = neuron.ParametricLIFNode(init_tau=2.0), neuron.ParametricLIFNode(init_tau=5.0)
    assert snn_cupy.kernel_sources(a, torch.float16) == snn_cupy.kernel_sources(b, torch.float16)
    text = forward_kernel_source(a.neuron_config(), torch.float32, True).source
    assert "const float p0 = learn0[0];" in text


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64, "float32"])
def test_kernel_sources_rejects_other_dtypes(dtype: object) -> None:
    with pytest.raises(TypeError, match="dtype"):
        snn_cupy.kernel_sources(neuron.IFNode(), dtype)


def test_kernel_sources_rejects_non_neurons() -> None:
    with pytest.raises(TypeError, match="neuron: expected"):
        snn_cupy.kernel_sources(torch.nn.Linear(2, 2), torch.float32)
    custom = neuron.IFNode(surrogate_function=lambda x: (x >= 0).float())
    with pytest.raises(TypeError, match="no kernel"):
        snn_cupy.kernel_sources(custom, torch.float32)
    with pytest.raises(TypeError, match="config: expected"):
        forward_kernel_source("lif", torch.float32, True)  # type: ignore[arg-type]  # the wrong type is the point of the test


def test_neuron_config_matches_the_neuron() -> None:
    node = neuron.LIFNode(tau=4.0, decay_input=False, v_threshold=0.5, v_reset=None, detach_reset=True)
    config = neuron_config(node)
    assert config.model is LIF_MODEL
    assert (config["tau"], config["decay_input"], config["v_threshold"], config["v_reset"], config.detach_reset) == (
        4.0, False, 0.5, None, True
    )
    assert neuron_config(config) is config


# -- caching -----------------------------------------------------------------------------------


def test_sources_are_cached_per_configuration() -> None:
    config = LIF_MODEL.config(surrogate.Sigmoid().spec)
    again = LIF_MODEL.config(surrogate.Sigmoid().spec)
    assert forward_kernel_source(config, torch.float32, True) is forward_kernel_source(again, torch.float32, True)
    assert backward_kernel_source(config, torch.float16) is backward_kernel_source(again, torch.float16)
    assert backward_kernel_source(config, torch.float16) is not backward_kernel_source(config, torch.float32)
    assert surrogate_body(config.surrogate) is surrogate_body(surrogate.Sigmoid().spec)


def test_names_are_hashes_of_the_text() -> None:
    """Equal names exactly for equal texts. Configurations whose backward math differs get
    distinct sources; a detached hard reset at 0 and at -0.3 share the backward kernel (it reads
    only ``h``, not the reset potential), and every forward kernel ignores the surrogate."""
    sources = {}
    for v_reset in (0.0, -0.3, None):
        for detach in (False, True):
            for decay_input in (False, True):
                for alpha in (2.0, 4.0):
                    config = LIF_MODEL.config(surrogate.Sigmoid(alpha=alpha).spec, detach, v_reset=v_reset,
                                              decay_input=decay_input)
                    sources[(v_reset, detach, decay_input, alpha)] = backward_kernel_source(config, torch.float32)
    for a, b in itertools.combinations(sources.values(), 2):
        assert (a.name == b.name) == (a.source == b.source)
    attached = [s.name for (_, detach, _, _), s in sources.items() if not detach]
    assert len(set(attached)) == len(attached) == 12
    assert sources[(0.0, True, True, 2.0)].source == sources[(-0.3, True, True, 2.0)].source
    assert sources[(0.0, True, True, 2.0)].source != sources[(None, True, True, 2.0)].source


# -- numbers and names in source -------------------------------------------------------------


def test_numbers_are_exact_float32_literals() -> None:
    config = LIF_MODEL.config(surrogate.Sigmoid().spec, v_threshold=0.1, v_reset=-0.3, tau=3.0)
    text = forward_kernel_source(config, torch.float32, True).source
    values = _hex_literals(text)
    assert _f32(0.1) in values  # the threshold
    assert _f32(-0.3) in values
    assert _f32(3.0) in values  # tau: LIF divides by it
    assert all(v == _f32(v) for v in values)


@pytest.mark.parametrize("bad", [1e39, -1e39])
def test_numbers_beyond_float32_are_refused(bad: float) -> None:
    config = LIF_MODEL.config(surrogate.Sigmoid().spec, v_threshold=bad)
    with pytest.raises(ValueError, match="finite"):
        forward_kernel_source(config, torch.float32, True)
    with pytest.raises(ValueError, match="finite"):
        backward_kernel_source(config, torch.float16)


def test_kernel_sources_name_the_parameter_beyond_float32() -> None:
    for node, named in [
        (neuron.LIFNode(v_reset=1e39), "v_reset=1e+39"),
        (neuron.LIFNode(v_threshold=1e39), "v_threshold=1e+39"),
        (neuron.LIFNode(surrogate_function=surrogate.Sigmoid(alpha=1e39)), "Sigmoid.alpha=1e+39"),
        (neuron.IFNode(surrogate_function=surrogate.Rect(alpha=1e-40)), "the constant 5e+39 that its kernel derives"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named) + ".*the cupy kernels compute in float32"):
            snn_cupy.kernel_sources(node, torch.float32)


def test_non_finite_surrogate_parameters_are_refused() -> None:
    for value in (math.inf, math.nan):
        with pytest.raises(ValueError):
            surrogate_body(SurrogateSpec("Sigmoid", (("alpha", value),)))
    with pytest.raises(ValueError):  # a surrogate's own range check (QPseudoSpike needs alpha > 1)
        surrogate_body(SurrogateSpec("QPseudoSpike", (("alpha", 0.5),)))
    with pytest.raises(TypeError, match="closed-form"):
        snn_cupy.kernel_sources(neuron.IFNode(surrogate_function=surrogate.PoissonPass()), torch.float32)
    with pytest.raises(ValueError, match="closed-form"):
        backward_kernel_source(IF_MODEL.config(SurrogateSpec("PoissonPass", ())), torch.float32)


def test_names_are_not_user_controlled() -> None:
    hostile = 'Sigmoid"); } __global__ void evil() { //'
    with pytest.raises(ValueError, match="unknown surrogate"):
        surrogate_body(SurrogateSpec(hostile, (("alpha", 4.0),)))
    with pytest.raises(ValueError, match="role"):
        entry_name("bwd evil", "f32", "")
    with pytest.raises(ValueError, match="dtype_tag"):
        entry_name("bwd", "f64", "")
    plan = kernel_plan(IF_MODEL.config(surrogate.Sigmoid().spec))
    with pytest.raises(ValueError, match="dtype_tag"):
        forward_source(plan, "f32 evil", True)
    with pytest.raises(TypeError, match="v_threshold"):
        literal("1.0); evil(", "v_threshold")  # type: ignore[arg-type]  # the wrong type is the point of the test


def _two_state_model(name: str, current: str, potential: str, gain: str, learnable: str) -> NeuronModel:
    """The same two-state model under any names (hyper-parameter ``gain``, learnable ``learnable``)."""

    def charge(x: Any, u: Any, p: Any, ops: Any) -> dict[str, Any]:
        c = u[current] * getattr(p, gain) + x
        return {current: c, potential: u[potential] + (c - u[potential]) * ops.sigmoid(getattr(p, learnable))}

    def reset(h: Any, s: Any, p: Any, ops: Any) -> dict[str, Any]:
        return {potential: p.reset(h[potential], s), current: h[current] * (1.0 - s * 0.5)}

    return NeuronModel(
        name=name,
        states=(State(current, 0.0), State(potential, "v_reset")),
        hyperparameters=(HyperParameter(gain, 0.5), *THRESHOLD_AND_RESET),
        learnables=(learnable,),
        charge=charge,
        reset=reset,
        fire=potential,
    )


def test_model_names_never_reach_the_source(nvrtc: object) -> None:
    """States called ``int`` and ``i``, a hyper-parameter ``float``, a learnable ``return``: the
    sources are byte for byte those of the same model with plain names, and compile."""
    from snn_cupy.nvrtc import compile_source
    from snn_cupy.runtime import COMPILE_OPTIONS

    hostile = _two_state_model("keywords", "int", "i", "float", "return")
    plain = _two_state_model("plain", "c", "v", "gain", "w")
    for detach, dtype in ((False, torch.float32), (True, torch.float16)):
        a = config_sources(hostile.config(surrogate.S2NN().spec, detach), dtype)
        b = config_sources(plain.config(surrogate.S2NN().spec, detach), dtype)
        assert a == b
    for name, text in a.items():
        assert compile_source(text, f"{name}.cu", arch="compute_75", options=COMPILE_OPTIONS).log.strip() == ""


def test_only_fixed_identifiers_in_source() -> None:
    """Every identifier in a generated source comes from the generator's fixed vocabulary."""
    text = "".join(config_sources(_two_state_model("m", "int", "i", "float", "return").config(
        surrogate.PiecewiseQuadratic().spec, False, v_reset=-0.2), torch.float16).values())
    text = re.sub(r'asm\("[^"]*"', "asm(", text)  # PTX instruction text (cvt.f32.f16) is not C
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # comments
    strip = re.compile(r"0x[0-9a-fA-F.]+p[+-]\d+f|\bsnn_\w+_[0-9a-f]{16}(_v[12])?\b|\bsnn_surrogate_[0-9a-f]{16}\b|"
                       r"SNN_SURROGATE_[0-9A-F]{16}|\b\d+\.\d+f\b")
    words = set(re.findall(r"[A-Za-z_]\w*", strip.sub(" ", text)))
    numbered = {w for w in words if re.fullmatch(r"[a-zA-Z_]+?\d+", w)}
    stems = {re.sub(r"\d+$", "", w) for w in numbered}
    assert stems <= {
        "u", "h", "p", "k", "st", "hs", "init", "learn", "saved_h", "seq", "last", "grad_seq", "grad_last",
        "grad_init", "grad_learn", "gv", "gl", "has_gv", "has_gl", "gS", "has_gS", "gH", "has_gH", "carry",
        "has_carry", "next_carry", "cr", "has_cr", "hc", "hp", "up", "out", "acc", "snn_float", "snn_h2f", "snn_f2h",
    }, stems
    fixed = words - numbered
    assert fixed <= {
        "ifndef", "define", "endif", "SNN_CUPY_PREAMBLE", "SNN_CUPY_IO", "__device__", "__forceinline__", "float",
        "unsigned", "short", "int", "const", "asm", "bits", "value", "struct", "alignas", "a", "b", "void", "long",
        "p", "i", "out", "in", "pair", "snn_load", "snn_store", "snn_add", "acc", "bool", "present", "term",
        "return", "extern", "__global__", "__launch_bounds__", "__restrict__", "x_seq", "spike_seq", "n", "steps",
        "blockIdx", "x", "blockDim", "threadIdx", "if", "idx", "for", "t", "xs", "spikes", "pragma", "unroll", "lane",
        "xin", "spk", "expf", "true", "false", "else", "grad_spike_seq", "grad_x_seq", "has_gs", "gs", "gx", "gst",
        "has_gst", "gxl", "has_gx", "__shared__", "snn_partial", "stride", "__syncthreads", "fmaxf", "fminf",
        "logf", "fabsf", "sqrtf", "cosf", "sinf", "xffffu", "C", "snn_f2h", "snn_h2f", "f", "h",
    }, fixed


def test_surrogate_function_is_the_rendered_derivative() -> None:
    config = IF_MODEL.config(surrogate.Erf().spec)
    text = backward_source(kernel_plan(config), "f32").source
    assert "return " + surrogate_body(surrogate.Erf().spec) + ";" in text


def test_plan_without_x_for_backward_is_refused() -> None:
    """A plan whose backward reads ``x`` without saving it is inconsistent."""
    from dataclasses import replace

    from snn.expr import var

    plan = kernel_plan(PLIF_MODEL.config(surrogate.Sigmoid().spec))

    broken = replace(plan, charge_x=(var("x"), *plan.charge_x[1:]), save_input=False)
    with pytest.raises(ValueError, match="reads x"):
        backward_source(broken, "f32")
