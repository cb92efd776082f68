"""Sphinx configuration of the snn documentation."""

from __future__ import annotations

import os
import sys

project = "snn"
author = "the snn developers"
copyright = "2026, the snn developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

doctest_global_setup = """
import torch
torch.manual_seed(0)
"""

sys.path.insert(0, os.path.abspath("."))
