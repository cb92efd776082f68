"""Kernel sources per neuron configuration: built once, cached, and inspectable.

:func:`kernel_sources` shows the CUDA C the backend compiles for a neuron (or a
:class:`~snn.models.NeuronConfig`); the runtime uses :func:`forward_kernel_source` and
:func:`backward_kernel_source`, cached per configuration and dtype. Learnable parameters (PLIF's
``w``) are kernel arguments, so a new value never causes a recompilation; configurations whose
sources are the same text share one compiled module (its name is a hash of the text).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from snn.models import NeuronConfig, SurrogateSpec, constant_beyond_float32, kernel_plan
from snn_cupy._codegen import DTYPE_TAGS
from snn_cupy.templates import (
    KernelSource,
    backward_source,
    forward_source,
    surrogate_body as _render_surrogate,
)

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

    Rendered from :func:`snn.surrogate.derivative_expression`, the expression tree the torch
    backward evaluates; numbers are exact hexadecimal float32 literals.

    Raises:
        TypeError / ValueError: ``spec`` is not a closed-form surrogate, or has a parameter that
            cannot be placed in source (non-finite, out of range).
    """
    from snn.surrogate import derivative_expression

    return _render_surrogate(derivative_expression(spec, "z"))


def _checked(config: Any) -> NeuronConfig:
    if not isinstance(config, NeuronConfig):
        raise TypeError(f"config: expected snn.models.NeuronConfig, got {type(config).__name__}")
    return config


def _plan(config: NeuronConfig) -> Any:
    try:
        return kernel_plan(config)
    except ValueError as exc:
        raise ValueError(f"config: model {config.model.name!r} cannot be compiled to CUDA: {exc}") from exc


def forward_kernel_source(config: NeuronConfig, dtype: torch.dtype, train: bool) -> KernelSource:
    """The forward kernel source for ``config`` at ``dtype`` (cached).

    Args:
        config: the neuron configuration.
        dtype: ``torch.float32`` or ``torch.float16``.
        train: the training variant (saves the charged states the plan names) or inference.

    Raises:
        TypeError: unsupported dtype or config type.
        ValueError: a number that cannot be placed in source (e.g. a threshold beyond float32).
    """
    return _forward_cached(_checked(config), dtype_tag(dtype), bool(train))


def backward_kernel_source(config: NeuronConfig, dtype: torch.dtype) -> KernelSource:
    """The backward kernel source for ``config`` at ``dtype`` (cached).

    Raises:
        TypeError: unsupported dtype or config type.
        ValueError: a number or surrogate that cannot be placed in source.
    """
    return _backward_cached(_checked(config), dtype_tag(dtype))


@lru_cache(maxsize=1024)
def _forward_cached(config: NeuronConfig, tag: str, train: bool) -> KernelSource:
    return forward_source(_plan(config), tag, train)


@lru_cache(maxsize=2048)
def _backward_cached(config: NeuronConfig, tag: str) -> KernelSource:
    return backward_source(_plan(config), tag)


def neuron_config(neuron: Any) -> NeuronConfig:
    """The :class:`~snn.models.NeuronConfig` a kernel receives for ``neuron``.

    Args:
        neuron: a neuron of :mod:`snn.neuron` (anything with a ``neuron_config()`` method
            returning a NeuronConfig), or a NeuronConfig.

    Raises:
        TypeError: ``neuron`` has no kernel configuration (not a kernel neuron, a tensor
            threshold, or a surrogate without a kernel derivative).
    """
    if isinstance(neuron, NeuronConfig):
        return neuron
    method = getattr(neuron, "neuron_config", None)
    if not callable(method):
        raise TypeError(
            f"neuron: expected an snn.neuron neuron or an snn.models.NeuronConfig, got {type(neuron).__name__}"
        )
    try:
        config = method()
    except AttributeError as exc:  # e.g. a plain callable as surrogate: it has no ``spec``
        raise TypeError(f"neuron: {type(neuron).__name__} has no kernel configuration: {exc}") from exc
    if not isinstance(config, NeuronConfig):
        raise TypeError(
            f"neuron: {type(neuron).__name__}.neuron_config() returned {type(config).__name__}, "
            "expected snn.models.NeuronConfig"
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
        neuron: a neuron of :mod:`snn.neuron` (its current hyper-parameters and surrogate), or
            an :class:`snn.models.NeuronConfig` (of any registered or plugin model).
        dtype: ``torch.float32`` or ``torch.float16``.

    Returns:
        module name -> CUDA C source, three entries: the training forward (saves the charged
        states the model's plan names), the inference forward and the backward. Names are fixed
        words plus a hash (``snn_<fwd_train|fwd_infer|bwd>_<f32|f16>_<hash>``); each source
        defines the ``extern "C"`` entry points ``<name>_v1`` and, for float16, ``<name>_v2``.

    Raises:
        TypeError: not a kernel neuron or config, or an unsupported dtype.
        ValueError: a hyper-parameter that cannot be compiled (e.g. beyond float32), or a
            surrogate without closed-form derivative.

    Example:
        >>> from snn import neuron
        >>> import snn_cupy
        >>> sources = snn_cupy.kernel_sources(neuron.LIFNode(tau=2.0), torch.float16)
        >>> sorted(name.split("_")[1] for name in sources)
        ['bwd', 'fwd', 'fwd']
    """
    config = neuron_config(neuron)
    beyond = constant_beyond_float32(config)
    if beyond is not None:
        raise ValueError(f"{beyond}: the cupy kernels compute in float32, which cannot hold the value")
    return config_sources(config, dtype)
