"""snn.registry: registrar validation, kernel caching, availability, 'auto' selection."""

from __future__ import annotations

import re
import types

import pytest
import torch

import snn
from snn import neuron, plugins, surrogate
from snn.backends import torch as torch_backend
from snn.errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    DuplicateRegistrationError,
    UnsupportedOperationError,
)
from snn.registry import BackendRegistrar, NeuronModelRegistrar, Provenance, Registry

KERNEL = "snn.kernels:NeuronConfig"  # any importable attribute stands in for a kernel here


def _plugin(**backends: dict) -> types.SimpleNamespace:
    @snn.hookimpl
    def snn_register_backends(register):
        for name, options in backends.items():
            register(name, **options)

    return types.SimpleNamespace(snn_register_backends=snn_register_backends)


def _backend(**overrides):
    options = dict(
        kernels={"multi_step": KERNEL},
        models=("lif",),
        devices=("cpu",),
        dtypes=(torch.float32,),
        surrogates=("Sigmoid",),
        probe=lambda: None,
    )
    options.update(overrides)
    return options


def test_kernel_is_imported_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend()), name="fake-plugin") as registry:
        first = registry.kernel("fake", "multi_step")
        calls = []
        monkeypatch.setattr("snn.registry._tables._import_target", lambda target: calls.append(target))
        assert registry.kernel("fake", "multi_step") is first
        assert calls == []
        info = registry.backend("fake")
        assert info.provenance.plugin == "fake-plugin"


def test_missing_kernel_lists_backends_that_have_it() -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        with pytest.raises(UnsupportedOperationError, match="kernel mode 'single_step'.*backends that do: .*'torch'"):
            registry.kernel("fake", "single_step")
        if_config = registry.model("if").config(surrogate.Sigmoid().spec)
        with pytest.raises(UnsupportedOperationError, match="neuron model 'if'.*backends that do: .*'torch'"):
            registry.check_kernel_inputs("fake", "cpu", torch.float32, if_config)


def test_unavailable_backend_chains_probe_exception() -> None:
    def probe():
        raise OSError("driver too old")

    with plugins.temporary_plugin(_plugin(broken=_backend(probe=probe))) as registry:
        with pytest.raises(BackendUnavailableError, match="driver too old") as caught:
            registry.kernel("broken", "multi_step")
        assert isinstance(caught.value.__cause__, OSError)


def test_unknown_backend_lists_known_and_install_hint() -> None:
    registry = plugins.get_registry()
    with pytest.raises(BackendNotFoundError, match=r"'nope'.*known:.*'torch'"):
        registry.backend("nope")
    registry_without = Registry()
    # snn-core[cupy] would bring snn-cupy without CuPy: the hint names the CUDA 12 extra
    with pytest.raises(BackendNotFoundError, match=r'pip install "snn-cupy\[cuda12\]" \(from a checkout'):
        registry_without.backend("cupy")


def _lif(surrogate_function=None):
    return neuron.LIFNode(surrogate_function=surrogate_function).neuron_config()


def test_check_kernel_inputs_names_what_is_missing() -> None:
    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        registry.check_kernel_inputs("fake", "cpu", torch.float32, _lif())
        with pytest.raises(UnsupportedOperationError, match="surrogate 'ATan'"):
            registry.check_kernel_inputs("fake", "cpu", torch.float32, _lif(surrogate.ATan()))
        with pytest.raises(UnsupportedOperationError, match="dtype torch.float64"):
            registry.check_kernel_inputs("fake", "cpu", torch.float64, _lif())
        with pytest.raises(UnsupportedOperationError, match="device 'cuda'"):
            registry.check_kernel_inputs("fake", "cuda", torch.float32, _lif())


def test_generating_backend_serves_models_by_their_operations() -> None:
    """A backend that renders a set of operations serves exactly the configurations whose plan needs no other."""
    no_exp = tuple(op for op in torch_backend.OPERATIONS if op not in ("exp", "sigmoid"))
    backends = {"narrow": _backend(models=None, operations=no_exp, surrogates=None)}
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        info = registry.backend("narrow")
        lif = _lif()  # Sigmoid's derivative uses sigmoid: not rendered
        assert not info.serves_config(lif) and not info.serves_surrogate(lif.surrogate)
        atan = _lif(surrogate.ATan())
        assert info.serves_config(atan) and info.serves_surrogate(atan.surrogate)
        plif = neuron.ParametricLIFNode(surrogate_function=surrogate.ATan()).neuron_config()
        assert not info.serves_config(plif)  # PLIF's decay is sigmoid(w)
        with pytest.raises(UnsupportedOperationError, match=r"neuron model 'plif' \(its kernel uses operations \['sigmoid'\]"):
            registry.check_kernel_inputs("narrow", "cpu", torch.float32, plif)
        assert "ATan" in info.claimed_surrogates() and "Sigmoid" not in info.claimed_surrogates()


