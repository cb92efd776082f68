"""An example third-party plugin for snn: the ``example`` LIF backend and the
``hinge_rate`` loss.

snn loads :mod:`snn_example_plugin.plugin` through the entry point ``example``
in group ``snn``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
