"""The torch reference backend (in-tree plugin ``"torch"``).

One multi-step and one single-step kernel serve every registered neuron model (see
:mod:`snn.models`), following the neuron-kernel contract of :mod:`snn.kernels`. They run on
every device PyTorch supports, in float16, bfloat16, float32 and float64, for every surrogate
whose derivative has a closed form, built-in or a third party's.

The kernels compile each configuration's plan into allocation-free tensor programs (see
:mod:`snn.backends.torch_kernels`): a multi-step call costs a few fused tensor operations per
time step; training saves only what the plan names (the charged potentials for IF, LIF and
PLIF) and a backward pass derived from the model's expressions recomputes the spikes. Without
gradients nothing is saved.

Usage (normally through a neuron's ``backend="torch"``)::

    from snn.neuron import LIFNode
    from snn.backends.torch import multi_step

    config = LIFNode(tau=2.0).neuron_config()
    spike_seq, (v_last,), _ = multi_step(x_seq, (torch.zeros_like(x_seq[0]),), config)
"""

from __future__ import annotations

import math

import torch

import snn
from snn.backends.torch_kernels import compute_dtype, run_sequence
from snn.kernels import KernelResult, NeuronConfig, check_kernel_arguments
from snn.registry import BackendRegistrar

__all__ = [
    "BACKEND_NAME",
    "KERNELS",
    "DTYPES",
    "DEVICES",
    "OPERATIONS",
    "snn_register_backends",
    "multi_step",
    "single_step",
    "probe",
]

#: The registered name of this backend.
BACKEND_NAME = "torch"

#: ``kernel mode -> "module:attribute"`` of every kernel of this backend.
KERNELS: dict[str, str] = {
    "multi_step": f"{__name__}:multi_step",
    "single_step": f"{__name__}:single_step",
}

#: Storage dtypes served.
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Device types served.
DEVICES = ("cpu", "cuda", "mps")

#: The :mod:`snn.expr` operations the kernels compile (all of them).
OPERATIONS = (
    "+", "-", "*", "/", "neg", "pow", "<", "<=", ">", ">=", "and", "where",
    "exp", "log", "abs", "sqrt", "sigmoid", "cos", "sin", "relu", "minimum", "maximum",
)


def probe() -> str | None:
    """The torch backend runs wherever torch runs: always ``None``."""
    return None


@snn.hookimpl
def snn_register_backends(register: BackendRegistrar) -> None:
    """Register the ``"torch"`` backend (see :func:`snn.hookspecs.snn_register_backends`)."""
    register(
        BACKEND_NAME,
        KERNELS,
        devices=DEVICES,
        dtypes=DTYPES,
        operations=OPERATIONS,
        probe=probe,
        auto_priority=0,
        literal_constants=False,  # hyper-parameters reach torch as Python numbers
        description="reference PyTorch kernels: every model, fused in-place steps, derived backward",
    )


def _check(x: torch.Tensor, states: object, config: NeuronConfig, learnables: object, single: bool) -> None:
    """The contract's checks (:func:`snn.kernels.check_kernel_arguments`), then this backend's dtypes."""
    check_kernel_arguments(x, states, config, learnables, single_step=single)
    if x.dtype not in DTYPES:
        raise TypeError(f"{'x' if single else 'x_seq'}: expected one of {DTYPES}, got {x.dtype}")


def _run(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    learnables: tuple[torch.Tensor, ...],
    store: bool,
) -> KernelResult:
    steps = x_seq.shape[0]
    n = math.prod(x_seq.shape[1:])
    dtype = x_seq.dtype
    work = compute_dtype(dtype)
    x2 = x_seq.reshape(steps, n)
    s2 = [s.reshape(n) for s in states]
    if work != dtype:
        x2, s2 = x2.to(work), [s.to(work) for s in s2]
    spikes, last, seqs = run_sequence(config, x2, s2, learnables, store)
    shape = x_seq.shape
    out_spikes = spikes.to(dtype).view(shape)
    out_last = tuple(v.to(dtype).view(shape[1:]) for v in last)
    out_seqs = tuple(v.to(dtype).view(shape) for v in seqs) if seqs is not None else None
    return out_spikes, out_last, out_seqs


def multi_step(
    x_seq: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """Run any neuron model over a sequence.

    Args:
        x_seq: ``[T, *]`` input, float16 / bfloat16 / float32 / float64, any strides.
        states: the initial states of the model (``[*]`` each), same dtype and device.
        config: the layer's :class:`~snn.models.NeuronConfig`.
        learnables: the model's learnable parameters (one-element tensors).
        store_state_seqs: also return every state's post-reset sequence.

    Returns:
        ``(spike_seq [T, *], last states ([*], ...), state sequences ([T, *], ...) | None)`` in
        ``x_seq``'s dtype.

    Raises:
        TypeError: non-floating input, dtype or device mismatch, a bad learnable.
        ValueError: shape mismatch, ``T == 0``, the wrong number of states or learnables.
    """
    _check(x_seq, states, config, learnables, single=False)
    return _run(x_seq, tuple(states), config, tuple(learnables), bool(store_state_seqs))


def single_step(
    x: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    config: NeuronConfig,
    *,
    learnables: tuple[torch.Tensor, ...] = (),
    store_state_seqs: bool = False,
) -> KernelResult:
    """One step of any neuron model: ``x`` and the states are ``[*]``; returns ``(spike, states, None)``."""
    _check(x, states, config, learnables, single=True)
    spikes, last, _ = _run(x.unsqueeze(0), tuple(states), config, tuple(learnables), False)
    return spikes[0], last, None