def test_auto_prefers_priority_and_skips_emulated_and_unavailable(in_tree_only: None) -> None:
    backends = {
        "fast": _backend(auto_priority=5),
        "faster_but_emulated": _backend(devices=(), emulated_devices=("cpu",), auto_priority=50),
        "fastest_but_down": _backend(auto_priority=99, probe=lambda: "no device"),
    }
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        assert registry.auto_backend(_lif(), "multi_step", "cpu", torch.float32) == "fast"
        assert registry.auto_backend(_lif(surrogate.ATan()), "multi_step", "cpu", torch.float32) == "torch"


def test_generated_float32_source_must_hold_the_constants(in_tree_only: None) -> None:
    """A constant beyond float32's range has no float32 literal: a generating backend refuses the
    layer naming the parameter, and 'auto' passes it by (the torch backend computes it as a plain
    loop does, and so does any backend registered with literal_constants=False)."""
    backends = {
        "generating": _backend(models=None, operations=torch_backend.OPERATIONS, surrogates=None,
                               dtypes=(torch.float32, torch.float64), auto_priority=5),
        "runtime_numbers": _backend(models=None, operations=torch_backend.OPERATIONS, surrogates=None,
                                    literal_constants=False, dtypes=(torch.float32,), auto_priority=1),
    }
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        for config, name in [
            (neuron.IFNode(v_threshold=1e39).neuron_config(), "v_threshold=1e+39"),
            (_lif(surrogate.Sigmoid(alpha=1e39)), "Sigmoid.alpha=1e+39"),
        ]:
            with pytest.raises(UnsupportedOperationError, match=re.escape(
                f"backend 'generating' does not support {name} with torch.float32 inputs: its kernels compute in "
                "float32, which cannot hold the value; backends that do: 'runtime_numbers', 'torch'"
            )):
                registry.check_kernel_inputs("generating", "cpu", torch.float32, config)
            registry.check_kernel_inputs("generating", "cpu", torch.float64, config)  # double literals
            registry.check_kernel_inputs("torch", "cpu", torch.float32, config)
            registry.check_kernel_inputs("runtime_numbers", "cpu", torch.float32, config)
            assert registry.auto_backend(config, "multi_step", "cpu", torch.float32) == "runtime_numbers"
            assert registry.auto_backend(config, "multi_step", "cpu", torch.float64) == "generating"
        largest = float(torch.finfo(torch.float32).max)  # fits (infinite values are refused by the models)
        for config in (neuron.IFNode(v_threshold=largest).neuron_config(), _lif(surrogate.Sigmoid(alpha=largest))):
            registry.check_kernel_inputs("generating", "cpu", torch.float32, config)
            assert registry.auto_backend(config, "multi_step", "cpu", torch.float32) == "generating"


def test_literal_constants_must_be_a_bool() -> None:
    registrar = BackendRegistrar(Registry(), Provenance("p"))
    with pytest.raises(TypeError, match=re.escape("literal_constants: expected True or False, got 'no'")):
        registrar(name="b", literal_constants="no", **_backend(models=None, operations=("add",), surrogates=None))


def test_a_model_s_node_class_must_run_it() -> None:
    # snn bench and snn.neuron.node_class build the node= class for the model's name
    registry = Registry()
    register = NeuronModelRegistrar(registry, Provenance("plugin"))
    lif = neuron.LIFNode.model
    with pytest.raises(TypeError, match=r"model 'lif': node: IFNode runs model 'if', not this one"):
        register(lif, node=neuron.IFNode)
    with pytest.raises(TypeError, match=r"model 'lif': node: expected a subclass of snn.neuron.BaseNode, got <class 'int'>"):
        register(lif, node=int)
    assert "lif" not in registry.models  # nothing claimed by a refused call
    register(lif, node=neuron.LIFNode)
    assert registry.models["lif"].metadata["node"] is neuron.LIFNode


