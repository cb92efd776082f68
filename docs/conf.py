"""Sphinx configuration of the snn documentation.

Build offline (no intersphinx, no remote images, the built-in ``alabaster`` theme):

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

The local extension ``docs/_ext/snn_docs.py`` draws the surrogate plots into ``docs/_generated``
at build time.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.abspath(os.path.dirname(__file__)), "_ext"))

project = "snn"
author = "the snn developers"
copyright = "2026, the snn developers"
release = "0.1.0"
version = "0.1"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "snn_docs",
]

# -- autodoc / napoleon -----------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
# Types only for parameters the docstring documents (the wrappers of torch layers document none).
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # never show torch's docstrings on snn's wrappers
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as ``:ivar:`` fields, not ``.. attribute::`` directives: no duplicate descriptions
# when autodoc also documents a member.
napoleon_use_ivar = True
# Sections used by snn's docstrings beyond the Google standard ones.
napoleon_custom_sections = [("Class attributes", "params_style"), ("Memories", "params_style")]

nitpicky = False
exclude_patterns = ["_build", "_generated", "_ext"]

# -- HTML -------------------------------------------------------------------------------------

html_theme = "alabaster"
html_static_path: list[str] = []
html_title = "snn documentation"
html_theme_options = {
    "description": "spiking neural networks for PyTorch",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}

# -- doctest ----------------------------------------------------------------------------------

# The doctest builder also runs the ``>>>`` examples of the docstrings that autodoc pulls in.
# Those examples are written from inside their module, so the names they use unqualified are
# imported here.
doctest_global_setup = """
import torch
torch.manual_seed(0)
from snn.functional.forward import apply_modules
from snn.layer import ElementWiseRecurrentContainer, MultiStepContainer
"""
