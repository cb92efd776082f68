"""Tests of snn.functional.forward against plain per-step loops written here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn.base import MemoryModule
from snn.functional.forward import (
    apply_modules,
    chunk_multi_step_forward,
    multi_step_forward,
    seq_to_ann_forward,
    t_last_multi_step_forward,
    t_last_seq_to_ann_forward,
)


class RunningSum(MemoryModule):
    """A tiny stateful single-step module: ``s[t] = s[t-1] + x[t]``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_memory("total", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total


class LeakyTrace(MemoryModule):
    """``v[t] = 0.5 * v[t-1] + x[t]``, multi-step by its own loop; records chunk lengths."""

    def __init__(self) -> None:
        super().__init__(step_mode="m")
        self.register_memory("v", 0.0)
        self.seen_lengths: list[int] = []

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.seen_lengths.append(x_seq.shape[0])
        out = []
        for x in x_seq:
            self.v = 0.5 * self.v + x
            out.append(self.v)
        return torch.stack(out)


def _linear_relu() -> list[nn.Module]:
    return [nn.Linear(4, 3), nn.ReLU()]


# -- apply_modules ---------------------------------------------------------------------------


def test_apply_modules_single_list_and_tuple_of_modules() -> None:
    linear, relu = _linear_relu()
    x = torch.randn(5, 4)
    expected = torch.relu(linear(x))
    assert torch.equal(apply_modules(x, [linear, relu]), expected)
    assert torch.equal(apply_modules(x, (linear, relu)), expected)
    assert torch.equal(apply_modules(x, linear), linear(x))


def test_apply_modules_splats_tuple_input_into_first_module_only() -> None:
    received = []

    def second(y: object) -> object:
        received.append(y)
        return y

    out = apply_modules((torch.tensor(2.0), torch.tensor(3.0)), [lambda a, b: (a * b, a + b), second])
    assert len(received) == 1 and isinstance(received[0], tuple)  # later modules get one argument
    assert out[0].item() == 6.0 and out[1].item() == 5.0


def test_apply_modules_calls_sequential_once_as_a_whole() -> None:
    seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    calls = []
    seq.register_forward_hook(lambda *_: calls.append(1))
    apply_modules(torch.randn(2, 4), seq)
    assert len(calls) == 1


def test_apply_modules_rejects_non_callables_and_empty_lists() -> None:
    with pytest.raises(TypeError, match=r"modules\[1\]: expected a callable"):
        apply_modules(torch.ones(1), [nn.ReLU(), 3])
    with pytest.raises(TypeError, match="modules: expected a callable"):
        apply_modules(torch.ones(1), "relu")
    with pytest.raises(ValueError, match="non-empty"):
        apply_modules(torch.ones(1), [])


# -- multi_step_forward / t_last_multi_step_forward ------------------------------------------


def test_multi_step_forward_with_module_list_equals_manual_loop() -> None:
    modules = _linear_relu()
    x_seq = torch.randn(6, 2, 4)
    expected = torch.stack([torch.relu(modules[0](x_seq[t])) for t in range(6)])
    assert torch.equal(multi_step_forward(x_seq, modules), expected)


def test_multi_step_forward_keeps_state_across_steps() -> None:
    x_seq = torch.tensor([[1.0], [2.0], [3.0], [-4.0]])
    out = multi_step_forward(x_seq, RunningSum())
    assert out.flatten().tolist() == [1.0, 3.0, 6.0, 2.0]


def test_multi_step_forward_accepts_non_contiguous_input() -> None:
    base = torch.randn(3, 5, 6)
    x_seq = base.transpose(1, 2)  # [3, 6, 5], not contiguous
    assert not x_seq.is_contiguous()
    linear = nn.Linear(5, 2)
    expected = torch.stack([linear(x_seq[t].contiguous()) for t in range(3)])
    torch.testing.assert_close(multi_step_forward(x_seq, linear), expected)


def test_multi_step_forward_stacks_tuple_outputs_field_by_field() -> None:
    x_seq = torch.randn(4, 3)
    out = multi_step_forward(x_seq, lambda x: (x * 2, x + 1))
    assert isinstance(out, tuple) and len(out) == 2
    assert torch.equal(out[0], x_seq * 2) and torch.equal(out[1], x_seq + 1)


def test_multi_step_forward_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="x_seq: expected a torch.Tensor"):
        multi_step_forward([1.0, 2.0], nn.ReLU())
    with pytest.raises(ValueError, match="x_seq: expected a tensor with shape"):
        multi_step_forward(torch.tensor(1.0), nn.ReLU())
    with pytest.raises(ValueError, match=r"x_seq: expected at least one time step.*T = 0"):
        multi_step_forward(torch.empty(0, 3), nn.ReLU())
    with pytest.raises(TypeError, match="single_step_module: expected a callable"):
        multi_step_forward(torch.ones(2, 3), object())
    with pytest.raises(TypeError, match="single_step_module: expected the module to return"):
        multi_step_forward(torch.ones(2, 3), lambda x: [x])


