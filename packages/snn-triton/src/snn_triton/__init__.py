"""snn-triton: fused Triton kernels for multi-step IF, LIF and parametric-LIF neurons.

The distribution registers the ``"triton"`` backend of :mod:`snn` through the entry point
``triton = "snn_triton.plugin"``; select it with ``functional.set_backend(net, "triton")`` or
``backend="auto"``. Submodules:

- :mod:`snn_triton.plugin`: the registration (imports no Triton);
- :mod:`snn_triton.multistep`: the kernel functions of the neuron-kernel contract;
- :mod:`snn_triton.ops`: the ``snn_triton::`` custom operators (``torch.compile`` friendly);
- :mod:`snn_triton.triton_kernels`: the ``@triton.jit`` kernels;
- :mod:`snn_triton.codegen`: surrogate derivatives rendered to Triton source;
- :mod:`snn_triton.runtime`: the probe and interpreter detection.

Importing the package imports nothing heavy; submodules load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["__version__", "codegen", "multistep", "ops", "plugin", "runtime", "triton_kernels"]

__version__ = "0.1.0"

_SUBMODULES = frozenset({"codegen", "multistep", "ops", "plugin", "runtime", "triton_kernels"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
