"""Tests of snn.encoding against the encoders' definitions written out here.

Golden values: the weighted-phase table of Kim et al. (2018), reproduced in the reference
library's documentation, and latency spike trains worked out by hand.
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

from snn import encoding, functional, layer

# =============================================================================================
# PoissonEncoder
# =============================================================================================


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_poisson_exact_output_under_a_seed(dtype: torch.dtype) -> None:
    x = torch.rand(3, 17, dtype=torch.float64).to(dtype)
    torch.manual_seed(1234)
    spikes = encoding.PoissonEncoder()(x)
    torch.manual_seed(1234)
    expected = (torch.rand_like(x) <= x).to(dtype)  # one uniform per element, fire where u <= x
    assert spikes.dtype == dtype
    assert torch.equal(spikes, expected)


def test_poisson_statistics_match_the_probabilities() -> None:
    probabilities = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    samples = 40_000
    x = probabilities.expand(samples, -1).contiguous()
    spikes = encoding.PoissonEncoder()(x)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean(0).double()
    p = probabilities.double()
    sigma = (p * (1 - p) / samples).sqrt()
    # within 5 standard deviations of a Bernoulli mean (and exact for p = 0 and p = 1)
    assert torch.all((rate - p).abs() <= 5 * sigma + 1e-12), (rate, p)


def test_poisson_steps_are_independent_in_multi_step_mode() -> None:
    T, N, p = 2, 50_000, 0.4
    spikes = encoding.PoissonEncoder(step_mode="m")(torch.full((T, N), p))
    assert spikes.shape == (T, N)
    both = (spikes[0] * spikes[1]).mean().item()
    # P(s0 = s1 = 1) = p^2 for independent draws; the standard deviation is below 0.0025 here
    assert abs(both - p * p) < 0.0125


def test_poisson_values_outside_the_unit_interval_and_bad_input() -> None:
    x = torch.tensor([-0.5, 1.5, float("nan")])
    assert encoding.PoissonEncoder()(x).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor .*got dtype torch.int64"):
        encoding.PoissonEncoder()(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"x: expected a floating-point torch.Tensor"):
        encoding.PoissonEncoder()([0.5])
    with pytest.raises(ValueError, match="step_mode"):
        encoding.PoissonEncoder(step_mode="x")
    assert repr(encoding.PoissonEncoder(step_mode="m")) == "PoissonEncoder(step_mode=m)"


# =============================================================================================
# LatencyEncoder
# =============================================================================================


def _reference_latency_train(x: torch.Tensor, T: int) -> torch.Tensor:
    """The reference library's construction: one_hot of the rounded firing time, time moved first."""
    t_f = ((T - 1.0) * (1.0 - x)).round().long()
    spike = nn.functional.one_hot(t_f, num_classes=T).to(x)
    return spike.permute(x.dim(), *range(x.dim()))


def test_latency_linear_golden_values() -> None:
    # T = 4: t_f = round(3 * (1 - x)) = [3, round(2.1) = 2, round(1.5) = 2 (half to even), 0]
    x = torch.tensor([[0.0, 0.3, 0.5, 1.0]])
    encoder = encoding.LatencyEncoder(4)
    steps = [encoder(x) for _ in range(5)]
    assert [s.tolist() for s in steps] == [
        [[0.0, 0.0, 0.0, 1.0]],
        [[0.0, 0.0, 0.0, 0.0]],
        [[0.0, 1.0, 1.0, 0.0]],
        [[1.0, 0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0, 1.0]],  # the period starts over
    ]
    assert encoder.t == 1
    assert encoder.firing_step(x).tolist() == [[3, 2, 2, 0]]


@pytest.mark.parametrize("T", [1, 5, 16])
def test_latency_linear_train_equals_the_one_hot_construction(T: int) -> None:
    x = torch.rand(3, 2, 7)
    encoder = encoding.LatencyEncoder(T)
    train = torch.stack([encoder(x) for _ in range(T)])
    assert torch.equal(train, _reference_latency_train(x, T))
    assert torch.equal(train.sum(0), torch.ones_like(x))  # exactly one spike per element