def test_registrar_validates_arguments_and_refuses_duplicates() -> None:
    registry = Registry()
    NeuronModelRegistrar(registry, Provenance("first"))(neuron.LIFNode.model)
    register = BackendRegistrar(registry, Provenance("first"))
    register("b", **_backend())
    with pytest.raises(DuplicateRegistrationError, match="'first'.*'second'"):
        BackendRegistrar(registry, Provenance("second"))("b", **_backend())
    with pytest.raises(ValueError, match="kernels"):
        register("c", **_backend(kernels={"sometimes": KERNEL}))
    with pytest.raises(ValueError, match="no longer keyed by neuron kind"):
        register("c", **_backend(kernels={("lif", "multi_step"): KERNEL}))
    with pytest.raises(ValueError, match="module:attribute"):
        register("d", **_backend(kernels={"multi_step": "no_colon"}))
    for devices in (("gpu",), ("cuda:0",), ("CUDA",)):
        with pytest.raises(ValueError, match=rf"devices: expected torch device types such as 'cpu' or 'cuda', got '{devices[0]}'"):
            register("e", **_backend(devices=devices))
    register("npu_backend", **_backend(devices=("npu",)))  # a device type torch learns from its library's import
    del registry.backends["npu_backend"]
    with pytest.raises(TypeError, match="exactly one"):
        register("f", **_backend(operations=("+",)))
    with pytest.raises(TypeError, match="exactly one"):
        register("g", **_backend(models=None))
    with pytest.raises(TypeError, match="surrogates: a backend with hand-written kernels"):
        register("h", **_backend(surrogates=None))
    with pytest.raises(TypeError, match="dtypes"):
        register("e", **_backend(dtypes=("float32",)))
    with pytest.raises(ValueError, match=r"dtypes: expected at least one floating dtype \(e.g. \(torch.float32,\)\), got none"):
        register("e", **_backend(dtypes=()))
    with pytest.raises(ValueError, match=r"dtypes: expected floating dtypes \(neuron inputs are floating\), got \['torch.int32'\]"):
        register("e", **_backend(dtypes=(torch.float32, torch.int32)))
    with pytest.raises(ValueError, match=r"devices: expected at least one torch device type \(e.g. \('cpu',\)\), got none"):
        register("e", **_backend(devices=()))
    register("emulated_only", **_backend(devices=(), emulated_devices=("cpu",)))  # an interpreter backend
    del registry.backends["emulated_only"]
    with pytest.raises(TypeError, match="name"):
        register(" spaced ", **_backend())
    with pytest.raises(ValueError, match=r"models: expected names of registered neuron models, got unknown \['lfi'\]"):
        register("i", **_backend(models=("lif", "lfi")))
    with pytest.raises(ValueError, match=r"surrogates: .*got unknown \['Sigmiod'\]"):
        register("j", **_backend(surrogates=("Sigmiod", "ATan")))
    with pytest.raises(TypeError, match="devices: expected a collection of strings, got the string 'cpu'"):
        register("k", **_backend(devices="cpu"))
    assert set(registry.backends) == {"b"}


def test_hand_written_backend_serves_the_registered_model_not_its_name() -> None:
    """A model that only shares a served model's name (it lost the name clash, or was never
    registered) is refused: a hand-written LIF kernel must not run another model's math."""
    from snn.models import NeuronModel, State

    impostor = NeuronModel(
        name="lif",
        states=(State("v", 0.0),),
        hyperparameters=neuron.LIFNode.model.hyperparameters,
        charge=lambda x, u, p, ops: {"v": u.v + 2.0 * x},
    )
    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        info = registry.backend("fake")
        assert info.serves_model(neuron.LIFNode.model, "multi_step")
        assert info.serves_config(_lif())
        assert not info.serves_model(impostor, "multi_step")
        assert not info.serves_config(impostor.config(surrogate.Sigmoid().spec))
        with pytest.raises(UnsupportedOperationError, match="neuron model 'lif' \\(another model than the one registered"):
            registry.check_kernel_inputs("fake", "cpu", torch.float32, impostor.config(surrogate.Sigmoid().spec))


