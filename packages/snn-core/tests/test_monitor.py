"""Tests of snn.monitor: records compared with the same quantities computed by a manual loop."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

from snn import functional, layer, monitor, neuron


def _net(step_mode: str = "s") -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(4, 6), neuron.LIFNode(tau=2.0), layer.Linear(6, 3), neuron.IFNode(v_threshold=0.5)
    )
    with torch.no_grad():
        for module in (net[0], net[2]):
            module.weight.mul_(3.0)  # make the neurons fire
    functional.set_step_mode(net, step_mode)
    return net


def _manual_steps(net: nn.Sequential, x_seq: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Run a copy of ``net`` one layer and one step at a time, collecting what the monitors should see."""
    copy_ = copy.deepcopy(net)
    seen: dict[str, list[torch.Tensor]] = {"in1": [], "out1": [], "v1": [], "v1_pre": [], "out3": [], "in3": []}
    for x in x_seq:
        h = copy_[0](x)
        seen["in1"].append(h)
        seen["v1_pre"].append(copy_[1].v)
        s = copy_[1](h)
        seen["out1"].append(s)
        seen["v1"].append(copy_[1].v)
        h2 = copy_[2](s)
        seen["in3"].append(h2)
        seen["out3"].append(copy_[3](h2))
    return seen


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_output_input_and_attribute_monitors_equal_a_manual_loop() -> None:
    net = _net("s")
    x_seq = torch.rand(5, 2, 4)
    expected = _manual_steps(net, x_seq)
    outputs = monitor.OutputMonitor(net, neuron.BaseNode)
    inputs = monitor.InputMonitor(net, (neuron.LIFNode, neuron.IFNode))
    potentials = monitor.AttributeMonitor("v", False, net, neuron.LIFNode)
    before = monitor.AttributeMonitor("v", True, net, neuron.LIFNode)
    for x in x_seq:
        net(x)
    assert outputs.monitored_layers == ["1", "3"]
    assert len(outputs.records) == 10  # two layers, five steps, in call order
    assert all(_equal(a, b) for a, b in zip(outputs["1"], expected["out1"], strict=True))
    assert all(_equal(a, b) for a, b in zip(outputs["3"], expected["out3"], strict=True))
    assert _equal(outputs[0], expected["out1"][0]) and _equal(outputs[1], expected["out3"][0])
    assert all(_equal(a, b) for a, b in zip(inputs["1"], expected["in1"], strict=True))
    assert all(_equal(a, b) for a, b in zip(inputs["3"], expected["in3"], strict=True))
    assert all(_equal(a, b) for a, b in zip(potentials["1"], expected["v1"], strict=True))
    assert before["1"][0] == 0.0  # the reset value, before the first step
    assert all(_equal(a, b) for a, b in zip(before["1"], expected["v1_pre"], strict=True))
    assert sum(s.detach().sum().item() for s in expected["out1"]) > 0  # the comparison covers spikes


def test_multi_step_records_one_sequence_per_call() -> None:
    net = _net("m")
    x_seq = torch.rand(5, 2, 4)
    expected = _manual_steps(_net("s"), x_seq)
    with monitor.OutputMonitor(net, neuron.IFNode, function_on_output=lambda s: s * 2) as doubled:
        net(x_seq)
        assert doubled.name_records_index == {"3": [0]}
        torch.testing.assert_close(doubled["3"][0], 2 * torch.stack(expected["out3"]))
    assert doubled.hooks == [] and not doubled.is_enable()


def test_gradient_monitors_equal_autograd_on_the_intermediate_tensors() -> None:
    net = _net("m")
    x_seq = torch.rand(5, 2, 4, requires_grad=True)
    grad_out = monitor.GradOutputMonitor(net, nn.Linear)
    grad_in = monitor.GradInputMonitor(net, nn.Linear)
    h1 = net[0](x_seq)
    s1 = net[1](h1)
    h2 = net[2](s1)
    loss = (net[3](h2) * torch.arange(1.0, 4.0)).sum() + h2.square().sum()
    d_h1, d_s1, d_h2, d_x = torch.autograd.grad(loss, (h1, s1, h2, x_seq))
    # backward order: the last Linear first
    assert grad_out.name_records_index == {"0": [1], "2": [0]}
    assert grad_in.name_records_index == {"0": [1], "2": [0]}
    torch.testing.assert_close(grad_out["2"][0], d_h2)
    torch.testing.assert_close(grad_out["0"][0], d_h1)
    torch.testing.assert_close(grad_in["2"][0], d_s1)
    torch.testing.assert_close(grad_in["0"][0], d_x)
    assert d_s1.abs().sum() > 0 and d_x.abs().sum() > 0


def test_enable_disable_clear_and_indexing() -> None:
    net = _net("m")
    spikes = monitor.OutputMonitor(net, neuron.LIFNode)
    spikes.disable()
    net(torch.rand(3, 2, 4))
    assert spikes.records == [] and not spikes.is_enable()
    spikes.enable()
    net(torch.rand(3, 2, 4))
    net(torch.rand(3, 2, 4))
    assert spikes.name_records_index == {"1": [0, 1]}
    spikes.clear_recorded_data()
    assert spikes.records == [] and spikes["1"] == []
    with pytest.raises(KeyError, match=r"'9' is not a monitored layer; monitored: \['1'\]"):
        spikes["9"]
    with pytest.raises(TypeError, match="key: expected a record index"):
        spikes[1.5]  # type: ignore[index]  # a wrong type on purpose: the error is under test
    with pytest.raises(IndexError):
        spikes[0]


