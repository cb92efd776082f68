"""snn-cupy: CUDA C kernels generated for snn's neuron models, compiled by NVRTC.

Installing this distribution registers the backend ``"cupy"`` with snn (entry point
``cupy = "snn_cupy.plugin"``). Select it per neuron (``node.backend = "cupy"``) or for a whole
network (``snn.functional.set_backend(net, "cupy")``). CuPy itself comes with an extra:
``pip install "snn-cupy[cuda12]"`` or ``"snn-cupy[cuda13]"``.

:func:`kernel_sources` shows the CUDA C the backend compiles for a neuron (any model whose
expressions use operations the generator renders); it needs neither CuPy nor a GPU.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "kernel_sources"]

__version__ = "0.1.0"


def kernel_sources(neuron: Any, dtype: Any) -> dict[str, str]:
    """The CUDA sources the backend would compile to run ``neuron`` in multi-step mode at ``dtype``.

    See :func:`snn_cupy.sources.kernel_sources` (the implementation).

    Args:
        neuron: a neuron of :mod:`snn.neuron` (or a plugin's) with a kernel configuration, or an
            :class:`snn.models.NeuronConfig`.
        dtype: ``torch.float32`` or ``torch.float16``.

    Returns:
        module name -> CUDA C source (training forward, inference forward, backward).

    Raises:
        TypeError: not a supported neuron or dtype.
        ValueError: a hyper-parameter that cannot be compiled.
    """
    from snn_cupy.sources import kernel_sources as build

    return build(neuron, dtype)
