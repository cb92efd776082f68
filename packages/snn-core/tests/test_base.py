"""snn.base: step modes, memories, reset/detach semantics, memory helpers, pickling."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from snn import base
from snn.base import MemoryModule


class Accumulator(base.MemoryModule):
    """Running sum: y_t = y_{t-1} + x_t (only single_step_forward is written)."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.register_memory("total", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total


def test_step_mode_validation_names_the_value() -> None:
    module = Accumulator()
    with pytest.raises(ValueError, match="step_mode.*'x'"):
        module.step_mode = "x"
    assert module.step_mode == "s"


def test_classic_single_step_subclass_works_in_multi_step_mode() -> None:
    module = Accumulator(step_mode="m")
    x_seq = torch.tensor([[1.0], [2.0], [3.0]])
    out = module(x_seq)
    expected = torch.cumsum(x_seq, dim=0)
    torch.testing.assert_close(out, expected)


def test_memories_behave_as_attributes_and_reset() -> None:
    module = Accumulator()
    module(torch.ones(2))
    assert torch.equal(module.total, torch.ones(2))
    assert "total" in dir(module)
    module.reset()
    assert module.total == 0.0
    module(torch.full((3,), 2.0))
    assert torch.equal(module.total, torch.full((3,), 2.0))


def test_register_memory_rejects_existing_attribute() -> None:
    module = Accumulator()
    with pytest.raises(ValueError, match="total"):
        module.register_memory("total", 1.0)
    with pytest.raises(ValueError, match="training"):
        module.register_memory("training", 1.0)


def test_get_reset_value_errors() -> None:
    module = Accumulator()
    assert module.get_reset_value("total") == 0.0
    with pytest.raises(KeyError, match="is not a registered memory"):
        module.get_reset_value("nope")


def test_tensor_reset_value_is_copied_in_place() -> None:
    module = base.MemoryModule()
    module.register_memory("state", torch.zeros(3))
    module.state = torch.ones(3)
    held = module.state
    module.reset()
    assert torch.equal(module.state, torch.zeros(3))
    assert module.state is held  # reference semantics: reset writes into the same tensor


def test_detach_cuts_graph_in_place() -> None:
    module = Accumulator()
    x = torch.ones(2, requires_grad=True)
    module(x)
    module(x)
    state = module.total
    assert state.grad_fn is not None
    module.detach()
    assert module.total is state and state.grad_fn is None and not state.requires_grad


def test_memory_helpers_roundtrip_nested() -> None:
    net = nn.Sequential(Accumulator(), nn.Sequential(nn.Identity(), Accumulator()))
    net(torch.ones(2))
    names = [name for name, _ in base.named_memories(net)]
    assert names == ["0.total", "1.1.total"]
    assert [name for name, _ in base.named_memories(net, prefix="net")] == ["net.0.total", "net.1.1.total"]
    saved = base.extract_memories(net)
    fresh = nn.Sequential(Accumulator(), nn.Sequential(nn.Identity(), Accumulator()))
    base.load_memories(fresh, saved)
    assert torch.equal(fresh(torch.ones(2)), torch.full((2,), 3.0))
    with pytest.raises(ValueError, match="Memory length mismatch"):
        base.load_memories(fresh, saved[:1])


def test_to_applies_to_tensor_memories() -> None:
    module = Accumulator()
    module(torch.ones(2))
    module.double()
    assert module.total.dtype == torch.float64


def test_deepcopy_and_pickle_of_graph_carrying_state() -> None:
    module = Accumulator()
    x = torch.ones(2, requires_grad=True)
    module(x * 2)
    assert module.total.grad_fn is not None
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert torch.equal(clone.total, torch.full((2,), 2.0))
        assert clone.total.grad_fn is None
    assert module.total.grad_fn is not None  # the original is untouched


def test_non_neuron_memory_module_supports_torch_only() -> None:
    module = Accumulator()
    assert module.supported_backends == ("torch",)
    assert "step_mode=s" in module.extra_repr()