def test_t_last_multi_step_forward_equals_manual_loop_and_stack_layout() -> None:
    modules = _linear_relu()
    x_seq = torch.randn(2, 4, 5)  # [N, C, T]
    per_step = [torch.relu(modules[0](x_seq[..., t])) for t in range(5)]
    expected = torch.stack(per_step, dim=-1)
    out = t_last_multi_step_forward(x_seq, modules)
    assert torch.equal(out, expected)
    assert out.stride() == expected.stride()


def test_t_last_multi_step_forward_is_stateful() -> None:
    x_seq = torch.tensor([[1.0, 2.0, 3.0]])  # [N=1, T=3]
    assert t_last_multi_step_forward(x_seq, RunningSum()).tolist() == [[1.0, 3.0, 6.0]]


def test_t_last_multi_step_forward_rejects_empty_time() -> None:
    with pytest.raises(ValueError, match=r"x_seq: expected at least one time step in \[N, \*, T\]"):
        t_last_multi_step_forward(torch.empty(3, 0), nn.ReLU())


# -- chunk_multi_step_forward ----------------------------------------------------------------


@pytest.mark.parametrize("split_size", [3, [3, 3, 1], (2, 5), torch.tensor(3), [torch.tensor(3), 3, 1]])
def test_chunk_multi_step_forward_equals_unsplit_forward(split_size: object) -> None:
    x_seq = torch.randn(7, 2, 3)
    chunked = LeakyTrace()
    whole = LeakyTrace()
    out = chunk_multi_step_forward(split_size, x_seq, chunked)
    expected = whole(x_seq)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    sizes = [3, 3, 1] if isinstance(split_size, (int, torch.Tensor)) else [int(n) for n in split_size]  # type: ignore[attr-defined]  # a sequence of sizes in this branch
    assert chunked.seen_lengths == sizes


def test_chunk_multi_step_forward_with_empty_sequence_returns_empty() -> None:
    out = chunk_multi_step_forward(3, torch.empty(0, 2), nn.Identity())
    assert out.shape == (0, 2)


@pytest.mark.parametrize(
    ("split_size", "error", "pattern"),
    [
        (0, ValueError, "split_size: expected a positive int, got 0"),
        (-2, ValueError, "split_size: expected a positive int"),
        (True, TypeError, "split_size"),
        (2.5, TypeError, "split_size: expected a positive int or a list"),
        ([3, 3], ValueError, r"split_size: .*summing to .*T = 7.*sum 6"),
        ([3, 0, 4], ValueError, "split_size: expected a non-empty list of positive ints"),
        ([], ValueError, "split_size"),
    ],
)
def test_chunk_multi_step_forward_validates_split_size(split_size: object, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        chunk_multi_step_forward(split_size, torch.randn(7, 2), nn.Identity())  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


def test_chunk_multi_step_forward_validates_module_and_input() -> None:
    with pytest.raises(TypeError, match="multi_step_module: expected a callable"):
        chunk_multi_step_forward(2, torch.randn(4, 2), None)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="x_seq: expected a torch.Tensor"):
        chunk_multi_step_forward(2, (1, 2), nn.Identity())  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test


# -- seq_to_ann_forward ----------------------------------------------------------------------


