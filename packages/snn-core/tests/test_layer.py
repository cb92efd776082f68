"""Tests of snn.layer against plain torch modules and per-step loops written here."""

from __future__ import annotations

import copy
import pickle
import re
import types
from typing import Any

import pytest
import torch
from torch import nn

import snn
from snn import layer, neuron
from snn.base import MemoryModule
from snn.errors import RegistryEntryNotFoundError


class RunningSum(MemoryModule):
    """A tiny stateful single-step module: ``s[t] = s[t-1] + x[t]``."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.register_memory("total", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total


def _running_sum_loop(x_seq: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(x_seq, dim=0)


# =============================================================================================
# Containers
# =============================================================================================


def test_multi_step_container_equals_per_step_loop() -> None:
    linear = nn.Linear(3, 2)
    net = layer.MultiStepContainer(RunningSum(), linear)
    x_seq = torch.randn(5, 4, 3)
    expected = torch.stack([linear(x_seq[: t + 1].sum(0)) for t in range(5)])
    torch.testing.assert_close(net(x_seq), expected)
    assert net.step_mode == "m"


def test_multi_step_container_rejects_children_in_multi_step_mode() -> None:
    with pytest.raises(ValueError, match=r"^RunningSum\.step_mode must be 's' inside this container\."):
        layer.MultiStepContainer(nn.ReLU(), RunningSum(step_mode="m"))
    with pytest.raises(ValueError, match=r"Conv2d\.step_mode must be 's' inside this container\."):
        layer.SeqToANNContainer(layer.Conv2d(1, 1, 1, step_mode="m"))


def test_multi_step_container_unknown_strategy_lists_known_names() -> None:
    with pytest.raises(RegistryEntryNotFoundError, match=r"unknown forward strategy 'nope'; known: .*'checkpointed'.*'loop'"):
        layer.MultiStepContainer(nn.ReLU(), strategy="nope")
    with pytest.raises(TypeError, match="strategy: expected a registered strategy name"):
        layer.MultiStepContainer(nn.ReLU(), strategy=None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_multi_step_container_checkpointed_strategy_equals_loop_values_and_grads() -> None:
    x_seq = torch.randn(6, 2, 3, requires_grad=True)
    linear = nn.Linear(3, 3)
    loop = layer.MultiStepContainer(RunningSum(), linear)
    ckpt = layer.MultiStepContainer(RunningSum(), copy.deepcopy(linear), strategy="checkpointed", k=2)
    y_loop = loop(x_seq)
    y_ckpt = ckpt(x_seq)
    torch.testing.assert_close(y_ckpt, y_loop)
    (g_loop,) = torch.autograd.grad(y_loop.square().sum(), x_seq)
    (g_ckpt,) = torch.autograd.grad(y_ckpt.square().sum(), x_seq)
    torch.testing.assert_close(g_ckpt, g_loop)
    assert "strategy='checkpointed', k=2" in repr(ckpt)


def test_multi_step_container_runs_third_party_strategy(temporary_plugin: Any) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def reversed_loop(module: Any, x_seq: torch.Tensor, **options: Any) -> torch.Tensor:
        calls.append((module, options))
        outputs = [module(x_seq[t]) for t in reversed(range(x_seq.shape[0]))]
        return torch.stack(outputs[::-1])

    @snn.hookimpl
    def snn_register_forward_strategies(register: Any) -> None:
        register("reversed_loop", reversed_loop)

    temporary_plugin(types.SimpleNamespace(snn_register_forward_strategies=snn_register_forward_strategies), name="rev")
    child = RunningSum()
    net = layer.MultiStepContainer(child, strategy="reversed_loop", scale=1)
    x_seq = torch.tensor([[1.0], [2.0], [3.0]])
    out = net(x_seq)
    assert out.flatten().tolist() == [6.0, 5.0, 3.0]  # summed from the last step backwards
    assert calls[0][0] is child and calls[0][1] == {"scale": 1}


def test_multi_step_container_refuses_strategies_that_cannot_run_its_children(temporary_plugin: Any) -> None:
    """``chunked`` runs a multi-step module and ``seq_to_ann`` all steps at once: single-step
    neurons under them would read time as the batch and answer wrongly, without an error."""
    with pytest.raises(ValueError, match="'chunked' runs a multi-step module.*chunk_multi_step_forward"):
        layer.MultiStepContainer(neuron.IFNode(), strategy="chunked", split_size=2)
    with pytest.raises(ValueError, match=r"'seq_to_ann' runs all time steps at once.*children \['1'\] are stateful"):
        layer.MultiStepContainer(nn.Linear(2, 2), neuron.IFNode(), strategy="seq_to_ann")
    stateless = layer.MultiStepContainer(nn.Linear(2, 3), nn.ReLU(), strategy="seq_to_ann")
    x_seq = torch.randn(4, 5, 2)
    torch.testing.assert_close(stateless(x_seq), torch.stack([stateless[1](stateless[0](x)) for x in x_seq]))
    stateless.append(neuron.IFNode())  # children can change after construction: checked per call
    with pytest.raises(ValueError, match="children \\['2'\\] are stateful"):
        stateless(x_seq)

    @snn.hookimpl
    def snn_register_forward_strategies(register: Any) -> None:
        register("whole_sequence", lambda module, x_seq: module(x_seq), module="multi_step")
        with pytest.raises(ValueError, match=r"module: expected what the strategy runs, one of \['single_step'"):
            register("bad_kind", lambda module, x_seq: module(x_seq), module="sequence")

    temporary_plugin(types.SimpleNamespace(snn_register_forward_strategies=snn_register_forward_strategies), name="whole")
    with pytest.raises(ValueError, match="'whole_sequence' runs a multi-step module"):
        layer.MultiStepContainer(nn.ReLU(), strategy="whole_sequence")


def test_multi_step_container_t_last_strategy() -> None:
    net = layer.MultiStepContainer(RunningSum(), strategy="t_last")
    assert net(torch.tensor([[1.0, 2.0, 3.0]])).tolist() == [[1.0, 3.0, 6.0]]


def test_seq_to_ann_container_equals_per_step_loop_and_accepts_tuples() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1)
    net = layer.SeqToANNContainer(conv, nn.ReLU())
    x_seq = torch.randn(4, 2, 2, 5, 5)
    expected = torch.stack([torch.relu(conv(x_seq[t])) for t in range(4)])
    torch.testing.assert_close(net(x_seq), expected)
    assert net.step_mode == "m"

    pool = layer.SeqToANNContainer(nn.MaxPool2d(2, return_indices=True))
    unpool = layer.SeqToANNContainer(nn.MaxUnpool2d(2))
    x_even = torch.randn(4, 2, 2, 4, 6)
    restored = unpool(pool(x_even))
    manual = torch.stack([nn.MaxUnpool2d(2)(*nn.MaxPool2d(2, return_indices=True)(x_even[t])) for t in range(4)])
    assert torch.equal(restored, manual)


def test_seq_to_ann_container_batch_norm_uses_t_times_n_samples() -> None:
    bn = nn.BatchNorm1d(3)
    reference = copy.deepcopy(bn)
    x_seq = torch.randn(4, 5, 3) * 3 + 1
    out = layer.SeqToANNContainer(bn)(x_seq)
    expected = reference(x_seq.reshape(20, 3)).reshape(4, 5, 3)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(bn.running_mean, reference.running_mean)


def test_t_last_containers() -> None:
    stateful = layer.TLastMultiStepContainer(RunningSum())
    assert stateful(torch.tensor([[1.0, 2.0, 3.0]])).tolist() == [[1.0, 3.0, 6.0]]

    linear = nn.Linear(4, 2)
    stateless = layer.TLastSeqToANNContainer(linear, nn.Tanh())
    x_seq = torch.randn(3, 4, 6)  # [N, C, T]
    expected = torch.stack([torch.tanh(linear(x_seq[..., t])) for t in range(6)], dim=-1)
    torch.testing.assert_close(stateless(x_seq), expected)
    assert stateful.step_mode == stateless.step_mode == "m"


def test_empty_containers_are_identity() -> None:
    x_seq = torch.randn(3, 2)
    assert torch.equal(layer.MultiStepContainer()(x_seq), x_seq)
    assert torch.equal(layer.SeqToANNContainer()(x_seq), x_seq)


def test_slicing_containers_keeps_their_kind_and_settings() -> None:
    relu, tanh = nn.ReLU(), nn.Tanh()
    ckpt = layer.MultiStepContainer(relu, tanh, strategy="checkpointed", k=3)
    tail = ckpt[1:]
    assert type(tail) is layer.MultiStepContainer and tail.strategy == "checkpointed"
    assert tail.strategy_options == {"k": 3} and list(tail) == [tanh]
    assert ckpt[0] is relu
    head = layer.StepModeContainer(True, "m", relu, tanh)[:1]
    assert type(head) is layer.StepModeContainer and head.stateful and head.step_mode == "m"
    x_seq = torch.randn(3, 2)
    assert torch.equal(layer.SeqToANNContainer(relu, tanh)[::-1](x_seq), torch.relu(torch.tanh(x_seq)))


def test_step_mode_container_modes() -> None:
    linear = nn.Linear(3, 3)
    x_seq = torch.randn(4, 2, 3)

    single = layer.StepModeContainer(True, "s", RunningSum(), linear)
    torch.testing.assert_close(single(x_seq[0]), linear(x_seq[0]))

    stateful = layer.StepModeContainer(True, "m", RunningSum(), linear)
    torch.testing.assert_close(stateful(x_seq), linear(_running_sum_loop(x_seq)))

    stateless = layer.StepModeContainer(False, "m", linear, nn.ReLU())
    torch.testing.assert_close(stateless(x_seq), torch.relu(linear(x_seq)))
    assert "stateful=False, step_mode=m" in repr(stateless)

    nested = layer.StepModeContainer(False, "s", layer.StepModeContainer(True, "s", nn.Identity()))
    assert nested[0].step_mode == "s"


def test_step_mode_container_argument_errors() -> None:
    with pytest.raises(TypeError, match=r"step_mode: expected 's' or 'm', got a module \(Linear\).*signature"):
        layer.StepModeContainer(True, nn.Linear(2, 2))  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="stateful: expected a bool"):
        layer.StepModeContainer("yes", "s")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    assert layer.StepModeContainer(1, "m", nn.ReLU()).stateful is True  # 0 and 1 as in SpikingJelly
    with pytest.raises(ValueError, match="step_mode"):
        layer.StepModeContainer(True, "x", nn.ReLU())
    with pytest.raises(ValueError, match=r"RunningSum\.step_mode must be 's'"):
        layer.StepModeContainer(True, "m", RunningSum(step_mode="m"))


def test_element_wise_recurrent_container_running_sum_survives_reset() -> None:
    net = layer.ElementWiseRecurrentContainer(nn.Identity(), torch.add, step_mode="m")
    x_seq = torch.tensor([[1.0], [2.0], [3.0]])
    assert net(x_seq).flatten().tolist() == [1.0, 3.0, 6.0]
    net.reset()
    assert net.y is None
    assert net(x_seq).flatten().tolist() == [1.0, 3.0, 6.0]


def test_element_wise_recurrent_container_single_step_equals_manual_loop() -> None:
    sub = nn.Tanh()
    net = layer.ElementWiseRecurrentContainer(sub, torch.mul)
    x_seq = torch.randn(5, 2, 3)
    y = torch.zeros(2, 3)
    for t in range(5):
        y = torch.tanh(y * x_seq[t])
        torch.testing.assert_close(net(x_seq[t]), y)


def test_element_wise_recurrent_container_errors() -> None:
    with pytest.raises(ValueError, match=r"RunningSum\.step_mode must be 's' inside this container"):
        layer.ElementWiseRecurrentContainer(RunningSum(step_mode="m"), torch.add)
    with pytest.raises(TypeError, match="element_wise_function: expected a callable"):
        layer.ElementWiseRecurrentContainer(nn.Identity(), 3)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="sub_module: expected an nn.Module"):
        layer.ElementWiseRecurrentContainer(torch.relu, torch.add)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_linear_recurrent_container_equals_manual_loop(step_mode: str) -> None:
    sub = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
    net = layer.LinearRecurrentContainer(sub, in_features=3, out_features=2, step_mode=step_mode)
    x_seq = torch.randn(5, 4, 3)
    w, b = net.rc.weight, net.rc.bias
    y = torch.zeros(4, 2)
    expected = []
    for t in range(5):
        z = torch.cat((x_seq[t], y), dim=-1) @ w.T + b
        y = sub(z)
        expected.append(y)
    if step_mode == "m":
        out = net(x_seq)
    else:
        out = torch.stack([net(x_seq[t]) for t in range(5)])
    torch.testing.assert_close(out, torch.stack(expected))
    net.reset()  # starts again from y = 0
    first = net(x_seq)[0] if step_mode == "m" else net(x_seq[0])
    torch.testing.assert_close(first, expected[0])


def test_linear_recurrent_container_errors() -> None:
    net = layer.LinearRecurrentContainer(nn.Linear(3, 2), 3, 2)
    with pytest.raises(ValueError, match=r"x: expected shape \[N, \*, 3\]"):
        net(torch.randn(4, 5))
    bad = layer.LinearRecurrentContainer(nn.Linear(3, 4), 3, 2)
    with pytest.raises(ValueError, match="sub_module: expected an output of shape"):
        bad(torch.randn(4, 3))
    with pytest.raises(ValueError, match="out_features: expected a positive int"):
        layer.LinearRecurrentContainer(nn.Identity(), 3, 0)
    with pytest.raises(TypeError, match="in_features"):
        layer.LinearRecurrentContainer(nn.Identity(), 3.0, 2)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# =============================================================================================
# Step-mode-aware wrappers
# =============================================================================================

# (wrapper class, torch class, args, kwargs, shape of one step)
WRAPPER_CASES: list[tuple[type, type, tuple[Any, ...], dict[str, Any], tuple[int, ...]]] = [
    (layer.Linear, nn.Linear, (4, 3), {}, (2, 4)),
    (layer.Conv1d, nn.Conv1d, (2, 3, 3), {}, (2, 2, 7)),
    (layer.Conv2d, nn.Conv2d, (2, 3, 3), {"padding": 1}, (2, 2, 5, 5)),
    (layer.Conv3d, nn.Conv3d, (2, 3, 2), {}, (2, 2, 3, 4, 4)),
    (layer.ConvTranspose1d, nn.ConvTranspose1d, (2, 3, 3), {"stride": 2}, (2, 2, 5)),
    (layer.ConvTranspose2d, nn.ConvTranspose2d, (2, 3, 3), {"stride": 2}, (2, 2, 3, 4)),
    (layer.ConvTranspose3d, nn.ConvTranspose3d, (2, 1, 2), {}, (2, 2, 3, 3, 3)),
    (layer.GroupNorm, nn.GroupNorm, (2, 4), {}, (2, 4, 3, 3)),
    (layer.MaxPool1d, nn.MaxPool1d, (2,), {}, (2, 3, 8)),
    (layer.MaxPool2d, nn.MaxPool2d, (2,), {"stride": 1}, (2, 3, 5, 5)),
    (layer.MaxPool3d, nn.MaxPool3d, (2,), {}, (2, 1, 4, 4, 4)),
    (layer.AvgPool1d, nn.AvgPool1d, (3,), {"stride": 2}, (2, 3, 9)),
    (layer.AvgPool2d, nn.AvgPool2d, (2,), {}, (2, 3, 4, 6)),
    (layer.AvgPool3d, nn.AvgPool3d, (2,), {}, (2, 1, 4, 4, 4)),
    (layer.AdaptiveAvgPool1d, nn.AdaptiveAvgPool1d, (3,), {}, (2, 3, 7)),
    (layer.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, ((2, 3),), {}, (2, 3, 5, 7)),
    (layer.AdaptiveAvgPool3d, nn.AdaptiveAvgPool3d, (2,), {}, (2, 1, 4, 5, 4)),
    (layer.Flatten, nn.Flatten, (), {}, (2, 3, 4, 5)),
    (layer.Upsample, nn.Upsample, (), {"scale_factor": 2, "mode": "nearest"}, (2, 3, 4, 4)),
    (layer.Upsample, nn.Upsample, (), {"scale_factor": 2, "mode": "bilinear"}, (2, 3, 3, 4)),
    (layer.BatchNorm1d, nn.BatchNorm1d, (3,), {}, (4, 3)),
    (layer.BatchNorm1d, nn.BatchNorm1d, (3,), {}, (4, 3, 5)),
    (layer.BatchNorm2d, nn.BatchNorm2d, (3,), {}, (4, 3, 4, 4)),
    (layer.BatchNorm3d, nn.BatchNorm3d, (3,), {}, (4, 3, 2, 3, 3)),
]

_IDS = [f"{case[0].__name__}-{len(case[4])}d" for case in WRAPPER_CASES]
T = 3


def _pair(case: tuple[type, type, tuple[Any, ...], dict[str, Any], tuple[int, ...]], step_mode: str) -> tuple[nn.Module, nn.Module]:
    wrapper_cls, torch_cls, args, kwargs, _ = case
    wrapper = wrapper_cls(*args, **kwargs, step_mode=step_mode)
    twin = torch_cls(*args, **kwargs)
    twin.load_state_dict(wrapper.state_dict())
    return wrapper, twin


@pytest.mark.parametrize("case", WRAPPER_CASES, ids=_IDS)
def test_wrapper_single_step_equals_torch_module(case: Any) -> None:
    wrapper, twin = _pair(case, "s")
    x = torch.randn(case[4])
    torch.testing.assert_close(wrapper(x), twin(x), rtol=0, atol=0)
    assert isinstance(wrapper, case[1]) and isinstance(wrapper, snn.base.StepModule)
    assert set(wrapper.state_dict()) == set(twin.state_dict())


@pytest.mark.parametrize("case", WRAPPER_CASES, ids=_IDS)
def test_wrapper_multi_step_equals_per_step_loop(case: Any) -> None:
    wrapper, twin = _pair(case, "m")
    x_seq = torch.randn(T, *case[4])
    if issubclass(case[1], nn.modules.batchnorm._BatchNorm):
        # training: statistics over all T * N samples (not per step), running stats updated once
        expected = twin(x_seq.flatten(0, 1)).unflatten(0, (T, case[4][0]))
        torch.testing.assert_close(wrapper(x_seq), expected)
        torch.testing.assert_close(wrapper.running_var, twin.running_var)
        wrapper.eval()
        twin.eval()
    expected = torch.stack([twin(x_seq[t]) for t in range(T)])
    torch.testing.assert_close(wrapper(x_seq), expected)
    assert "step_mode=m" in repr(wrapper)


# Wrappers with a fixed rank in step mode 'm', given one step (rank one short); the others given
# an input below their minimum rank.
_RANK_CASES = [
    (case, case[4]) for case in WRAPPER_CASES if case[0] not in (layer.Linear, layer.Flatten, layer.GroupNorm, layer.Upsample)
    and case[4] != (4, 3, 5)  # [N, C, L] is also a valid [T, N, C] sequence for BatchNorm1d
] + [
    (WRAPPER_CASES[_IDS.index("GroupNorm-4d")], (2, 4)),
    (WRAPPER_CASES[_IDS.index("Upsample-4d")], (2, 3, 4)),
]


@pytest.mark.parametrize(("case", "shape"), _RANK_CASES, ids=[f"{c[0].__name__}-{list(s)}" for c, s in _RANK_CASES])
def test_wrappers_reject_single_step_inputs_in_multi_step_mode(case: Any, shape: tuple[int, ...]) -> None:
    wrapper, _ = _pair(case, "m")
    with pytest.raises(ValueError, match=r"expected x with shape \[T, N, C.*\], but got x with shape \["):
        wrapper(torch.randn(shape))


def test_rank_error_message_form() -> None:
    conv = layer.Conv2d(1, 1, 1, step_mode="m")
    with pytest.raises(ValueError) as info:
        conv(torch.zeros(2, 1, 3, 3))
    assert str(info.value).endswith("expected x with shape [T, N, C, H, W], but got x with shape [2, 1, 3, 3]")
    with pytest.raises(ValueError, match=r"expected x with shape \[T, N, \*\], but got x with shape \[5\]"):
        layer.Flatten(step_mode="m")(torch.zeros(5))
    with pytest.raises(ValueError, match=r"expected x with shape \[T, N, C\] or \[T, N, C, L\]"):
        layer.BatchNorm1d(3, step_mode="m")(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        layer.Conv2d(1, 1, 1, step_mode="m")([1.0])


def test_linear_multi_step_runs_on_whole_sequence() -> None:
    wrapper = layer.Linear(3, 2, step_mode="m")
    x_seq = torch.randn(4, 5, 3)
    torch.testing.assert_close(wrapper(x_seq), x_seq @ wrapper.weight.T + wrapper.bias)
    with pytest.raises(ValueError, match=r"expected x with shape \[T, N, \*, in_features\]"):
        wrapper(torch.randn(3))


def test_flatten_multi_step_counts_dimensions_per_step() -> None:
    x_seq = torch.randn(3, 2, 4, 5, 6)
    assert layer.Flatten(step_mode="m")(x_seq).shape == (3, 2, 120)
    assert layer.Flatten(start_dim=2, step_mode="m")(x_seq).shape == (3, 2, 4, 30)


def test_wrapper_constructor_accepts_reference_style_positional_step_mode() -> None:
    conv = layer.Conv2d(1, 2, 3, 1, 0, 1, 1, True, "zeros", "m")
    assert conv.step_mode == "m" and conv.out_channels == 2
    bn = layer.BatchNorm2d(3, 1e-5, 0.1, True, True, "m")
    assert bn.step_mode == "m"
    assert layer.MaxPool2d(2, step_mode="m").step_mode == "m"
    assert layer.Linear(2, 3, dtype=torch.float64).weight.dtype == torch.float64
    assert layer.Conv1d(2, 3, 1).step_mode == "s"


def test_wrapper_constructor_and_step_mode_errors() -> None:
    with pytest.raises(ValueError, match="step_mode"):
        layer.Conv2d(1, 1, 1, step_mode="x")
    with pytest.raises(TypeError, match=r"Conv2d\(\): missing a required argument: 'out_channels'"):
        layer.Conv2d(1)
    conv = layer.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="step_mode"):
        conv.step_mode = "t"
    assert conv.step_mode == "s"


def test_wrappers_survive_deepcopy_and_pickle() -> None:
    conv = layer.Conv2d(2, 2, 1, step_mode="m")
    for clone in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert clone.step_mode == "m"
        x_seq = torch.randn(2, 1, 2, 3, 3)
        torch.testing.assert_close(clone(x_seq), conv(x_seq))


@pytest.mark.parametrize(
    ("pool_cls", "unpool_cls", "step_shape"),
    [
        (layer.MaxPool1d, layer.MaxUnpool1d, (2, 3, 8)),
        (layer.MaxPool2d, layer.MaxUnpool2d, (2, 3, 4, 6)),
        (layer.MaxPool3d, layer.MaxUnpool3d, (2, 1, 4, 4, 2)),
    ],
)
def test_max_pool_indices_and_max_unpool_round_trip_in_multi_step_mode(
    pool_cls: type, unpool_cls: type, step_shape: tuple[int, ...]
) -> None:
    pool = pool_cls(2, return_indices=True, step_mode="m")
    unpool = unpool_cls(2, step_mode="m")
    x_seq = torch.randn(T, *step_shape)
    values, indices = pool(x_seq)
    assert values.shape[:2] == indices.shape[:2] == (T, step_shape[0])
    restored = unpool(values, indices)
    torch_pool = getattr(nn, pool_cls.__name__)(2, return_indices=True)
    torch_unpool = getattr(nn, unpool_cls.__name__)(2)
    expected = torch.stack([torch_unpool(*torch_pool(x_seq[t])) for t in range(T)])
    assert torch.equal(restored, expected)
    # every kept value sits where it came from; the rest is zero
    kept = restored != 0
    assert torch.equal(restored[kept], x_seq[kept])
    # single-step mode is plain torch
    pool.step_mode = unpool.step_mode = "s"
    v0, i0 = pool(x_seq[0])
    assert torch.equal(unpool(v0, i0), expected[0])


def test_max_unpool_output_size_and_rank_checks_in_multi_step_mode() -> None:
    pool = layer.MaxPool2d(2, return_indices=True, step_mode="m")
    unpool = layer.MaxUnpool2d(2, step_mode="m")
    x_seq = torch.randn(T, 2, 1, 5, 5)
    values, indices = pool(x_seq)
    assert unpool(values, indices, output_size=[5, 5]).shape == (T, 2, 1, 5, 5)
    assert unpool(values, indices, output_size=x_seq.shape).shape == (T, 2, 1, 5, 5)
    with pytest.raises(ValueError, match=r"expected indices with shape \[T, N, C, H, W\]"):
        unpool(values, indices[0])
    with pytest.raises(ValueError, match=rf"expected indices with the shape of x \[{T}, 2, 1, 2, 2\]"):
        unpool(values, indices[:, :1])


@pytest.mark.parametrize("step_mode_layer", ["MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"])
def test_max_unpool_refuses_indices_of_another_shape_or_dtype(step_mode_layer: str) -> None:
    """Same rank, other shape (torch's RuntimeError before), or int32: the typed errors."""
    spatial = {"MaxUnpool1d": (6,), "MaxUnpool2d": (6, 6), "MaxUnpool3d": (4, 4, 4)}[step_mode_layer]
    pool = getattr(layer, step_mode_layer.replace("Unpool", "Pool"))(2, return_indices=True, step_mode="m")
    unpool = getattr(layer, step_mode_layer)(2, step_mode="m")
    values, indices = pool(torch.randn(T, 2, 3, *spatial))
    _, other = pool(torch.randn(T, 2, 3, *(2 * d for d in spatial)))  # pooled from a larger input
    name = f"{step_mode_layer} (step_mode='m')"
    with pytest.raises(ValueError) as info:
        unpool(values, other)
    assert str(info.value) == (
        f"{name}: expected indices with the shape of x {list(values.shape)} (as the matching MaxPool "
        f"returned them), but got indices with shape {list(other.shape)}"
    )
    with pytest.raises(TypeError, match=rf"{re.escape(name)}: indices: expected the int64 indices .* got dtype torch.int32"):
        unpool(values, indices.int())
    torch.testing.assert_close(unpool(values, indices).shape, torch.Size([T, 2, 3, *spatial]))


def test_conv_transpose_output_size_in_multi_step_mode() -> None:
    deconv = layer.ConvTranspose2d(2, 1, 3, stride=2, step_mode="m")
    twin = nn.ConvTranspose2d(2, 1, 3, stride=2)
    twin.load_state_dict(deconv.state_dict())
    x_seq = torch.randn(2, 3, 2, 4, 4)
    expected = torch.stack([twin(x_seq[t], output_size=[10, 10]) for t in range(2)])
    torch.testing.assert_close(deconv(x_seq, output_size=[10, 10]), expected)
    torch.testing.assert_close(deconv(x_seq, output_size=[2, 3, 1, 10, 10]), expected)


def test_batch_norm_multi_step_uses_t_times_n_statistics() -> None:
    bn = layer.BatchNorm2d(2, step_mode="m")
    x_seq = torch.randn(4, 3, 2, 2, 2) * torch.arange(1.0, 5.0).view(4, 1, 1, 1, 1)  # scale differs per step
    out = bn(x_seq)
    flat = x_seq.permute(2, 0, 1, 3, 4).reshape(2, -1)  # [C, T * N * H * W]
    mean = flat.mean(1).view(1, 1, 2, 1, 1)
    var = flat.var(1, unbiased=False).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(out, (x_seq - mean) / torch.sqrt(var + bn.eps))
    # a per-step BatchNorm would give each step zero mean; here only the whole sequence is centred
    assert out[0].mean().abs() > 1e-3


def test_wrappers_inside_seq_to_ann_container_stay_single_step() -> None:
    conv = layer.Conv2d(1, 2, 3, padding=1)
    bn = layer.BatchNorm2d(2)
    net = layer.SeqToANNContainer(conv, bn)
    x_seq = torch.randn(3, 2, 1, 4, 4)
    twin_conv, twin_bn = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2)
    twin_conv.load_state_dict(conv.state_dict())
    twin_bn.load_state_dict(bn.state_dict())
    expected = twin_bn(twin_conv(x_seq.flatten(0, 1))).unflatten(0, (3, 2))
    torch.testing.assert_close(net(x_seq), expected)


