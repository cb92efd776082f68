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

The two functions need the ``nir`` package (``pip install "snn-core[nir]"``), imported when
they are first called; the modules do not.
"""

from __future__ import annotations

from snn.nir._export import export_to_nir
from snn.nir._import import import_from_nir
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
