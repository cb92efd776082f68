"""Argument checks of snn.functional, snn.encoding and snn.monitor.firing_rate reported in review.

Each test fails on 541a80b: wrong shapes or tensor hyper-parameters silently gave wrong values,
meta tensors raised a raw RuntimeError, NumPy periods a TypeError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from snn import encoding, functional, neuron
from snn.errors import UnsupportedOperationError
from snn.monitor import firing_rate

META = torch.device("meta")


# -- set_threshold_margin ----------------------------------------------------------------------


def test_set_threshold_margin_refuses_class_indices() -> None:
    node = neuron.IFNode()
    node.train()
    with pytest.raises(ValueError, match=r"label_one_hot: expected one-hot labels of shape \[B, C, \*\] \(at least 2-D\), got shape \(2,\); for class indices"):
        functional.set_threshold_margin(node, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"label_one_hot: .*got shape \(\)"):
        functional.set_threshold_margin(node, torch.tensor(1.0))
    # an output layer with more dimensions: [B, C, H] labels, one threshold per element
    labels = torch.tensor([[[1, 0], [0, 1]]])
    functional.set_threshold_margin(node, labels)
    torch.testing.assert_close(node.v_threshold, torch.tensor([[[1.1, 0.9], [0.9, 1.1]]]))
    node.eval()  # evaluation mode does not read the labels (as the reference)
    functional.set_threshold_margin(node, torch.tensor([1, 0]), eval_threshold=1.5)
    assert node.v_threshold == 1.5


def test_set_threshold_margin_refuses_values_other_than_0_and_1() -> None:
    node = neuron.IFNode()
    node.train()
    with pytest.raises(ValueError, match=r"label_one_hot: expected one-hot .*got 2 at index \[0, 1\]"):
        functional.set_threshold_margin(node, torch.tensor([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match=r"got 0\.75"):  # smoothed labels would all get threshold0
        functional.set_threshold_margin(node, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_set_threshold_margin_one_hot_gives_per_sample_thresholds() -> None:
    node = neuron.IFNode()
    node.train()
    functional.set_threshold_margin(node, nn.functional.one_hot(torch.tensor([1, 0]), 2))
    expected = torch.tensor([[0.9, 1.1], [1.1, 0.9]])
    torch.testing.assert_close(node.v_threshold, expected)
    functional.set_threshold_margin(node, torch.tensor([[False, True], [True, False]]))
    torch.testing.assert_close(node.v_threshold, expected)
    with pytest.raises(UnsupportedOperationError, match="label_one_hot.*meta"):
        functional.set_threshold_margin(node, torch.empty(2, 2, device=META))


# -- kernel_dot_product: tensor hyper-parameters are checked like numbers ----------------------


@pytest.mark.parametrize("d", [-1, -1.0, np.int64(-2), torch.tensor(-1), torch.tensor(-2.0), torch.tensor([-1])])
def test_polynomial_negative_integer_power_of_integers_refused_for_every_form(d: object) -> None:
    x = torch.tensor([[1, 2], [0, 1]])
    with pytest.raises(ValueError, match="d: integer inputs take no negative integer power"):
        functional.kernel_dot_product(x, x, "polynomial", d)


def test_polynomial_tensor_d_matches_number_d() -> None:
    x = torch.tensor([[1, 2], [0, 1]])
    expected = torch.tensor([[25, 4], [4, 1]])  # (x @ x.T) ** 2 by hand: [[5, 2], [2, 1]]
    assert torch.equal(functional.kernel_dot_product(x, x, "polynomial", torch.tensor(2)), expected)
    xf = x.double()
    torch.testing.assert_close(
        functional.kernel_dot_product(xf, xf, "polynomial", torch.tensor(-1.0, dtype=torch.float64)),
        torch.tensor([[0.2, 0.5], [0.5, 1.0]], dtype=torch.float64),
    )


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_gaussian_tensor_sigma_checked_like_number(sigma: float) -> None:
    x = torch.rand(2, 3)
    with pytest.raises(ValueError, match="sigma: expected a positive number"):
        functional.kernel_dot_product(x, x, "gaussian", sigma)
    with pytest.raises(ValueError, match="sigma: expected a positive number"):
        functional.kernel_dot_product(x, x, "gaussian", torch.tensor(sigma))


@pytest.mark.parametrize("kernel", ["polynomial", "sigmoid", "gaussian"])
def test_bool_tensor_parameter_refused_like_bool(kernel: str) -> None:
    x = torch.rand(2, 3)
    for value in (True, torch.tensor(True)):
        with pytest.raises(TypeError, match="expected a real number or a one-element tensor"):
            functional.kernel_dot_product(x, x, kernel, value)


def test_gaussian_tensor_sigma_value() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    got = functional.kernel_dot_product(x, x, "gaussian", torch.tensor(5.0, dtype=torch.float64))
    off = float(np.exp(-25.0 / 50.0))  # distance 5, sigma 5
    torch.testing.assert_close(got, torch.tensor([[1.0, off], [off, 1.0]], dtype=torch.float64))


# -- meta tensors ------------------------------------------------------------------------------


def test_meta_tensors_raise_typed_error_where_values_are_read() -> None:
    m = torch.empty(2, 3, device=META)
    cases = [
        (lambda: encoding.LatencyEncoder(T=4)(m), "LatencyEncoder: x"),
        (lambda: encoding.WeightedPhaseEncoder(K=4)(m), "WeightedPhaseEncoder: x"),
        (
            lambda: functional.temporal_efficient_training_cross_entropy(
                torch.empty(3, 2, 4, device=META), torch.empty(2, dtype=torch.long, device=META)
            ),
            "temporal_efficient_training_cross_entropy: target",
        ),
        (lambda: functional.redundant_one_hot(torch.empty(2, dtype=torch.long, device=META), 3, 2), "labels"),
        (lambda: functional.first_spike_index(m), "first_spike_index: spikes"),
        (lambda: functional.kernel_dot_product(m, m, "gaussian", torch.tensor(1.0, device=META)), "sigma"),
        (lambda: functional.kernel_dot_product(torch.rand(2, 3), torch.rand(2, 3), "gaussian",
                                               torch.tensor(1.0, device=META)), "sigma"),
        (lambda: functional.spike_similar_loss(m, torch.empty(2, 3, device=META), "linear", "bce"), "spikes"),
    ]
    for call, name in cases:
        with pytest.raises(UnsupportedOperationError, match=f"{name}.*device 'meta'"):
            call()


def test_meta_tensors_work_where_nothing_is_read() -> None:
    m = torch.empty(2, 3, device=META)
    spikes = functional.first_spike_index(m.bool())
    assert spikes.device == META and spikes.shape == (2, 3) and spikes.dtype == torch.bool
    assert functional.first_spike_index(torch.empty(2, 0, device=META)).shape == (2, 0)
    assert functional.kernel_dot_product(m, m, "gaussian", 1.0).shape == (2, 2)
    assert functional.kernel_dot_product(m, m, "polynomial", torch.tensor(2.0, device=META)).device == META
    assert functional.redundant_one_hot(torch.empty(0, dtype=torch.long, device=META), 3, 2).shape == (0, 6)


# -- firing_rate's dim -------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [5, -3, (0, 2), [np.int64(7)]])
def test_firing_rate_dim_out_of_range(dim: object) -> None:
    with pytest.raises(ValueError, match=r"dim: expected dimensions in \[-2, 1\] for spikes of rank 2 .*got"):
        firing_rate(torch.ones(2, 3), dim=dim)  # type: ignore[arg-type]  # a NumPy integer in a list


@pytest.mark.parametrize("dim", [(0, 0), (1, -1)])
def test_firing_rate_dim_twice(dim: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=r"dim: expected distinct dimensions for spikes of rank 2 .*twice"):
        firing_rate(torch.ones(2, 3), dim=dim)


def test_firing_rate_numpy_and_scalar_dims() -> None:
    s = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(firing_rate(s, dim=np.int64(1)), torch.tensor([2 / 3, 1.0]))  # type: ignore[arg-type]  # NumPy int
    torch.testing.assert_close(firing_rate(s, dim=(0, -1)), torch.tensor(5 / 6))
    torch.testing.assert_close(firing_rate(torch.tensor(1.0), dim=0), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"rank 0"):
        firing_rate(torch.tensor(1.0), dim=1)


# -- online learning with T = 0 ----------------------------------------------------------------


def test_fptt_and_ottt_refuse_empty_sequences() -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    # a stand-in for fptt_online_training_init_w_ra(optimizer), which needs snn-online's learner:
    # the sequence is checked before any learner is looked up (this environment may have none)
    w_ra = [torch.zeros_like(p) for p in model.parameters()]
    with pytest.raises(ValueError, match=r"fptt_online_training: x_seq: .*at least one time step.*\(0, 1, 2\)"):
        functional.fptt_online_training(
            model, optimizer, torch.empty(0, 1, 2), torch.empty(0, 1, 1), nn.functional.mse_loss, 0.5, w_ra
        )
    with pytest.raises(ValueError, match=r"ottt_online_training: x_seq: .*at least one time step.*\(1, 0, 2\)"):
        functional.ottt_online_training(
            model, optimizer, torch.empty(1, 0, 2), torch.empty(1, 0, 1), nn.functional.mse_loss, True
        )
    assert torch.equal(model.weight, before)


# -- NumPy periods in snn.encoding -------------------------------------------------------------


def test_encoders_take_numpy_integer_periods() -> None:
    latency = encoding.LatencyEncoder(T=np.int64(3))  # type: ignore[arg-type]  # NumPy int
    assert type(latency.T) is int and latency.T == 3
    x = torch.tensor([[0.0, 0.5, 1.0]])
    assert [latency(x).tolist() for _ in range(3)] == [[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]]
    assert encoding.LatencyEncoder(T=np.int32(4), enc_function="log").alpha == pytest.approx(np.expm1(3.0))  # type: ignore[arg-type]  # NumPy int
    phase = encoding.WeightedPhaseEncoder(K=np.uint8(2))  # type: ignore[arg-type]  # NumPy int
    assert phase.T == 2 and [phase(torch.tensor([0.25])).item() for _ in range(2)] == [0.0, 1.0]
    for bad in (True, np.bool_(True), 3.0, np.float64(3.0)):
        with pytest.raises(TypeError, match="T: expected an int >= 1"):
            encoding.LatencyEncoder(T=bad)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match="K: expected an int >= 1, got 0"):
        encoding.WeightedPhaseEncoder(K=np.int64(0))  # type: ignore[arg-type]  # NumPy int
