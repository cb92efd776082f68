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
# The example plugin's modules are shown and doctested in the plugin guide without installing it
# (an installed copy would register its entry point in every doctest).
_EXAMPLE_PLUGIN = os.path.join(os.path.dirname(os.path.abspath(os.path.dirname(__file__))), "examples",
                               "snn-example-plugin", "src")
if _EXAMPLE_PLUGIN not in sys.path:
    sys.path.append(_EXAMPLE_PLUGIN)

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
    "matplotlib.sphinxext.plot_directive",
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

# -- plots ------------------------------------------------------------------------------------

# ``.. plot::`` blocks (snn.visualizing, snn.encoding, snn.monitor, snn.layer pages) run their
# code at build time with matplotlib's Agg backend; the PNG goes into the page, no source links.
plot_formats = [("png", 100)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = True

# -- HTML -------------------------------------------------------------------------------------

html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["snn.css"]  # long code lines wrap instead of being cut off
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