def test_latency_log_matches_its_formula_and_stays_in_range_for_large_periods() -> None:
    T = 8
    x = torch.rand(1000, dtype=torch.float64)
    alpha = math.exp(T - 1.0) - 1.0
    expected = (T - 1.0 - torch.log(alpha * x + 1.0)).round().long()  # the reference's formula
    encoder = encoding.LatencyEncoder(T, enc_function="log")
    assert encoder.alpha == pytest.approx(alpha)
    assert torch.equal(encoder.firing_step(x), expected)
    train = torch.stack([encoder(x.float()) for _ in range(T)])
    assert torch.equal(train.argmax(0), expected)
    # exp(T - 1) overflows for T = 2000; the firing steps stay in [0, T - 1]
    big = encoding.LatencyEncoder(2000, enc_function="log")
    assert big.alpha == math.inf
    steps = big.firing_step(torch.tensor([0.0, 1e-300, 0.5, 1.0], dtype=torch.float64))
    assert steps.tolist() == [1999, round(-math.log(1e-300 + math.exp(-1999.0))), round(math.log(2.0)), 0]


def test_latency_multi_step_equals_single_steps_across_calls() -> None:
    x = torch.rand(2, 3)
    single = encoding.LatencyEncoder(5)
    expected = torch.stack([single(x) for _ in range(7)])
    multi = encoding.LatencyEncoder(5, step_mode="m")
    x_seq = x.unsqueeze(0).expand(7, -1, -1)
    got = torch.cat([multi(x_seq[:3]), multi(x_seq[3:])])
    assert torch.equal(got, expected)
    assert multi.t == single.t == 2


def test_latency_keeps_its_train_until_reset() -> None:
    encoder = encoding.LatencyEncoder(3)
    first = encoder(torch.tensor([1.0]))
    assert first.tolist() == [1.0]
    assert encoder(torch.tensor([0.0])).tolist() == [0.0]  # later inputs are ignored
    net = nn.Sequential(encoder, layer.Flatten())
    functional.reset_net(net)
    assert encoder.spike is None and encoder.t == 0
    assert encoder(torch.tensor([0.0])).tolist() == [0.0]
    assert encoder(torch.tensor([0.0])).tolist() == [0.0]
    assert encoder(torch.tensor([0.0])).tolist() == [1.0]


def test_stateful_encoders_refuse_an_input_of_another_shape_without_reset() -> None:
    encoder = encoding.LatencyEncoder(3)
    encoder(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"LatencyEncoder: the stored spike train encodes inputs of shape \[4, 2\] "
                       r"but the input has shape \[3, 2\] .*reset_net"):
        encoder(torch.rand(3, 2))
    multi = encoding.WeightedPhaseEncoder(3, step_mode="m")
    multi(torch.rand(3, 4, 2) * 0.5)
    with pytest.raises(ValueError, match=r"inputs of shape \[4, 2\] but the input has shape \[5, 2\]"):
        multi(torch.rand(3, 5, 2) * 0.5)
    pattern = torch.ones(2, 3)
    periodic = encoding.PeriodicEncoder(pattern)
    periodic(pattern)
    periodic()  # no input: nothing to check
    with pytest.raises(ValueError, match=r"PeriodicEncoder: the stored spike train encodes inputs of shape \[2, 3\]"):
        periodic(torch.ones(2, 4))
    functional.reset_net(periodic)
    assert periodic(torch.ones(2, 4)).shape == (4,)