# =============================================================================================
# Dropout
# =============================================================================================


def test_dropout_reuses_one_mask_across_time_until_reset() -> None:
    drop = layer.Dropout(0.5)
    x = torch.ones(4, 64)
    first = drop(x)
    assert set(first.unique().tolist()) <= {0.0, 2.0}
    for _ in range(3):
        assert torch.equal(drop(x), first)
    mask = drop.mask
    drop.reset()
    assert drop.mask is None
    again = drop(x)
    assert not torch.equal(again, first)  # 256 fair coins: a fresh mask differs
    assert not torch.equal(drop.mask, mask)


def test_dropout_multi_step_applies_the_same_mask_to_every_step() -> None:
    drop = layer.Dropout(0.25, step_mode="m")
    x_seq = torch.randn(5, 3, 40)
    out = drop(x_seq)
    mask = drop.mask
    assert mask.shape == (3, 40)
    torch.testing.assert_close(out, x_seq * mask)
    kept = mask != 0
    torch.testing.assert_close(mask[kept], torch.full_like(mask[kept], 1 / 0.75))
    # the mask persists into the next call (and into single-step mode) until reset
    torch.testing.assert_close(drop(x_seq), x_seq * mask)
    drop.step_mode = "s"
    torch.testing.assert_close(drop(x_seq[0]), x_seq[0] * mask)


