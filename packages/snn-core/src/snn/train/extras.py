"""Lazy imports of the optional ``snn-core[demo]`` dependencies (scikit-learn, matplotlib, tqdm).

``snn train`` needs them; ``import snn`` and the rest of the library never do. They are imported
on first use only, and a missing one is reported with the exact install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DEMO_INSTALL_HINT", "DemoDependencyError", "import_demo_module"]

#: The command that installs everything ``snn train`` needs.
DEMO_INSTALL_HINT = 'pip install "snn-core[demo]"'

_DISTRIBUTIONS = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"}


class DemoDependencyError(ImportError):
    """An optional dependency of ``snn train`` is not installed.

    The message names the missing distribution and :data:`DEMO_INSTALL_HINT`; the original
    :class:`ImportError` is chained as ``__cause__``.
    """


def import_demo_module(name: str) -> ModuleType:
    """Import ``name`` (e.g. ``"sklearn.datasets"``), explaining how to install it when missing.

    Args:
        name: a dotted module name whose top-level package is scikit-learn (``sklearn``),
            matplotlib or tqdm.

    Returns:
        The imported module.

    Raises:
        DemoDependencyError: the module cannot be imported; the message names the distribution
            and the install command ``pip install "snn-core[demo]"``.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.partition(".")[0]
        distribution = _DISTRIBUTIONS.get(top, top)
        raise DemoDependencyError(
            f"snn's training commands need {distribution} (module {name!r} could not be imported: {exc}); "
            f"install the demo extra with: {DEMO_INSTALL_HINT}"
        ) from exc