class _Accumulator(MemoryModule):
    """SpikingJelly 2.0.0's explicit-state contract: no single_step_forward of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.register_memory("s", 0.0)

    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        reference = inputs[0] if step_mode == "s" else inputs[0][0]
        return (torch.zeros_like(reference) if not torch.is_tensor(states[0]) else states[0],)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs: object) -> tuple:
        total = states[0] + inputs[0]
        return (total * 2,), (total,)


def test_a_module_written_as_a_functional_forward_runs_in_both_step_modes() -> None:
    acc = _Accumulator()
    assert acc(torch.ones(2)).tolist() == [2.0, 2.0]
    assert acc(torch.ones(2)).tolist() == [4.0, 4.0] and acc.s.tolist() == [2.0, 2.0]
    acc.reset()
    acc.step_mode = "m"
    assert acc(torch.ones(3, 2)).tolist() == [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]
    assert acc.s.tolist() == [3.0, 3.0]
    state = torch.ones(2)
    (out,), (new,) = acc.functional_forward((torch.ones(2, 2),), (state,))
    assert out.tolist() == [[4.0, 4.0], [6.0, 6.0]] and new.tolist() == [3.0, 3.0]
    assert state.tolist() == [1.0, 1.0] and acc.s.tolist() == [3.0, 3.0]  # neither touched


@pytest.mark.parametrize("kind", ["if", "lif", "plif", "qif", "eif", "izhikevich", "klif", "cubalif"])
def test_every_neuron_has_a_functional_forward_equal_to_its_stateful_forward(kind: str) -> None:
    from snn import neuron

    cls = neuron.node_class(kind)
    assert cls is not None
    x_seq = torch.tensor([[1.5, 0.5, 3.0], [1.5, 0.5, 3.0]])
    for step_mode, x in (("s", x_seq[0]), ("m", x_seq)):
        node = cls(step_mode=step_mode)
        names = [name for name, _ in node.named_memories()]
        initial = tuple(node.get_reset_value(name) for name in names)
        outputs, states = node.functional_forward((x,), initial)
        assert tuple(value for _, value in node.named_memories()) == initial  # memories untouched
        expected = node(x)  # the stateful forward from the same (reset) states
        assert len(outputs) == 1 and torch.equal(outputs[0], expected)
        assert len(states) == len(names)
        for name, state in zip(names, states):
            assert torch.equal(state, getattr(node, name)), (kind, step_mode, name)


def test_the_lif_functional_forward_golden_values() -> None:
    from snn import neuron

    x_seq = torch.tensor([[1.5, 0.5, 3.0], [1.5, 0.5, 3.0]])
    # SpikingJelly 2.0.0 gives the same: v after one step = x / 2, reset where it fired
    (spikes,), (v,) = neuron.LIFNode().functional_forward((x_seq[0],), (0.0,))
    assert spikes.tolist() == [0.0, 0.0, 1.0] and v.tolist() == [0.75, 0.25, 0.0]


def test_functional_forward_errors_name_the_problem() -> None:
    class WrongCount(_Accumulator):
        def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs: object) -> tuple:
            return (inputs[0],), ()

    with pytest.raises(ValueError, match=r"WrongCount: single_step_functional_forward returned 0 states for the 1 memories \['s'\]"):
        WrongCount()(torch.ones(2))
    with pytest.raises(NotImplementedError, match="implements neither single_step_forward nor single_step_functional_forward"):
        MemoryModule()(torch.ones(2))

    class Outer(MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _Accumulator()

        def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    with pytest.raises(NotImplementedError, match="stateful submodules.*snn.functional.to_functional_forward"):
        Outer().functional_forward((torch.ones(2),), ())
    with pytest.raises(TypeError, match="functional_forward: states: expected a tuple, got float"):
        _Accumulator().functional_forward((torch.ones(2),), 0.0)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_to_and_half_convert_tensor_reset_values_too() -> None:
    class Trace(MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("h", torch.full((2,), 0.1))

        def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
            self.h = self.h + x
            return self.h

    for convert, dtype in ((lambda m: m.half(), torch.float16), (lambda m: m.to(torch.float64), torch.float64)):
        trace = convert(Trace())
        trace(torch.zeros(2, dtype=dtype))
        trace.reset()
        assert trace.get_reset_value("h").dtype == dtype
        assert trace(torch.zeros(2, dtype=dtype)).dtype == dtype  # not the float32 of the reset value


def test_load_memories_takes_the_reference_s_argument_name() -> None:
    acc = _Accumulator()
    base.load_memories(acc, memory_list=[torch.ones(2)])
    assert acc.s.tolist() == [1.0, 1.0]


def test_functional_results_must_be_two_tuples() -> None:
    class BareTensor(_Accumulator):
        def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs: object) -> tuple:
            total = states[0] + inputs[0]
            return total * 2, (total,)  # outputs not wrapped: tuple() would split its rows

    for step_mode, x in (("s", torch.ones(3, 4)), ("m", torch.ones(5, 1, 4))):
        with pytest.raises(TypeError, match=r"BareTensor.single_step_functional_forward: expected to return "
                                            r"\(outputs, new_states\), two tuples, got \(Tensor, tuple\)"):
            BareTensor()(x) if step_mode == "s" else _multi(BareTensor())(x)


def _multi(module: MemoryModule) -> MemoryModule:
    module.step_mode = "m"
    return module


def test_a_functional_module_may_wrap_the_default_multi_step_forward() -> None:
    class Checked(_Accumulator):
        def multi_step_forward(self, x_seq: torch.Tensor, *args: object, **kwargs: object) -> object:
            assert x_seq.dim() >= 2
            return super().multi_step_forward(x_seq, *args, **kwargs)  # no recursion through the functional path

    assert _multi(Checked())(torch.ones(3, 2)).tolist() == [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]


def test_to_empty_keeps_the_reset_values() -> None:
    class Trace(MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.register_memory("h", torch.full((2,), 0.25))

    trace = Trace().to_empty(device="cpu")
    assert trace.get_reset_value("h").tolist() == [0.25, 0.25]


def test_load_memories_keeps_its_earlier_argument_name() -> None:
    acc = _Accumulator()
    base.load_memories(acc, values=[torch.ones(2)])
    assert acc.s.tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="exactly one of them"):
        base.load_memories(acc, [0.0], values=[0.0])
    with pytest.raises(TypeError, match="exactly one of them"):
        base.load_memories(acc)