def test_dropout_single_and_multi_step_agree_for_the_same_seed() -> None:
    x_seq = torch.randn(4, 2, 30)
    torch.manual_seed(3)
    multi = layer.Dropout(0.4, step_mode="m")(x_seq)
    torch.manual_seed(3)
    single = layer.Dropout(0.4)
    assert torch.equal(torch.stack([single(x) for x in x_seq]), multi)


def test_dropout_eval_is_identity_and_edge_probabilities() -> None:
    drop = layer.Dropout(0.9)
    drop.eval()
    x = torch.randn(3, 5)
    assert drop(x) is x and drop.mask is None
    assert torch.equal(layer.Dropout(0.0)(x), x)
    assert torch.equal(layer.Dropout(1.0)(x), torch.zeros_like(x))
    assert repr(layer.Dropout(0.3, step_mode="m")) == "Dropout(p=0.3, step_mode=m)"


def test_dropout_errors() -> None:
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\], got 1.5"):
        layer.Dropout(1.5)
    with pytest.raises(TypeError, match="p: expected a probability"):
        layer.Dropout("0.5")  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    drop = layer.Dropout(0.5)
    drop(torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask was sampled for steps of shape \\[2, 3\\].*reset"):
        drop(torch.ones(4, 3))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor with shape \\[N, \\*\\], got list"):
        layer.Dropout(0.5)([[1.0]])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    spikes = torch.rand(3, 2, 4) > 0.5
    with pytest.raises(TypeError, match="x_seq: expected a floating tensor in training.*torch.bool"):
        layer.Dropout(0.5, step_mode="m")(spikes)
    with pytest.raises(TypeError, match="x: expected a floating tensor in training.*torch.bool"):
        layer.Dropout(0.5)(spikes[0])
    evaluating = layer.Dropout(0.5, step_mode="m").eval()
    assert evaluating(spikes) is spikes  # the identity in evaluation, any dtype


# =============================================================================================
# With the library's neurons
# =============================================================================================


def _manual_if(x_seq: torch.Tensor, v_threshold: float = 1.0, v_reset: float = 0.0) -> torch.Tensor:
    """Integrate-and-fire with hard reset, written out: h = v + x, s = H(h - vth), v = s*vr + (1-s)*h."""
    v = torch.full_like(x_seq[0], v_reset)
    spikes = []
    for x in x_seq:
        h = v + x
        s = (h >= v_threshold).to(x.dtype)
        v = s * v_reset + (1 - s) * h
        spikes.append(s)
    return torch.stack(spikes)


def test_multi_step_container_runs_single_step_neurons_like_a_manual_loop() -> None:
    from snn.neuron import IFNode

    x_seq = torch.rand(8, 3, 5) * 0.8
    node = IFNode()
    net = layer.MultiStepContainer(node)
    expected = _manual_if(x_seq)
    assert torch.equal(net(x_seq), expected)
    assert node.step_mode == "s"
    node.reset()
    assert torch.equal(net(x_seq), expected)


def test_conv_bn_if_network_in_multi_step_mode_equals_flattened_layers_and_manual_neuron() -> None:
    from snn.neuron import IFNode

    net = nn.Sequential(
        layer.Conv2d(1, 2, 3, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(2, step_mode="m"),
        IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
    )
    conv, bn = nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2)
    conv.load_state_dict(net[0].state_dict())
    bn.load_state_dict(net[1].state_dict())
    x_seq = torch.rand(4, 2, 1, 5, 5) * 2
    currents = bn(conv(x_seq.flatten(0, 1))).unflatten(0, (4, 2))
    expected = _manual_if(currents).flatten(2)
    torch.testing.assert_close(net(x_seq), expected)


def test_element_wise_recurrent_container_with_if_neuron() -> None:
    from snn.neuron import IFNode

    net = layer.ElementWiseRecurrentContainer(IFNode(), torch.add, step_mode="m")
    x_seq = torch.rand(6, 2, 4) * 0.7
    # manual: the neuron's input is x[t] + s[t-1]
    v = torch.zeros(2, 4)
    s = torch.zeros(2, 4)
    expected = []
    for x in x_seq:
        h = v + (x + s)
        s = (h >= 1.0).float()
        v = (1 - s) * h
        expected.append(s)
    assert torch.equal(net(x_seq), torch.stack(expected))


@pytest.mark.parametrize("kind", ["element_wise", "linear"])
def test_recurrent_containers_name_reset_net_when_the_batch_changes(kind: str) -> None:
    net: snn.base.MemoryModule = (
        layer.ElementWiseRecurrentContainer(nn.Identity(), torch.add)
        if kind == "element_wise" else layer.LinearRecurrentContainer(nn.Linear(2, 2), 2, 2)
    )
    net(torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"the state y has shape \[1, 2\] but the input step has shape \[3, 2\].*reset_net"):
        net(torch.zeros(3, 2))  # element-wise: the old y would broadcast silently
    snn.functional.reset_net(net)
    assert net(torch.zeros(3, 2)).shape == (3, 2)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        net([[0.0, 0.0]])  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    net.step_mode = "m"
    snn.functional.reset_net(net)
    with pytest.raises(ValueError, match=r"x_seq: expected shape \[T, N, \*\] with T >= 1, got \(0, 3, 2\)"):
        net(torch.empty(0, 3, 2))


def test_containers_check_the_step_mode_of_every_module_inside_at_each_call() -> None:
    with pytest.raises(ValueError, match=r"IFNode.step_mode must be 's' inside this container.*'0.0'"):
        layer.MultiStepContainer(nn.Sequential(snn.neuron.IFNode(step_mode="m")))
    containers: list[nn.Module] = [
        layer.MultiStepContainer(snn.neuron.IFNode()),
        layer.TLastMultiStepContainer(snn.neuron.IFNode()),
        layer.SeqToANNContainer(layer.Linear(2, 2)),
        layer.StepModeContainer(True, "m", snn.neuron.IFNode()),
    ]
    for container in containers:
        child = next(iter(container.children()))
        child.step_mode = "m"  # after construction: each step [N, *] would be read as [T, N]
        with pytest.raises(ValueError, match="step_mode must be 's' inside this container"):
            container(torch.rand(3, 4, 2))
        child.step_mode = "s"
        assert container(torch.rand(3, 4, 2)).shape[0] == 3
