"""snn.functional miscellaneous helpers: golden values of the reference and independent checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from snn import functional, neuron
from snn.functional import misc

# ---------------------------------------------------------------------------------------------
# redundant_one_hot
# ---------------------------------------------------------------------------------------------


def test_redundant_one_hot_golden_values() -> None:
    codes = misc.redundant_one_hot(torch.tensor([0, 2]), 3, 2)
    expected = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.get_default_dtype())
    assert torch.equal(codes, expected) and codes.dtype == torch.get_default_dtype()


def test_redundant_one_hot_matches_per_class_columns_for_any_shape() -> None:
    labels = torch.randint(0, 4, (3, 5), dtype=torch.int32)
    codes = functional.redundant_one_hot(labels, 4, 3)
    assert codes.shape == (3, 5, 12)
    for index in torch.cartesian_prod(torch.arange(3), torch.arange(5)):
        i, j = index.tolist()
        row = torch.zeros(12)
        k = int(labels[i, j])
        row[k * 3 : k * 3 + 3] = 1
        assert torch.equal(codes[i, j], row)
    assert functional.redundant_one_hot(torch.tensor([1, 0]), 2, 0).shape == (2, 0)
    assert functional.redundant_one_hot(torch.zeros(0, dtype=torch.long), 2, 3).shape == (0, 6)


def test_redundant_one_hot_validation() -> None:
    with pytest.raises(TypeError, match="labels: expected an integer tensor of class indices, got dtype torch.float32"):
        functional.redundant_one_hot(torch.tensor([0.0, 1.0]), 2, 1)
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 3\), got 3"):
        functional.redundant_one_hot(torch.tensor([0, 3]), 3, 1)
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 3\), got -1"):
        functional.redundant_one_hot(torch.tensor([-1, 0]), 3, 1)
    with pytest.raises(ValueError, match="n: expected an integer >= 0, got -2"):
        functional.redundant_one_hot(torch.tensor([0]), 3, -2)
    with pytest.raises(TypeError, match="num_classes: expected an integer, got 2.5"):
        functional.redundant_one_hot(torch.tensor([0]), 2.5, 1)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# ---------------------------------------------------------------------------------------------
# first_spike_index
# ---------------------------------------------------------------------------------------------


def test_first_spike_index_golden_values() -> None:
    result = misc.first_spike_index(torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    assert result.dtype == torch.bool
    assert result.tolist() == [[False, True, False, False], [False, False, False, False]]


def test_first_spike_index_against_argmax_loop_and_reference_quirks() -> None:
    spikes = (torch.rand(4, 3, 9) > 0.7).float().requires_grad_()
    result = functional.first_spike_index(spikes)
    assert not result.requires_grad
    for row, flags in zip(spikes.detach().reshape(-1, 9), result.reshape(-1, 9)):
        expected = torch.zeros(9, dtype=torch.bool)
        nonzero = torch.nonzero(row).flatten()
        if nonzero.numel():
            expected[nonzero[0]] = True
        assert torch.equal(flags, expected)
    assert functional.first_spike_index(torch.tensor([0, 1, 1])).tolist() == [False, True, False]
    assert functional.first_spike_index(torch.tensor([False, True, True])).tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("spikes", "bad"),
    [
        # the reference answers these silently with (spikes != 0) & (cumsum == 1): wrong rows
        (torch.tensor([0.5, 0.5, 1.0, 1.0]), "0.5 at index [0]"),
        (torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 1.0]]), "-1.0 at index [1, 1]"),
        (torch.tensor([0, 2, 1]), "2 at index [1]"),
        (torch.tensor([0.0, float("nan")]), "nan at index [1]"),
    ],
)
def test_first_spike_index_refuses_non_binary_spikes(spikes: torch.Tensor, bad: str) -> None:
    with pytest.raises(ValueError, match=r"first_spike_index: spikes: expected binary spikes \(0 or 1\), got ") as info:
        functional.first_spike_index(spikes)
    assert str(info.value).endswith(bad)


def test_first_spike_index_validation() -> None:
    with pytest.raises(ValueError, match="spikes: expected a tensor"):
        functional.first_spike_index(torch.tensor(1.0))
    with pytest.raises(TypeError, match="spikes: expected a torch.Tensor, got list"):
        functional.first_spike_index([0, 1])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# ---------------------------------------------------------------------------------------------
# delay
# ---------------------------------------------------------------------------------------------


def test_delay_golden_values_and_gradient() -> None:
    x = torch.arange(6, dtype=torch.float32).view(3, 2).requires_grad_()
    y = misc.delay(x, 1)
    assert y.tolist() == [[0.0, 0.0], [0.0, 1.0], [2.0, 3.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    assert misc.delay(x, 0) is x
    for steps in (3, 4):  # T steps or more: zeros, not connected to the input's graph
        far = misc.delay(x, steps)
        assert torch.equal(far, torch.zeros(3, 2)) and not far.requires_grad


@pytest.mark.parametrize("steps", [1, 2, 4, 5])
def test_delay_matches_shift_loop(steps: int) -> None:
    x = torch.randn(5, 2, 3)
    y = functional.delay(x, steps)
    for t in range(5):
        expected = x[t - steps] if t >= steps else torch.zeros(2, 3)
        assert torch.equal(y[t], expected)


def test_delay_validation() -> None:
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="delay_steps: expected an integer >= 0, got -1"):
        functional.delay(x, -1)
    with pytest.raises(TypeError, match="delay_steps: expected an integer, got 1.5"):
        functional.delay(x, 1.5)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match="x_seq: expected a sequence"):
        functional.delay(torch.tensor(2.0), 1)


# ---------------------------------------------------------------------------------------------
# set_threshold_margin
# ---------------------------------------------------------------------------------------------


class Thresholded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.v_threshold: float | torch.Tensor = 1.0


def test_set_threshold_margin_training_and_eval() -> None:
    layer = Thresholded()
    labels = torch.nn.functional.one_hot(torch.tensor([2, 0]), 3)
    functional.set_threshold_margin(layer, labels, eval_threshold=1.0, threshold0=0.9, threshold1=1.1)
    expected = torch.tensor([[0.9, 0.9, 1.1], [1.1, 0.9, 0.9]], dtype=torch.get_default_dtype())
    assert isinstance(layer.v_threshold, torch.Tensor)
    torch.testing.assert_close(layer.v_threshold, expected)
    functional.set_threshold_margin(layer, labels.double(), threshold0=0.5, threshold1=2.0)
    assert layer.v_threshold.dtype == torch.float64
    layer.eval()
    functional.set_threshold_margin(layer, labels, eval_threshold=0.75)
    assert layer.v_threshold == 0.75


def test_set_threshold_margin_validation() -> None:
    with pytest.raises(TypeError, match="output_layer: expected a neuron module with a v_threshold attribute"):
        functional.set_threshold_margin(nn.Linear(1, 1), torch.zeros(1, 1))
    with pytest.raises(TypeError, match="label_one_hot: expected a torch.Tensor"):
        functional.set_threshold_margin(Thresholded(), [[0, 1]])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match=r"threshold1: expected a real number or a one-element tensor, got 'high' \(str\)"):
        functional.set_threshold_margin(Thresholded(), torch.zeros(1, 2), threshold1="high")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    for name in ("eval_threshold", "threshold0", "threshold1"):
        for value in (float("nan"), float("inf"), -float("inf"), 10**400):
            layer = Thresholded()
            with pytest.raises(ValueError, match=f"{name}: expected a finite number"):
                functional.set_threshold_margin(layer, torch.zeros(1, 2), **{name: value})
            assert layer.v_threshold == 1.0  # unchanged


def test_set_threshold_margin_threshold_must_fit_the_input_step() -> None:
    node = neuron.LIFNode()
    functional.set_threshold_margin(node, torch.eye(3)[:2])  # a [2, 3] threshold
    with pytest.raises(ValueError, match=r"LIFNode: v_threshold has shape \(2, 3\).*input step's shape \(3,\)"):
        node(torch.full((3,), 2.0))
    assert node.v == 0.0  # no state was written
    with pytest.raises(ValueError, match=r"v_threshold has shape \(2, 3\).*\(4, 3\)"):
        node(torch.ones(4, 3))
    node.step_mode = "m"
    with pytest.raises(ValueError, match=r"v_threshold has shape \(2, 3\).*\(4, 3\)"):
        node(torch.ones(5, 4, 3))
    functional.reset_net(node)
    x_seq = torch.full((5, 2, 3), 1.0)
    out = node(x_seq)  # [T, B, C] with the labels' [B, C]: fine
    # plain loop (tau = 2, hard reset to 0): 0.9 on the other classes, 1.1 on the true one
    threshold = torch.where(torch.eye(3)[:2] == 1, 1.1, 0.9)
    v, expected = torch.zeros(2, 3), []
    for x in x_seq:
        h = v + (x - v) / 2.0
        spike = (h >= threshold).float()
        v = h * (1.0 - spike)
        expected.append(spike)
    assert torch.equal(out, torch.stack(expected))
    assert out[:, 0, 0].sum() == 0 and out[:, 0, 1].sum() > 0  # the margin matters here


# ---------------------------------------------------------------------------------------------
# kaiming_normal_conv_linear_weight
# ---------------------------------------------------------------------------------------------


def test_kaiming_normal_draws_match_manual_normal_and_skip_others() -> None:
    net = nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Conv2d(3, 4, 2), nn.ConvTranspose2d(4, 4, 2), nn.Conv3d(1, 2, 2), nn.Linear(5, 6)
    )
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    torch.manual_seed(123)
    functional.kaiming_normal_conv_linear_weight(net)
    torch.manual_seed(123)
    for index in (0, 1, 3, 4):
        weight = before[f"{index}.weight"]
        fan_in = weight[0].numel()
        expected = torch.empty_like(weight).normal_(0.0, 1.0 / math.sqrt(3 * fan_in))
        torch.testing.assert_close(net[index].weight.detach(), expected)
        assert torch.equal(net[index].bias.detach(), before[f"{index}.bias"])
    assert torch.equal(net[2].weight.detach(), before["2.weight"])


def test_kaiming_normal_statistics() -> None:
    layer = nn.Linear(300, 400)
    functional.kaiming_normal_conv_linear_weight(layer)
    std = layer.weight.detach().std().item()
    assert abs(std - 1.0 / math.sqrt(900)) < 0.02 / math.sqrt(900) * 10
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module"):
        functional.kaiming_normal_conv_linear_weight("net")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_set_threshold_margin_takes_numpy_numbers_and_one_element_tensors() -> None:
    np = pytest.importorskip("numpy")
    labels = torch.tensor([[0.0, 1.0]])
    layer = Thresholded()
    functional.set_threshold_margin(layer, labels, threshold0=np.float32(0.5), threshold1=torch.tensor(2.0))
    assert isinstance(layer.v_threshold, torch.Tensor)
    torch.testing.assert_close(layer.v_threshold, torch.tensor([[0.5, 2.0]]))
    layer.eval()
    functional.set_threshold_margin(layer, labels, eval_threshold=np.int64(1))
    assert layer.v_threshold == 1.0 and type(layer.v_threshold) is float


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("kind", ["lif", "qif", "izhikevich"])
def test_a_threshold_margin_does_not_change_the_dtype_of_spikes_and_states(kind: str, v_reset: float | None) -> None:
    from snn.neuron import node_class

    cls = node_class(kind)
    assert cls is not None
    labels = torch.eye(3)[[0, 1]]
    for threshold_dtype, input_dtype in ((torch.float32, torch.float16), (torch.float64, torch.float32)):
        node = cls(step_mode="m", v_reset=v_reset)
        functional.set_threshold_margin(node, labels.to(threshold_dtype))
        x_seq = torch.rand(4, 2, 3, dtype=input_dtype) * 2.5
        spikes = node(x_seq)
        assert spikes.dtype == input_dtype and node.v.dtype == input_dtype
        # the same as the threshold given in the input's dtype
        same = cls(step_mode="m", v_reset=v_reset)
        functional.set_threshold_margin(same, labels.to(input_dtype))
        assert torch.equal(same(x_seq), spikes)
        assert torch.equal(same.v, node.v)
