"""snn: spiking neural networks for PyTorch.

The stable public namespace is :mod:`snn.functional`. Modules live in :mod:`snn.neuron`,
:mod:`snn.layer`, :mod:`snn.surrogate`, :mod:`snn.encoding` and :mod:`snn.base`; :mod:`snn.monitor`
records what layers compute and :mod:`snn.visualizing` plots it. Plugins implement the hooks of
:mod:`snn.hookspecs` with the :data:`hookimpl` marker.

Importing snn loads no plugin and imports submodules only when first accessed.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

import pluggy

__all__ = [
    "__version__",
    "hookimpl",
    "base",
    "encoding",
    "errors",
    "functional",
    "hookspecs",
    "kernels",
    "layer",
    "learning",
    "monitor",
    "neuron",
    "nir",
    "plugins",
    "registry",
    "surrogate",
    "testing",
    "visualizing",
]

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@snn.hookimpl``.
hookimpl = pluggy.HookimplMarker("snn")

logging.getLogger("snn").addHandler(logging.NullHandler())

_SUBMODULES = frozenset(__all__) - {"__version__", "hookimpl"}

if TYPE_CHECKING:
    from snn import (
        base,
        encoding,
        errors,
        functional,
        hookspecs,
        kernels,
        layer,
        learning,
        monitor,
        neuron,
        nir,
        plugins,
        registry,
        surrogate,
        testing,
        visualizing,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"snn.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'snn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
