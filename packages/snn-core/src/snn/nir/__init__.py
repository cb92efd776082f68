"""Interoperability through NIR, the Neuromorphic Intermediate Representation.

NIR describes a spiking network as a graph of continuous-time primitives (``LIF``, ``Affine``,
``Conv2d`` ...). snnTorch, Norse, Lava-DL, Sinabs, Rockpool, Spyx and SpikingJelly read or
write it, and through it a network reaches Loihi, SpiNNaker2, Speck, Xylo and BrainScaleS-2.

- :func:`export_to_nir`: an snn network -> ``nir.NIRGraph`` (and a ``.nir`` file).
- :func:`import_from_nir`: a ``nir.NIRGraph`` or a ``.nir`` file -> an snn network
  (:class:`NIRGraphModule`).
- :mod:`snn.nir.modules`: the modules for NIR primitives snn had no module for
  (:class:`~snn.nir.modules.LINode`, :class:`~snn.nir.modules.CubaLINode`,
  :class:`~snn.nir.modules.Scale`, :class:`~snn.nir.modules.Threshold`,
  :class:`~snn.nir.modules.Delay`, :class:`~snn.nir.modules.SumPool2d`).

The two functions need the ``nir`` package and NumPy (``pip install "snn-core[nir]"``): they
are loaded on first access (``snn.nir.export_to_nir``), NumPy then and ``nir`` when they are
first called, so ``import snn.nir`` and the modules work without either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snn.nir.graph import NIRGraphModule
from snn.nir.modules import CubaLINode, Delay, LINode, Scale, SumPool2d, Threshold

__all__ = [
    "export_to_nir",
    "import_from_nir",
    "NIRGraphModule",
    "LINode",
    "CubaLINode",
    "Scale",
    "Threshold",
    "Delay",
    "SumPool2d",
]

if TYPE_CHECKING:
    from snn.nir._export import export_to_nir
    from snn.nir._import import import_from_nir

_LAZY = {"export_to_nir": "snn.nir._export", "import_from_nir": "snn.nir._import"}


def __getattr__(name: str) -> Any:
    """``export_to_nir`` and ``import_from_nir``, imported on first access (they need NumPy)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'snn.nir' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(_LAZY[name])
    except ModuleNotFoundError as exc:
        if exc.name != "numpy":
            raise
        raise ImportError(f'snn.nir.{name} needs NumPy and the nir package: pip install "snn-core[nir]"') from exc
    value = getattr(module, name)
    globals()[name] = value
    return value