def test_seq_to_ann_forward_with_module_list_equals_per_step_loop() -> None:
    modules = _linear_relu()
    x_seq = torch.randn(5, 3, 4)
    expected = torch.stack([torch.relu(modules[0](x_seq[t])) for t in range(5)])
    torch.testing.assert_close(seq_to_ann_forward(x_seq, modules), expected)


def test_seq_to_ann_forward_folds_time_into_the_batch() -> None:
    seen = []

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x * 3

    x_seq = torch.randn(4, 2, 5).transpose(0, 1)  # [2, 4, 5] non-contiguous
    out = seq_to_ann_forward(x_seq, record)
    assert seen == [(8, 5)]
    assert torch.equal(out, x_seq * 3)


def test_seq_to_ann_forward_restores_tuple_outputs() -> None:
    pool = nn.MaxPool2d(2, return_indices=True)
    x_seq = torch.randn(3, 2, 1, 4, 4)
    values, indices = seq_to_ann_forward(x_seq, pool)
    for t in range(3):
        v, i = pool(x_seq[t])
        assert torch.equal(values[t], v) and torch.equal(indices[t], i)


def test_seq_to_ann_forward_tuple_inputs_match_per_step_loop() -> None:
    a = torch.randn(3, 2, 4)
    b = torch.randn(3, 2, 4)

    def combine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * 2 - y

    out = seq_to_ann_forward((a, b), combine)
    expected = torch.stack([combine(a[t], b[t]) for t in range(3)])
    assert torch.equal(out, expected)


def test_seq_to_ann_forward_tuple_inputs_feed_max_unpool() -> None:
    pool = nn.MaxPool2d(2, return_indices=True)
    unpool = nn.MaxUnpool2d(2)
    x_seq = torch.randn(3, 2, 1, 4, 4)
    pooled, indices = seq_to_ann_forward(x_seq, pool)
    out = seq_to_ann_forward((pooled, indices), unpool)
    expected = torch.stack([unpool(*pool(x_seq[t])) for t in range(3)])
    assert torch.equal(out, expected)


def test_seq_to_ann_forward_rejects_mismatched_tuple_leading_dimensions() -> None:
    with pytest.raises(ValueError, match=r"\[T, batch_size\] leading dimensions"):
        seq_to_ann_forward((torch.randn(3, 2, 4), torch.randn(3, 1, 4)), lambda x, y: x + y)


def test_seq_to_ann_forward_edge_shapes() -> None:
    assert seq_to_ann_forward(torch.empty(0, 2, 3), nn.Identity()).shape == (0, 2, 3)
    x2 = torch.randn(3, 4)
    assert torch.equal(seq_to_ann_forward(x2, torch.neg), -x2)  # the module sees [T * N]


def test_seq_to_ann_forward_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"x_seq: expected a tensor with shape \[T, N, \*\] \(at least 2"):
        seq_to_ann_forward(torch.randn(5), nn.Identity())
    with pytest.raises(TypeError, match=r"x_seq\[1\]: expected a torch.Tensor"):
        seq_to_ann_forward((torch.randn(2, 2), 3), lambda x, y: x)
    with pytest.raises(ValueError, match="empty tuple"):
        seq_to_ann_forward((), nn.Identity())
    with pytest.raises(TypeError, match="x_seq: expected a torch.Tensor"):
        seq_to_ann_forward([torch.randn(2, 2)], nn.Identity())
    with pytest.raises(ValueError, match=r"stateless_module: expected an output whose first dimension is T \* N"):
        seq_to_ann_forward(torch.randn(3, 2, 4), lambda x: x.sum(0))
    with pytest.raises(TypeError, match="stateless_module: expected the module to return"):
        seq_to_ann_forward(torch.randn(3, 2, 4), lambda x: [x])
    with pytest.raises(TypeError, match="stateless_module: expected a callable"):
        seq_to_ann_forward(torch.randn(3, 2, 4), 1)


# -- t_last_seq_to_ann_forward ---------------------------------------------------------------


def test_t_last_seq_to_ann_forward_with_module_list_equals_per_step_loop() -> None:
    modules = _linear_relu()
    x_seq = torch.randn(3, 4, 5)  # [N, C, T]
    expected = torch.stack([torch.relu(modules[0](x_seq[..., t])) for t in range(5)], dim=-1)
    torch.testing.assert_close(t_last_seq_to_ann_forward(x_seq, modules), expected)