def test_hand_written_backend_does_not_serve_a_surrogate_it_lacks() -> None:
    """set_backend checks the surrogate too: a LIF with ATan keeps its backend (and a warning
    is logged) on a backend whose kernels implement Sigmoid only."""
    from snn import functional

    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        info = registry.backend("fake")
        assert not info.serves_config(_lif(surrogate.ATan()))
        net = torch.nn.Sequential(
            neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m", surrogate_function=surrogate.ATan())
        )
        assert "fake" not in net[1].supported_backends
        functional.set_backend(net, "fake")
        assert (net[0].backend, net[1].backend) == ("fake", "torch")


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


def test_a_pickled_configuration_of_a_served_model_is_still_served() -> None:
    """Unpickling makes a new model object holding the same functions: still the served model."""
    import pickle

    with plugins.temporary_plugin(_plugin(fake=_backend())) as registry:
        config = pickle.loads(pickle.dumps(_lif()))
        assert config.model is not neuron.LIFNode.model
        assert registry.backend("fake").serves_config(config)


def test_registrars_take_their_documented_options_only() -> None:
    """A misspelt option is a TypeError naming it (it used to land silently in the metadata)."""
    from snn.learning import OnlineLearner
    from snn.registry import LearnerRegistrar, LossRegistrar, StrategyRegistrar

    class Learner(OnlineLearner):
        name = "mine"

        def train_sequence(self, *args: object, **options: object) -> None:
            raise AssertionError("not called here")

    registry = Registry()
    losses = LossRegistrar(registry, Provenance("p"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'descripton'"):
        losses("zero", lambda y, t: 0, descripton="typo")  # type: ignore[call-arg]  # a misspelt option on purpose
    with pytest.raises(TypeError, match="signature: expected None or a non-empty string"):
        losses("zero", lambda y, t: 0, signature=3)  # type: ignore[arg-type]  # a wrong type on purpose
    with pytest.raises(TypeError, match="description: expected a string"):
        StrategyRegistrar(registry, Provenance("p"))("s", lambda *a: None, description=["x"])  # type: ignore[arg-type]  # a wrong type on purpose
    learners = LearnerRegistrar(registry, Provenance("p"))
    with pytest.raises(TypeError, match="data_parallel: expected True or False, got 1"):
        learners("mine", Learner(), data_parallel=1)  # type: ignore[arg-type]  # a wrong type on purpose
    assert registry.losses == {} and registry.strategies == {} and registry.learners == {}
    losses("zero", lambda y, t: 0, signature="sequence_classification")
    learners("mine", Learner(), data_parallel=True)
    learners("plain", Learner())
    assert dict(registry.losses["zero"].metadata) == {"signature": "sequence_classification"}
    assert dict(registry.learners["mine"].metadata) == {"data_parallel": True}
    assert dict(registry.learners["plain"].metadata) == {}
    models = NeuronModelRegistrar(registry, Provenance("p"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'nodes'"):
        models(neuron.LIFNode.model, nodes=neuron.LIFNode)  # type: ignore[call-arg]  # a misspelt option on purpose
    models(neuron.LIFNode.model, node=neuron.LIFNode)
    assert dict(registry.models["lif"].metadata) == {"node": neuron.LIFNode, "description": neuron.LIFNode.model.description}


def test_a_neuron_class_that_forgot_its_model_states_is_told_so() -> None:
    class Forgot(neuron.BaseNode):
        model = neuron.IzhikevichNode.model

        def __init__(self, step_mode: str) -> None:
            super().__init__(step_mode=step_mode)
            reference = neuron.IzhikevichNode()
            for name in ("tau", "v_c", "a0", "v_rest", "tau_w", "a", "b"):
                setattr(self, name, getattr(reference, name))

    for step_mode, x in (("s", torch.rand(3)), ("m", torch.rand(4, 3))):
        with pytest.raises(TypeError, match=re.escape(
            "Forgot: the state 'w' of model 'izhikevich' is not a memory of this neuron; call "
            "self.register_model_states() at the end of __init__"
        )):
            Forgot(step_mode)(x)


def test_constants_the_plan_derives_must_fit_float32_too(in_tree_only: None) -> None:
    """Rect(alpha=1e-40) is a float32 number, but its derivative's 1 / (2 alpha) = 5e39 is not:
    refused up front naming the constant (it failed at the first backward, inside code
    generation), and 'auto' passes the backend by."""
    backends = {
        "generating": _backend(models=None, operations=torch_backend.OPERATIONS, surrogates=None, auto_priority=5),
    }
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        for config, constant in [
            (_lif(surrogate.Rect(alpha=1e-40)), "5e+39"),
            (_lif(surrogate.PiecewiseQuadratic(alpha=1e20)), "1e+40"),
            (neuron.EIFNode(delta_T=1e-39).neuron_config(), "1.0000000000000001e+39"),
        ]:
            with pytest.raises(UnsupportedOperationError, match=re.escape(
                f"backend 'generating' does not support the constant {constant} that its kernel derives from the "
                "layer's parameters ("
            )):
                registry.check_kernel_inputs("generating", "cpu", torch.float32, config)
            assert registry.auto_backend(config, "multi_step", "cpu", torch.float32) == "torch"
        assert registry.auto_backend(_lif(surrogate.Rect(alpha=1e-3)), "multi_step", "cpu", torch.float32) == "generating"


def test_dtype_and_device_refusals_suggest_backends_that_run_the_layer(in_tree_only: None) -> None:
    backends = {
        "narrow": _backend(),  # lif, float32
        "lif_double": _backend(dtypes=(torch.float64,)),
    }
    with plugins.temporary_plugin(_plugin(**backends)) as registry:
        plif = neuron.ParametricLIFNode().neuron_config()
        with pytest.raises(UnsupportedOperationError, match=r"dtype torch.float64; backends that do: 'torch'$"):
            registry.check_kernel_inputs("narrow", "cpu", torch.float64, plif)
        with pytest.raises(UnsupportedOperationError, match=r"dtype torch.float64; backends that do: 'lif_double', 'torch'$"):
            registry.check_kernel_inputs("narrow", "cpu", torch.float64, _lif())


def test_model_names_a_neuron_module_uses_are_refused() -> None:
    """A hyper-parameter called step_mode registered fine and failed at the first forward with
    'step_mode: expected a real number, got str'."""
    from snn.models import THRESHOLD_AND_RESET, HyperParameter, NeuronModel, State

    registrar = NeuronModelRegistrar(Registry(), Provenance("p"))
    for hyper, learnables in [("step_mode", ()), ("backend", ()), ("reset", ()), ("gain", ("forward",))]:
        model = NeuronModel(
            name="clash", states=(State("v", initial="v_reset"),), learnables=learnables,
            hyperparameters=(HyperParameter(hyper, 2.0, "real"), *THRESHOLD_AND_RESET),
            charge=lambda x, u, p, ops: {"v": u.v + x},
        )
        taken = learnables[0] if learnables else hyper
        with pytest.raises(ValueError, match=f"model 'clash': .* '{taken}': expected a name a neuron module does not use"):
            registrar(model)
    # v_threshold and v_reset are free as hyper-parameters only (BaseNode's own); a state of
    # that name registered and failed when a module was built
    state_clash = NeuronModel(
        name="clash", states=(State("v", 0.0), State("v_reset", 0.0)),
        hyperparameters=(HyperParameter("v_threshold", 1.0, "real"),),
        charge=lambda x, u, p, ops: {"v": u.v + x, "v_reset": u.v_reset},
    )
    with pytest.raises(ValueError, match="model 'clash': state 'v_reset': expected a name a neuron module does not use"):
        registrar(state_clash)


def test_constant_beyond_float32_names_what_does_not_fit() -> None:
    from snn.models import constant_beyond_float32

    assert constant_beyond_float32(_lif()) is None
    assert constant_beyond_float32(neuron.LIFNode(v_reset=-1e39).neuron_config()) == "v_reset=-1e+39"
    found = constant_beyond_float32(_lif(surrogate.Rect(alpha=1e-40)))
    assert found is not None and found.startswith("the constant 5e+39 that its kernel derives from the layer's parameters (")
    assert "Rect.alpha=1e-40" in found


def test_a_failure_is_described_in_one_line() -> None:
    """pluggy's validation messages span several lines; error messages and snn doctor show one."""
    from snn.registry import PluginFailure

    failure = PluginFailure("odd", "snn-odd", "0.1", "validate", "Plugin 'odd' for hook 'x'\nhookimpl definition:  x(a)\n\nArgument(s) {'a'}")
    assert failure.describe() == (
        "plugin odd (snn-odd 0.1) failed at validate: Plugin 'odd' for hook 'x' hookimpl definition: x(a) Argument(s) {'a'}"
    )