def test_default_instance_is_the_network_type_and_bad_arguments() -> None:
    net = _net("m")
    whole = monitor.OutputMonitor(net)
    x_seq = torch.rand(3, 2, 4)
    out = net(x_seq)
    assert whole.monitored_layers == [""] and torch.equal(whole[""][0], out)
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got list"):
        monitor.OutputMonitor([net])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="instance: expected a class or a tuple of classes"):
        monitor.OutputMonitor(net, "LIFNode")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="function_on_output: expected a callable"):
        monitor.OutputMonitor(net, neuron.LIFNode, function_on_output=3)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="pre_forward: expected a bool"):
        monitor.AttributeMonitor("v", "yes", net, neuron.LIFNode)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    assert monitor.AttributeMonitor("v", 1, net, neuron.LIFNode).pre_forward is True  # 0 and 1 as in SpikingJelly


def _hook_count(net: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules()
    )


def test_nothing_is_retained_once_removed_or_dropped() -> None:
    net = _net("m")
    spikes = monitor.OutputMonitor(net, neuron.BaseNode)
    grads = monitor.GradOutputMonitor(net, neuron.BaseNode)
    assert _hook_count(net) == 4
    spikes.remove_hooks()
    grads.close()
    assert _hook_count(net) == 0 and spikes.hooks == []
    net(torch.rand(2, 2, 4)).sum()
    assert spikes.records == []

    # a monitor nobody references any more removes its hooks and frees its records
    dropped = monitor.InputMonitor(net, neuron.BaseNode)
    net(torch.rand(2, 2, 4))
    record = weakref.ref(dropped.records[0])
    reference = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert reference() is None and record() is None
    assert _hook_count(net) == 0
    net(torch.rand(2, 2, 4))  # no hook left to call


def test_firing_rate_helpers_equal_manual_means() -> None:
    s = (torch.rand(6, 4, 5) > 0.7).float()
    assert torch.equal(monitor.firing_rate(s, dim=0), s.sum(0) / 6)
    assert monitor.firing_rate(s).item() == pytest.approx(s.sum().item() / s.numel())
    assert monitor.firing_rate(s, dim=(0, 1), keepdim=True).shape == (1, 1, 5)
    assert monitor.firing_rate(s, keepdim=True).shape == (1, 1, 1)
    assert monitor.firing_rate(s.bool()).dtype == torch.get_default_dtype()
    with pytest.raises(TypeError, match="spikes: expected a floating or bool tensor, got dtype torch.int64"):
        monitor.firing_rate(s.long())
    with pytest.raises(ValueError, match="spikes: expected a non-empty tensor"):
        monitor.firing_rate(torch.empty(0))
    for dim in (0.0, True, "0", [0, 1.0]):
        with pytest.raises(TypeError, match="dim: expected None, an int or a sequence of ints"):
            monitor.firing_rate(torch.ones(2, 2), dim)  # type: ignore[arg-type]  # wrong types on purpose
    with pytest.raises(TypeError, match="keepdim: expected a bool, got NoneType"):
        monitor.firing_rate(torch.ones(2, 2), None, None)  # type: ignore[arg-type]  # a wrong type on purpose
    assert monitor.firing_rate(torch.ones(2, 3), [0], True).shape == (1, 3)

    net = _net("m")
    spikes = monitor.OutputMonitor(net, neuron.BaseNode)
    first, second = torch.rand(5, 2, 4), torch.rand(3, 7, 4)  # batches of different sizes
    net(first)
    functional.reset_net(net)
    net(second)
    rates = monitor.firing_rates(spikes)
    assert list(rates) == ["1", "3"]
    for name in rates:
        a, b = spikes[name]
        expected = (a.sum().double() + b.sum().double()) / (a.numel() + b.numel())
        assert rates[name].dtype == torch.float64
        assert rates[name].item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.raises(KeyError):
        monitor.firing_rates(spikes, ["nope"])
    spikes.clear_recorded_data()
    assert monitor.firing_rates(spikes) == {}
    with pytest.raises(ValueError, match="layer '1' has no records"):
        monitor.firing_rates(spikes, ["1"])
    shapes = monitor.OutputMonitor(net, neuron.BaseNode, function_on_output=lambda s: list(s.shape))
    net(second)
    with pytest.raises(TypeError, match="record 0 of layer '1': expected a floating or bool tensor, got list"):
        monitor.firing_rates(shapes)
    with pytest.raises(TypeError, match="monitor: expected an snn.monitor monitor"):
        monitor.firing_rates(net)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="layers: expected an iterable of layer names .* the string '13'"):
        monitor.firing_rates(spikes, "13")  # one name is not a list of its characters
    empty = monitor.OutputMonitor(net, neuron.BaseNode, function_on_output=lambda s: s[:, :0])
    net(second)
    with pytest.raises(ValueError, match="the records of layer '1' hold no elements"):
        monitor.firing_rates(empty, ["1"])