def test_latency_dtype_and_errors() -> None:
    assert encoding.LatencyEncoder(4)(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"x: LatencyEncoder expects values in \[0, 1\], got 1 element"):
        encoding.LatencyEncoder(4)(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="outside"):
        encoding.LatencyEncoder(4)(torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        encoding.LatencyEncoder(4)(torch.tensor([1]))
    with pytest.raises(ValueError, match=r"enc_function: expected one of \('linear', 'log'\), got 'exp'"):
        encoding.LatencyEncoder(4, enc_function="exp")
    with pytest.raises(TypeError, match=r"T: expected an int >= 1, got float 4.0"):
        encoding.LatencyEncoder(4.0)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"T: expected an int >= 1, got 0"):
        encoding.LatencyEncoder(0)
    with pytest.raises(ValueError, match=r"x_seq: expected shape \[T, N, \*\] with T >= 1"):
        encoding.LatencyEncoder(4, step_mode="m")(torch.zeros(0, 2))


# =============================================================================================
# WeightedPhaseEncoder
# =============================================================================================


def test_weighted_phase_golden_table() -> None:
    # Kim et al. (2018), K = 8: phase i carries 2^-(i+1)
    x = torch.tensor([192 / 256, 1 / 256, 128 / 256, 255 / 256])
    encoder = encoding.WeightedPhaseEncoder(8)
    spikes = torch.stack([encoder(x) for _ in range(8)]).T
    assert spikes.tolist() == [
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ]


@pytest.mark.parametrize("K", [1, 4, 10])
def test_weighted_phase_reconstructs_every_multiple_of_the_resolution(K: int) -> None:
    x = torch.arange(2**K, dtype=torch.float64).div(2**K)  # 0, 2^-K, ..., 1 - 2^-K
    encoder = encoding.WeightedPhaseEncoder(K, step_mode="m")
    spikes = encoder(x.unsqueeze(0).expand(K, -1))
    weights = torch.tensor([2.0 ** -(i + 1) for i in range(K)], dtype=torch.float64)
    assert torch.equal((weights.unsqueeze(1) * spikes).sum(0), x)
    # the bits written out: spike[i] is bit (K - 1 - i) of x * 2^K
    integers = (x * 2**K).long()
    bits = torch.stack([(integers >> (K - 1 - i)) & 1 for i in range(K)]).to(x.dtype)
    assert torch.equal(spikes, bits)


def test_weighted_phase_errors_and_dtype() -> None:
    assert encoding.WeightedPhaseEncoder(3)(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"x: WeightedPhaseEncoder expects values in \[0, 0.875\]"):
        encoding.WeightedPhaseEncoder(3)(torch.tensor([0.9]))
    with pytest.raises(TypeError, match=r"K: expected an int >= 1, got bool True"):
        encoding.WeightedPhaseEncoder(True)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# =============================================================================================
# PeriodicEncoder
# =============================================================================================


def test_periodic_replays_the_first_input_and_defaults_to_its_pattern() -> None:
    pattern = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    encoder = encoding.PeriodicEncoder(torch.zeros(3, 2))
    assert [encoder(pattern).tolist() for _ in range(4)] == [[1, 0], [0, 1], [1, 1], [1, 0]]
    own = encoding.PeriodicEncoder(pattern)
    assert [own().tolist() for _ in range(4)] == [[1, 0], [0, 1], [1, 1], [1, 0]]
    assert "pattern" not in own.state_dict()  # a non-persistent buffer
    assert repr(own) == "PeriodicEncoder(T=3, step_mode=s)"


def test_periodic_multi_step_equals_single_steps() -> None:
    pattern = (torch.rand(3, 2, 4) > 0.5).float()
    single = encoding.PeriodicEncoder(pattern)
    expected = torch.stack([single(pattern) for _ in range(5)])
    multi = encoding.PeriodicEncoder(pattern, step_mode="m")
    assert torch.equal(multi(pattern.unsqueeze(0).expand(5, -1, -1, -1)), expected)


