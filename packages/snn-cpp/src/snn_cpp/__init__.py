"""snn-cpp: compiled CPU kernels for every neuron model of snn, generated from the models' expressions.

The plugin registers the backend ``"cpp"`` (:mod:`snn_cpp.plugin`); neurons use it with
``backend="cpp"`` or, on the CPU, ``backend="auto"``. Modules:

- :mod:`snn_cpp.codegen`: C source from a :class:`~snn.models.KernelPlan`;
- :mod:`snn_cpp.build`: the compiler, flags and the on-disk cache;
- :mod:`snn_cpp.ops`: the custom operators (``torch.compile`` traces through them);
- :mod:`snn_cpp.memory`: the names of :mod:`snn.backends.memory` (large outputs on huge pages,
  from a cache of released buffers, shared with the torch backend);
- :mod:`snn_cpp.kernel`: the contract's ``multi_step`` kernel.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
