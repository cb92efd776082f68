"""Layers and containers refuse what they cannot compute, with typed errors naming the argument;
and what they accept they compute as an independent loop or formula does."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from snn import functional, layer, neuron


def _if_loop(x_seq: torch.Tensor) -> torch.Tensor:
    """IF neurons (threshold 1, hard reset to 0) over [T, N, *], written out."""
    v = torch.zeros_like(x_seq[0])
    spikes = []
    for x in x_seq:
        v = v + x
        s = (v >= 1.0).to(x.dtype)
        v = v * (1 - s)
        spikes.append(s)
    return torch.stack(spikes)


@pytest.mark.parametrize(
    "build",
    [
        lambda: layer.SeqToANNContainer(neuron.IFNode()),
        lambda: layer.SeqToANNContainer(nn.Sequential(nn.Identity(), neuron.IFNode())),
        lambda: layer.TLastSeqToANNContainer(neuron.IFNode()),
        lambda: layer.StepModeContainer(False, "m", nn.Identity(), neuron.IFNode()),
        lambda: layer.SeqToANNContainer(layer.Dropout(0.5)),
    ],
    ids=["seq_to_ann", "nested", "t_last_seq_to_ann", "step_mode_container", "dropout"],
)
def test_all_steps_at_once_containers_refuse_stateful_children(build: Any) -> None:
    with pytest.raises(ValueError, match=r"runs all time steps at once .* are stateful; .*(MultiStepContainer|stateful=True)"):
        build()


def test_stateful_children_refused_at_call_when_added_later_or_mode_switched() -> None:
    container = layer.SeqToANNContainer(nn.Identity())
    container.append(neuron.IFNode())
    with pytest.raises(ValueError, match=r"SeqToANNContainer runs all time steps at once"):
        container(torch.ones(5, 1, 1))
    # step mode 's' runs one step at a time, so a stateful child is fine there ...
    smc = layer.StepModeContainer(False, "s", neuron.IFNode())
    x_seq = torch.full((5, 1, 1), 0.5)
    assert torch.equal(torch.stack([smc(x) for x in x_seq]), _if_loop(x_seq))
    # ... but not once the container is switched to 'm' with stateful=False
    functional.reset_net(smc)
    functional.set_step_mode(smc, "m")
    with pytest.raises(ValueError, match=r"StepModeContainer\(stateful=False\) in step mode 'm'.*stateful=True"):
        smc(x_seq)


def test_suggested_replacements_compute_the_loop() -> None:
    x_seq = torch.full((5, 1, 1), 1.0)
    assert _if_loop(x_seq).sum() == 5
    assert torch.equal(layer.MultiStepContainer(neuron.IFNode())(x_seq), _if_loop(x_seq))
    assert torch.equal(layer.StepModeContainer(True, "m", neuron.IFNode())(x_seq), _if_loop(x_seq))


def test_stateless_children_still_run_all_steps_at_once() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
    x_seq = torch.randn(4, 2, 2, 5, 5)
    expected = bn(conv(x_seq.flatten(0, 1))).unflatten(0, (4, 2))
    torch.testing.assert_close(layer.SeqToANNContainer(conv, bn)(x_seq), expected)
    torch.testing.assert_close(layer.StepModeContainer(False, "m", conv, bn)(x_seq), expected)
    linear = nn.Linear(3, 2)
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(layer.TLastSeqToANNContainer(linear)(x.movedim(0, -1)), linear(x).movedim(0, -1))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_voting_layer_averages_integer_and_bool_spikes_in_floating_point(dtype: torch.dtype, step_mode: str) -> None:
    counts = torch.randint(0, 2 if dtype == torch.bool else 7, (2, 3, 12))
    x = counts.to(dtype) if step_mode == "m" else counts[0].to(dtype)
    expected = counts.double().view(2, 3, 4, 3).mean(-1)
    out = layer.VotingLayer(3, step_mode=step_mode)(x)
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(out.double(), expected if step_mode == "m" else expected[0])


def test_voting_layer_issue_example_and_floating_inputs_unchanged() -> None:
    assert layer.VotingLayer(2)(torch.tensor([[1, 0, 1, 1]])).tolist() == [[0.5, 1.0]]
    x = torch.rand(3, 8, dtype=torch.float64)
    out = layer.VotingLayer(4)(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x.view(3, 2, 4).mean(-1))


def test_flatten_multi_step_names_the_layout_and_the_argument() -> None:
    with pytest.raises(ValueError, match=r"Flatten \(step_mode='m', start_dim=1, end_dim=-1\): expected x with shape \[T, N, \*\].*got x with shape \[3, 4\]"):
        layer.Flatten(step_mode="m")(torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"start_dim: expected a dimension after the batch dimension N .*got 0"):
        layer.Flatten(start_dim=0, step_mode="m")(torch.rand(3, 4, 5))
    with pytest.raises(ValueError, match=r"start_dim <= end_dim"):
        layer.Flatten(start_dim=2, end_dim=1, step_mode="m")(torch.rand(3, 4, 5, 6))
    x = torch.rand(3, 4, 5, 6, 7)
    assert torch.equal(layer.Flatten(step_mode="m")(x), x.reshape(3, 4, -1))
    assert torch.equal(layer.Flatten(start_dim=2, step_mode="m")(x), x.reshape(3, 4, 5, -1))
    assert torch.equal(layer.Flatten(start_dim=-2, step_mode="m")(x), x.reshape(3, 4, 5, -1))
    assert torch.equal(layer.Flatten(step_mode="s")(x[0]), x[0].reshape(4, -1))


def test_element_wise_recurrent_container_names_bad_shapes_and_results() -> None:
    with pytest.raises(ValueError, match=r"sub_module: expected an output of the input step's shape \[2, 3\].*got shape \[2, 2\]"):
        layer.ElementWiseRecurrentContainer(nn.Linear(3, 2), torch.add)(torch.rand(2, 3))
    net = layer.ElementWiseRecurrentContainer(nn.Identity(), lambda y, x: 1.0)  # type: ignore[arg-type, return-value]  # a wrong result type on purpose: the error is under test
    with pytest.raises(TypeError, match=r"element_wise_function: expected it to return a torch.Tensor .*\[2, 3\], got float"):
        net(torch.rand(2, 3))
    # what it accepts it computes as the written-out recurrence
    linear = nn.Linear(3, 3)
    x_seq = torch.randn(4, 2, 3)
    y, expected = torch.zeros(2, 3), []
    for x in x_seq:
        y = linear(y * x)
        expected.append(y)
    got = layer.ElementWiseRecurrentContainer(linear, torch.mul, step_mode="m")(x_seq)
    torch.testing.assert_close(got, torch.stack(expected))


def test_linear_recurrent_container_names_a_non_tensor_result() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> Any:
            return x, x

    with pytest.raises(TypeError, match=r"sub_module: expected it to return a torch.Tensor \[N, \*, 2\], got tuple"):
        layer.LinearRecurrentContainer(Pair(), 2, 2)(torch.rand(1, 2))


@pytest.mark.parametrize("kind", ["float32", "float64", "float16"])
def test_dropout_accepts_numpy_reals(kind: str) -> None:
    np = pytest.importorskip("numpy")
    p = getattr(np, kind)(0.25)
    drop = layer.Dropout(p=p, step_mode="m")
    assert drop.p == 0.25 and type(drop.p) is float
    torch.manual_seed(1)
    x_seq = torch.ones(3, 4, 50)
    out = drop(x_seq)
    torch.manual_seed(1)
    mask = torch.empty(4, 50).bernoulli_(0.75).div_(0.75)
    assert torch.equal(out, x_seq * mask)
    assert layer.Dropout(p=np.int64(0)).p == 0.0


@pytest.mark.parametrize("p", [True, "numpy-bool", "0.5", None])
def test_dropout_refuses_bools_and_non_numbers(p: Any) -> None:
    np = pytest.importorskip("numpy")
    if p == "numpy-bool":
        p = np.bool_(True)
    with pytest.raises(TypeError, match=r"p: expected a probability"):
        layer.Dropout(p=p)
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\]"):
        layer.Dropout(p=np.float32(1.5))
