"""snn-triton: fused Triton kernels for any neuron model of snn, generated from its description.

The distribution registers the ``"triton"`` backend of :mod:`snn` through the entry point
``triton = "snn_triton.plugin"``; select it with ``functional.set_backend(net, "triton")`` or
``backend="auto"``. One multi-step kernel serves every registered neuron model whose kernel
plan (:func:`snn.models.kernel_plan`) uses operations the generator renders. Submodules:

- :mod:`snn_triton.plugin`: the registration (imports no Triton);
- :mod:`snn_triton.multistep`: the kernel function of the neuron-kernel contract;
- :mod:`snn_triton.ops`: the ``snn_triton::`` custom operators (``torch.compile`` friendly);
- :mod:`snn_triton.codegen`: the forward and backward kernels' source, generated per plan;
- :mod:`snn_triton.source_cache`: the private, content-addressed cache of generated modules;
- :mod:`snn_triton.runtime`: the probe and interpreter detection.

Importing the package imports nothing heavy; submodules load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "__version__",
    "codegen",
    "multistep",
    "ops",
    "plugin",
    "runtime",
    "source_cache",
]

__version__ = "0.1.0"

_SUBMODULES = frozenset({"codegen", "multistep", "ops", "plugin", "runtime", "source_cache"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
