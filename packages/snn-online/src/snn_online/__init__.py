"""snn-online: online learning for snn (OTTT, SLTT, FPTT).

- Neurons: :class:`OTTTLIFNode` (emits ``[spike, trace]`` in training) and :class:`SLTTLIFNode`,
  single-step LIF neurons whose membrane potential is detached between steps.
- Layers: :class:`OTTTSequential` and its building blocks :class:`GradwithTrace`,
  :class:`SpikeTraceOp` and :class:`ReplaceforGrad`.
- Learners (registered as ``ottt``, ``sltt`` and ``fptt`` through the entry point
  ``online = "snn_online.plugin"``): :class:`OTTTLearner`, :class:`SLTTLearner`,
  :class:`FPTTLearner`. ``snn.functional.ottt_online_training`` and
  ``snn.functional.fptt_online_training`` dispatch to them.

Submodules are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "__version__",
    "OTTTLIFNode",
    "SLTTLIFNode",
    "ReplaceforGrad",
    "GradwithTrace",
    "SpikeTraceOp",
    "OTTTSequential",
    "OTTTLearner",
    "SLTTLearner",
    "FPTTLearner",
]

__version__ = "0.1.0"

_WHERE = {
    "OTTTLIFNode": "snn_online.neuron",
    "SLTTLIFNode": "snn_online.neuron",
    "ReplaceforGrad": "snn_online.layer",
    "GradwithTrace": "snn_online.layer",
    "SpikeTraceOp": "snn_online.layer",
    "OTTTSequential": "snn_online.layer",
    "OTTTLearner": "snn_online.learners",
    "SLTTLearner": "snn_online.learners",
    "FPTTLearner": "snn_online.learners",
}

if TYPE_CHECKING:
    from snn_online.layer import GradwithTrace, OTTTSequential, ReplaceforGrad, SpikeTraceOp
    from snn_online.learners import FPTTLearner, OTTTLearner, SLTTLearner
    from snn_online.neuron import OTTTLIFNode, SLTTLIFNode


def __getattr__(name: str) -> Any:
    module_name = _WHERE.get(name)
    if module_name is None:
        raise AttributeError(f"module 'snn_online' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