def test_t_last_seq_to_ann_forward_tuple_outputs_and_vmap_layout() -> None:
    pool = nn.MaxPool1d(2, return_indices=True)
    x_seq = torch.randn(2, 3, 8, 4)  # [N, C, L, T]
    values, indices = t_last_seq_to_ann_forward(x_seq, pool)
    for t in range(4):
        v, i = pool(x_seq[..., t])
        assert torch.equal(values[..., t], v) and torch.equal(indices[..., t], i)
    direct = torch.vmap(pool, in_dims=-1, out_dims=-1)(x_seq)
    assert values.stride() == direct[0].stride() and indices.stride() == direct[1].stride()


def test_t_last_seq_to_ann_forward_calls_sequential_once() -> None:
    seq = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
    calls = []
    seq.register_forward_hook(lambda *_: calls.append(1))
    x_seq = torch.randn(3, 4, 6)
    out = t_last_seq_to_ann_forward(x_seq, seq)
    assert len(calls) == 1
    expected = torch.stack([seq[1](seq[0](x_seq[..., t])) for t in range(6)], dim=-1)
    torch.testing.assert_close(out, expected)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap's max_unpool2d fallback
def test_t_last_seq_to_ann_forward_tuple_inputs_feed_max_unpool() -> None:
    # SpikingJelly's rule for every helper: a tuple is splatted into the first module
    pool = nn.MaxPool2d(2, return_indices=True)
    unpool = nn.MaxUnpool2d(2)
    x_seq = torch.randn(2, 1, 4, 4, 3)  # [N, C, H, W, T]
    pooled, indices = t_last_seq_to_ann_forward(x_seq, pool)
    out = t_last_seq_to_ann_forward((pooled, indices), unpool)
    expected = torch.stack([unpool(*pool(x_seq[..., t])) for t in range(3)], dim=-1)
    assert torch.equal(out, expected)
    a, b = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    assert torch.equal(t_last_seq_to_ann_forward((a, b), lambda x, y: x * 2 - y), a * 2 - b)


def test_t_last_seq_to_ann_forward_errors() -> None:
    with pytest.raises(TypeError, match="x_seq: expected a torch.Tensor"):
        t_last_seq_to_ann_forward([torch.randn(2, 3)], nn.Identity())  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match=r"x_seq\[1\]: expected a torch.Tensor"):
        t_last_seq_to_ann_forward((torch.randn(2, 3), 3), lambda x, y: x)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(ValueError, match=r"share their last \(time\) dimension, got T = \[3, 2\]"):
        t_last_seq_to_ann_forward((torch.randn(2, 3), torch.randn(2, 2)), lambda x, y: x + y)
    with pytest.raises(ValueError, match="empty tuple"):
        t_last_seq_to_ann_forward((), nn.Identity())
    with pytest.raises(ValueError, match="x_seq: expected a tensor"):
        t_last_seq_to_ann_forward(torch.tensor(1.0), nn.Identity())
    with pytest.raises(TypeError, match=r"stateless_module\[1\]: expected a callable"):
        t_last_seq_to_ann_forward(torch.randn(2, 3), [nn.Identity(), "x"])


def test_forward_helpers_propagate_gradients() -> None:
    x_seq = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    linear = nn.Linear(3, 3).double()
    for helper in (multi_step_forward, seq_to_ann_forward):
        (grad,) = torch.autograd.grad(helper(x_seq, linear).sum(), x_seq)
        expected = linear.weight.sum(0).expand(4, 2, 3)
        torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("returned", [None, 3.0, (torch.zeros(2), None)], ids=["none", "float", "tuple-with-none"])
def test_t_last_seq_to_ann_forward_names_a_module_returning_no_tensor(returned: object) -> None:
    with pytest.raises(TypeError, match="stateless_module: expected the module to return a torch.Tensor or a tuple of tensors"):
        t_last_seq_to_ann_forward(torch.randn(2, 3, 4), lambda x: returned)
