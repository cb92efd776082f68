"""snn.base: step modes, memories, reset/detach semantics, memory helpers, pickling."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from snn import base


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
