"""The registry: what plugins registered, and fast lookups of it.

Plugins never touch this data directly; each hook of :mod:`snn.hookspecs` receives a
*registrar* bound to the plugin, which validates the arguments, records provenance (plugin
name, distribution and version) and refuses names that are already taken. After the plugin
manager has been built (see :mod:`snn.plugins`), lookups are plain dictionary reads; kernels
are imported on first use and cached, so a forward pass costs at most one dict lookup.

The names live in three modules, imported here: ``_entries`` (what is stored:
:class:`BackendInfo`, :class:`RegisteredItem`, provenance and failures), ``_tables``
(:class:`Registry`) and ``_registrars`` (what the hooks receive).
"""

from __future__ import annotations

from snn.registry import _entries
from snn.registry._entries import BackendInfo, PluginFailure, Provenance, RegisteredItem
from snn.registry._registrars import (
    BackendRegistrar,
    LearnerRegistrar,
    LossRegistrar,
    NeuronModelRegistrar,
    StrategyRegistrar,
)
from snn.registry._tables import Registry

#: The kernel modes, the keys of a backend's kernels: ``"single_step"`` runs neurons in step mode
#: ``'s'``, ``"multi_step"`` in step mode ``'m'`` (:data:`snn.dispatch.KERNEL_MODE` maps one to the
#: other). Users see step modes only; kernel modes are the backend author's word.
KERNEL_MODES = _entries.KERNEL_MODES

__all__ = [
    "KERNEL_MODES",
    "Provenance",
    "PluginFailure",
    "BackendInfo",
    "RegisteredItem",
    "Registry",
    "BackendRegistrar",
    "StrategyRegistrar",
    "LossRegistrar",
    "LearnerRegistrar",
    "NeuronModelRegistrar",
]
