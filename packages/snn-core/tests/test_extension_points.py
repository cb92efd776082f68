"""SpikingJelly's extension points, as its users' subclasses use them.

A subclass written against SpikingJelly 2.0.0 overrides a hook method (``Dropout.create_mask``,
a monitor's ``create_hook``), sets its own ``backend`` / ``supported_backends``, runs only whole
sequences, or calls a helper (``BatchNorm2d.super_forward``, ``VotingLayer.single_step_forward``).
Each test writes such a subclass the reference's way and checks it against a plain computation.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn import base, functional, layer, monitor, neuron
from snn.errors import UnsupportedOperationError


class _SequenceSum(base.MemoryModule, base.MultiStepModule):
    """Runs whole sequences only; sets its step mode after the base constructor, as SJ code does."""

    def __init__(self) -> None:
        super().__init__()
        self.step_mode = "m"
        self.register_memory("total", 0.0)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x_seq.sum(0)
        return x_seq.cumsum(0)


def test_a_sequence_only_memory_module_sets_its_mode_after_the_constructor() -> None:
    module = _SequenceSum()
    x = torch.arange(6.0).reshape(3, 2)
    assert module.step_mode == "m"
    torch.testing.assert_close(module(x), torch.tensor([[0.0, 1.0], [2.0, 4.0], [6.0, 9.0]]))
    torch.testing.assert_close(module.total, torch.tensor([6.0, 9.0]))


def test_an_explicit_step_mode_is_still_checked() -> None:
    class SequenceOnly(base.MemoryModule, base.MultiStepModule):
        def __init__(self, step_mode: str) -> None:
            super().__init__(step_mode)

    assert SequenceOnly("m").step_mode == "m"
    with pytest.raises(ValueError, match=r"step_mode: expected one of \('m',\), got 's'"):
        SequenceOnly("s")
    for make in (lambda: neuron.LIFNode(step_mode=None), lambda: layer.Dropout(step_mode=None)):  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
        with pytest.raises(ValueError, match="step_mode: expected one of"):
            make()


class _Cell(base.MemoryModule):
    """A SJ-style module with its own backend choice, read by its own forward."""

    def __init__(self, backend: str = "torch") -> None:
        super().__init__()
        self.backend = backend
        self.register_memory("h", 0.0)

    @property
    def supported_backends(self) -> tuple[str, ...]:
        return ("torch", "mine")

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.h = self.h + (2 * x if self.backend == "mine" else x)
        return self.h


def test_a_memory_module_keeps_its_own_backend_and_supported_backends() -> None:
    cell = _Cell("mine")
    assert (cell.backend, cell.supported_backends) == ("mine", ("torch", "mine"))
    torch.testing.assert_close(cell(torch.ones(2)), torch.full((2,), 2.0))
    functional.set_backend(nn.Sequential(cell), "torch")  # within its supported backends
    assert cell.backend == "torch"
    assert "backend=torch" in repr(cell)
    with pytest.raises(UnsupportedOperationError, match=r"backend 'other' does not support _Cell"):
        cell.backend = "other"
    plain = base.MemoryModule()
    assert plain.supported_backends == ("torch",)
    with pytest.raises(UnsupportedOperationError, match=r"backend 'triton' does not support MemoryModule"):
        plain.backend = "triton"
    plain.supported_backends = ["torch", "mine"]  # assigned, as some SpikingJelly modules do
    plain.backend = "mine"
    assert plain.supported_backends == ("torch", "mine") and plain.backend == "mine"
    for bad in ("torch", 5, ()):
        with pytest.raises(TypeError, match="supported_backends: expected a non-empty tuple of backend names, got"):
            plain.supported_backends = bad  # type: ignore[assignment]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="backend: expected a backend name"):
        plain.backend = 3  # type: ignore[assignment]  # a wrong type on purpose: the error is under test
    with pytest.raises(AttributeError, match="supported_backends: LIFNode lists the installed backends"):
        neuron.LIFNode().supported_backends = ("torch",)  # type: ignore[misc]  # the error is under test


class _ChannelDropout(layer.Dropout):
    """SpikingJelly's Dropout2d: whole channels dropped, by overriding create_mask."""

    def create_mask(self, x: torch.Tensor) -> None:
        self.mask = F.dropout2d(torch.ones_like(x), self.p, training=True)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_dropout_samples_its_mask_through_create_mask(step_mode: str) -> None:
    torch.manual_seed(0)
    drop = _ChannelDropout(0.5, step_mode=step_mode)
    x = torch.ones(3, 4, 8, 5, 5) if step_mode == "m" else torch.ones(4, 8, 5, 5)
    y = drop(x)
    mask = drop.mask
    assert mask is not None and mask.shape == (4, 8, 5, 5)
    per_channel = mask.flatten(2)
    # each channel is all zeros or all 2 (= 1 / (1 - p)): channels dropped whole
    assert bool(((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all())
    assert bool((per_channel == 0).any()) and bool((per_channel == 2).any())
    torch.testing.assert_close(y, x * mask)
    torch.testing.assert_close(drop(x), y)  # the same mask until a reset


def test_the_default_create_mask_keeps_the_sampling() -> None:
    torch.manual_seed(1)
    drop = layer.Dropout(0.25)
    drop.create_mask(torch.zeros(1000))
    torch.manual_seed(1)
    expected = torch.empty(1000).bernoulli_(0.75).div_(0.75)
    assert drop.mask is not None and torch.equal(drop.mask, expected)


def test_a_create_mask_that_sets_no_mask_is_named() -> None:
    class Broken(layer.Dropout):
        def create_mask(self, x: torch.Tensor) -> None:
            self.mask = torch.ones(3)

    with pytest.raises(ValueError, match=r"Broken.create_mask: expected it to set self.mask to a tensor of the step's shape \[2, 4\], got shape \[3\]"):
        Broken(0.5)(torch.ones(2, 4))


def test_a_monitor_records_through_its_create_hook() -> None:
    class SumMonitor(monitor.OutputMonitor):
        def create_hook(self, name: str):  # type: ignore[no-untyped-def]  # written as SpikingJelly users do
            def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
                if self.is_enable():
                    self.name_records_index[name].append(len(self.records))
                    self.records.append(float(output.sum()))

            return hook

    net = nn.Sequential(neuron.IFNode())
    recorder = SumMonitor(net, neuron.IFNode)
    net(torch.full((2, 3), 2.0))
    assert recorder.records == [6.0]
    assert recorder["0"] == [6.0]
    plain = monitor.OutputMonitor(nn.Sequential(neuron.IFNode()), neuron.IFNode)
    assert callable(plain.create_hook("0"))


@pytest.mark.parametrize(
    "make",
    [
        lambda sub: layer.ElementWiseRecurrentContainer(sub, torch.add, step_mode="m"),
        lambda sub: layer.LinearRecurrentContainer(sub, 1, 1, step_mode="m"),
    ],
)
def test_recurrent_containers_check_nested_step_modes_at_every_call(make: Callable[[nn.Module], nn.Module]) -> None:
    inner = neuron.IFNode()
    container = make(nn.Sequential(nn.Identity(), inner))
    x = torch.full((2, 2, 1), 0.6)
    container(x)
    functional.reset_net(container)
    inner.step_mode = "m"
    with pytest.raises(ValueError, match=r"IFNode.step_mode must be 's' inside this container.*'sub_module.1'"):
        container(x)
    with pytest.raises(ValueError, match=r"'sub_module.0'"):
        make(nn.Sequential(neuron.IFNode(step_mode="m")))


def test_elementwise_recurrence_of_identical_samples_stays_identical() -> None:
    container = layer.ElementWiseRecurrentContainer(neuron.IFNode(), torch.add, step_mode="m")
    x = torch.full((2, 2, 1), 0.6)
    out = container(x)
    # the sum y[t-1] + x[t] charges an IF neuron: 0.6 (no spike), then 0.6 + 0.6 + 0 = 1.2 (spike)
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("cls, shape", [(layer.BatchNorm1d, (4, 3)), (layer.BatchNorm2d, (4, 3, 2, 2)), (layer.BatchNorm3d, (4, 3, 2, 2, 2))])
def test_batch_norm_super_forward_is_the_torch_layer(cls: type[layer.BatchNorm1d], shape: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    norm = cls(3, step_mode="m")
    x = torch.randn(*shape)
    expected = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True)
    torch.testing.assert_close(norm.super_forward(x), expected)
    assert int(norm.num_batches_tracked) == 1  # it is the layer's forward: statistics tracked


def test_voting_layer_single_step_forward() -> None:
    vote = layer.VotingLayer(voting_size=2)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(vote.single_step_forward(x), torch.tensor([[0.5, 1.0], [0.0, 0.5]]))

