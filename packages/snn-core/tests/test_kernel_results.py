"""A plugin backend's kernel results are checked against the kernel contract where they are used."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch

import snn
from snn import neuron
from snn.backends.torch import multi_step, single_step
from snn.errors import KernelContractError
from snn.kernels import check_kernel_result


def _faulty(change: Callable[[Any], Any]) -> Callable[..., Any]:
    def kernel(x_seq, states, config, *, learnables=(), store_state_seqs=False):  # type: ignore[no-untyped-def]  # the contract's call
        run = multi_step if x_seq.dim() == 3 else single_step
        return change(run(x_seq, states, config, learnables=learnables, store_state_seqs=store_state_seqs))

    return kernel


CHANGES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "none": (lambda result: None, r"expected a tuple \(spikes, states_last, state_seqs\), got None"),
    "no_states": (lambda result: (result[0], (), result[2]), r"states_last: expected a tuple of 1 tensor\(s\), got tuple \(\) of length 0"),
    "float64_spikes": (lambda result: (result[0].double(),) + tuple(result[1:]), r"spikes: expected shape \(4, 2, 3\), dtype torch.float32 on cpu, got a tensor of shape \(4, 2, 3\), dtype torch.float64"),
    "flat_state": (lambda result: (result[0], (result[1][0].reshape(-1),), result[2]), r"states_last\[0\]: expected shape \(2, 3\), dtype torch.float32 on cpu, got a tensor of shape \(6,\)"),
}


@pytest.fixture
def faulty_backends(temporary_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("kernel_result_test_kernels")
    for name, (change, _) in CHANGES.items():
        setattr(module, name, _faulty(change))
    module.same = _faulty(lambda result: result)
    module.no_seqs = _faulty(lambda result: (result[0], result[1], None))
    monkeypatch.setitem(sys.modules, "kernel_result_test_kernels", module)

    @snn.hookimpl
    def snn_register_backends(register):  # type: ignore[no-untyped-def]  # the hook's registrar
        for name in (*CHANGES, "same", "no_seqs"):
            register(
                name, {"multi_step": f"kernel_result_test_kernels:{name}"}, models=("lif",), devices=("cpu",),
                dtypes=(torch.float32,), surrogates=("Sigmoid",), probe=lambda: None,
            )

    temporary_plugin(types.SimpleNamespace(snn_register_backends=snn_register_backends), name="faulty")


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_broken_result_fails_at_its_call_and_leaves_the_state_alone(faulty_backends, name: str) -> None:
    node = neuron.LIFNode(step_mode="m", backend=name)
    before = torch.full((2, 3), 0.25)
    node.v = before.clone()
    with pytest.raises(KernelContractError, match=rf"backend '{name}': its multi_step kernel broke the kernel contract: {CHANGES[name][1]}") as caught:
        node(torch.rand(4, 2, 3))
    assert (caught.value.backend, caught.value.mode) == (name, "multi_step")
    assert torch.equal(node.v, before)  # nothing of the result was stored


def test_missing_state_sequences_are_named(faulty_backends) -> None:
    node = neuron.LIFNode(step_mode="m", backend="no_seqs")
    node(torch.rand(4, 2, 3))  # not asked for: None is right
    node.reset()
    node.store_v_seq = True
    with pytest.raises(KernelContractError, match=r"state_seqs: store_state_seqs=True asks for a tuple of 1 \[T, \*\] tensor\(s\), got None"):
        node(torch.rand(4, 2, 3))


def test_a_conforming_plugin_result_passes_unchanged(faulty_backends) -> None:
    torch.manual_seed(0)
    x = (torch.rand(5, 2, 3) * 2).requires_grad_(True)
    plugin = neuron.LIFNode(step_mode="m", backend="same", store_v_seq=True)
    reference = neuron.LIFNode(step_mode="m", backend="torch", store_v_seq=True)
    spikes = plugin(x)
    (gx,) = torch.autograd.grad((spikes * torch.arange(3.0)).sum(), x)
    expected = reference(x)
    (gx_expected,) = torch.autograd.grad((expected * torch.arange(3.0)).sum(), x)
    assert torch.equal(spikes, expected) and torch.equal(plugin.v, reference.v) and torch.equal(plugin.v_seq, reference.v_seq)
    assert torch.allclose(gx, gx_expected)


def test_single_step_results_are_checked_too() -> None:
    x = torch.rand(2, 3)
    good = (torch.zeros(2, 3), (torch.zeros(2, 3),), None)
    assert check_kernel_result("p", "single_step", good, x, 1) is good
    with pytest.raises(KernelContractError, match=r"backend 'p': its single_step kernel broke the kernel contract: states_last\[0\]: expected shape \(2, 3\)"):
        check_kernel_result("p", "single_step", (good[0], (torch.zeros(3),), None), x, 1)
    with pytest.raises(KernelContractError, match="spikes: expected a tensor, got list"):
        check_kernel_result("p", "single_step", ([0.0], good[1], None), x, 1)