def test_periodic_errors() -> None:
    with pytest.raises(TypeError, match="spike: expected a torch.Tensor"):
        encoding.PeriodicEncoder([[1.0]])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"spike: expected shape \[T, N, \*\] with T >= 1, got \[0, 2\]"):
        encoding.PeriodicEncoder(torch.zeros(0, 2))
    with pytest.raises(TypeError, match="spike: expected a torch.Tensor with shape"):
        encoding.PeriodicEncoder(torch.zeros(2, 1))("a")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# =============================================================================================
# Bases, copies
# =============================================================================================


def test_custom_stateful_encoder_and_bad_train() -> None:
    class Repeat(encoding.StatefulEncoder):
        def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x, 2 * x])

    encoder = Repeat(2)
    assert [encoder(torch.tensor([1.0])).item() for _ in range(3)] == [1.0, 2.0, 1.0]

    class Broken(encoding.StatefulEncoder):
        def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor(1.0)

    with pytest.raises(ValueError, match=r"Broken.single_step_encode: expected a spike train of shape \[T, \*\]"):
        Broken(1)(torch.ones(1))
    with pytest.raises(NotImplementedError):
        encoding.StatefulEncoder(2)(torch.ones(1))
    with pytest.raises(NotImplementedError):
        encoding.StatelessEncoder()(torch.ones(1))


def test_encoders_copy_and_pickle_with_their_state() -> None:
    encoder = encoding.LatencyEncoder(4)
    encoder(torch.tensor([0.5]))  # fires at round(1.5) = 2
    for clone in (copy.deepcopy(encoder), pickle.loads(pickle.dumps(encoder))):
        assert clone.t == 1
        assert torch.equal(clone.spike, encoder.spike)
        assert [clone(torch.tensor([0.0])).item() for _ in range(3)] == [0.0, 1.0, 0.0]


def test_weighted_phase_in_half_precision_does_not_fire_for_weights_that_underflow() -> None:
    """2 ** -25 is 0 in float16: ``remainder >= 0`` fired for every element, 0 included."""
    encoder = encoding.WeightedPhaseEncoder(26)
    x = torch.tensor([0.0, 0.5, 0.75], dtype=torch.float16)
    spikes = torch.stack([encoder(x) for _ in range(26)])
    assert spikes.dtype == torch.float16
    assert spikes.sum(0).tolist() == [0.0, 1.0, 2.0]
    x64 = torch.rand(300, dtype=torch.float64) * 0.99
    kept = x64.clone()
    encoding.WeightedPhaseEncoder(8, step_mode="m")(x64.unsqueeze(0).expand(8, -1))
    assert torch.equal(x64, kept)  # the input is not written


def test_latency_linear_steps_of_half_inputs_are_computed_in_float32() -> None:
    assert encoding.LatencyEncoder(70000).firing_step(torch.zeros(1, dtype=torch.float16)).item() == 69999
    x = torch.tensor([0.3], dtype=torch.bfloat16)  # 0.30078125
    assert encoding.LatencyEncoder(1001).firing_step(x).item() == round(1000 * (1 - 0.30078125))


def test_poisson_spikes_carry_no_graph() -> None:
    x = torch.rand(3, requires_grad=True)
    spikes = encoding.PoissonEncoder()(x)
    assert not spikes.requires_grad and spikes.grad_fn is None


def test_stateful_encoders_refuse_non_tensor_inputs_after_storing_a_train() -> None:
    encoder = encoding.LatencyEncoder(3)
    encoder(torch.rand(2, 3))
    with pytest.raises(TypeError, match="x: expected a tensor .* got str"):
        encoder("garbage")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_detach_net_leaves_a_replayed_pattern_of_the_user_untouched() -> None:
    pattern = torch.rand(3, 2, requires_grad=True)
    encoder = encoding.PeriodicEncoder(pattern)
    encoder()
    functional.detach_net(encoder)
    assert pattern.requires_grad
    assert not encoder.spike.requires_grad and torch.equal(encoder.spike, pattern.detach())
