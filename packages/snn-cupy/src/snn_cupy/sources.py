"""Kernel sources per neuron configuration: built once, cached, and inspectable.

:func:`kernel_sources` shows the CUDA C the backend compiles for a neuron module; the runtime
uses :func:`forward_kernel_source` and :func:`backward_kernel_source`, which are cached on the
frozen parts of the configuration that shape the source (a PLIF decay is a runtime argument, so
it never causes a recompilation).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from snn.expr import Expr, render
from snn.kernels import NeuronConfig, SurrogateSpec
from snn_cupy._codegen import DTYPE_TAGS
from snn_cupy.templates import BackwardSpec, ForwardSpec, KernelSource, backward_source, forward_source

__all__ = [
    "SUPPORTED_DTYPES",
    "dtype_tag",
    "surrogate_body",
    "forward_kernel_source",
    "backward_kernel_source",
    "neuron_config",
    "config_sources",
    "kernel_sources",
]

#: Storage dtypes the kernels are generated for.
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16)


def dtype_tag(dtype: torch.dtype) -> str:
    """``"f32"`` or ``"f16"`` for a supported dtype.

    Raises:
        TypeError: ``dtype`` is not a torch dtype, or not one the kernels support.
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__} {dtype!r}")
    tag = DTYPE_TAGS.get(str(dtype).removeprefix("torch."))
    if tag is None:
        raise TypeError(f"dtype: the cupy kernels support torch.float32 and torch.float16, got {dtype}")
    return tag


@lru_cache(maxsize=256)
def surrogate_body(spec: SurrogateSpec) -> str:
    """The surrogate derivative of ``spec`` as a float32 CUDA expression of ``x``.

    Rendered from :func:`snn.surrogate.derivative_expression`, the same expression tree the torch
    backward evaluates; numbers are exact hexadecimal float32 literals.

    Raises:
        TypeError / ValueError: ``spec`` is not a closed-form surrogate, or has a parameter that
            cannot be placed in source (non-finite, out of range).
    """
    from snn.surrogate import derivative_expression

    expression = derivative_expression(spec, "x")
    if not isinstance(expression, Expr):  # pragma: no cover - derivative_expression guarantees it
        raise TypeError(f"spec: expected an expression for {spec.name!r}, got {expression!r}")
    return render(expression, "cuda", {"x": "x"})


def _normalised(config: NeuronConfig) -> tuple[str, bool, float, float, bool, float | None]:
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.kernels.NeuronConfig, got {type(config).__name__}")
    kind = config.kind
    decay_input = bool(config.decay_input) if kind != "if" else False
    tau = float(config.tau) if kind == "lif" and config.tau is not None else None
    return kind, config.hard_reset, float(config.v_threshold), float(config.reset_potential), decay_input, tau


def forward_kernel_source(config: NeuronConfig, dtype: torch.dtype, train: bool) -> KernelSource:
    """The forward kernel source for ``config`` at ``dtype`` (cached).

    Args:
        config: the neuron configuration.
        dtype: ``torch.float32`` or ``torch.float16``.
        train: the training variant (saves the charged potentials) or the inference one.

    Raises:
        TypeError: unsupported dtype or config type.
        ValueError: a parameter that cannot be placed in source.
    """
    kind, hard, vth, vr, decay_input, tau = _normalised(config)
    return _forward_cached(ForwardSpec(kind, hard, vth, vr, decay_input, tau, dtype_tag(dtype), bool(train)))


def backward_kernel_source(config: NeuronConfig, dtype: torch.dtype) -> KernelSource:
    """The backward kernel source for ``config`` at ``dtype`` (cached).

    Raises:
        TypeError: unsupported dtype or config type.
        ValueError: a parameter or surrogate that cannot be placed in source.
    """
    kind, hard, vth, vr, decay_input, tau = _normalised(config)
    spec = BackwardSpec(
        kind, hard, vth, vr, bool(config.detach_reset), decay_input, tau,
        surrogate_body(config.surrogate), dtype_tag(dtype),
    )
    return _backward_cached(spec)


@lru_cache(maxsize=512)
def _forward_cached(spec: ForwardSpec) -> KernelSource:
    return forward_source(spec)


@lru_cache(maxsize=1024)
def _backward_cached(spec: BackwardSpec) -> KernelSource:
    return backward_source(spec)


def neuron_config(neuron: Any) -> NeuronConfig:
    """The :class:`~snn.kernels.NeuronConfig` a kernel receives for ``neuron``.

    Args:
        neuron: an IF, LIF or parametric-LIF neuron of :mod:`snn.neuron` (anything with a
            ``neuron_config()`` method returning a NeuronConfig).

    Raises:
        TypeError: ``neuron`` has no kernel configuration (not a kernel neuron, a tensor
            threshold, or a surrogate without a kernel spec).
    """
    method = getattr(neuron, "neuron_config", None)
    if not callable(method):
        raise TypeError(
            f"neuron: expected an snn.neuron IFNode, LIFNode or ParametricLIFNode, got {type(neuron).__name__}"
        )
    try:
        config = method()
    except AttributeError as exc:  # e.g. a plain callable as surrogate: it has no ``spec``
        raise TypeError(f"neuron: {type(neuron).__name__} has no kernel configuration: {exc}") from exc
    if not isinstance(config, NeuronConfig):
        raise TypeError(
            f"neuron: {type(neuron).__name__}.neuron_config() returned {type(config).__name__}, "
            "expected snn.kernels.NeuronConfig"
        )
    return config


def config_sources(config: NeuronConfig, dtype: torch.dtype) -> dict[str, str]:
    """The sources for ``config`` at ``dtype``: forward (training), forward (inference), backward.

    Returns:
        module name -> CUDA C source. Each source defines the entry points ``<name>_v1`` and, for
        float16, ``<name>_v2`` (two neurons per thread).
    """
    built = (
        forward_kernel_source(config, dtype, True),
        forward_kernel_source(config, dtype, False),
        backward_kernel_source(config, dtype),
    )
    return {item.name: item.source for item in built}


def kernel_sources(neuron: Any, dtype: torch.dtype) -> dict[str, str]:
    """The CUDA sources the cupy backend compiles to run ``neuron`` in multi-step mode at ``dtype``.

    Args:
        neuron: an :class:`snn.neuron.IFNode`, :class:`~snn.neuron.LIFNode` or
            :class:`~snn.neuron.ParametricLIFNode` (its current hyper-parameters and surrogate).
        dtype: ``torch.float32`` or ``torch.float16``.

    Returns:
        module name -> CUDA C source, three entries: the training forward (saves the charged
        potentials), the inference forward and the backward. Names are fixed identifiers plus a
        hash (``snn_<kind>_<fwd_train|fwd_infer|bwd>_<f32|f16>_<hash>``); each source defines the
        ``extern "C"`` entry points ``<name>_v1`` and, for float16, ``<name>_v2``.

    Raises:
        TypeError: not a supported neuron, or an unsupported dtype.
        ValueError: a hyper-parameter that cannot be compiled (e.g. non-finite, or a surrogate
            without closed-form derivative).

    Example:
        >>> from snn import neuron
        >>> import snn_cupy
        >>> sources = snn_cupy.kernel_sources(neuron.LIFNode(tau=2.0), torch.float16)
        >>> sorted(name.split("_")[2] for name in sources)
        ['bwd', 'fwd', 'fwd']
    """
    return config_sources(neuron_config(neuron), dtype)
