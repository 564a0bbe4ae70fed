"""Sphinx configuration of the captum_cfx documentation (built by CI with -W)."""

from captum_cfx import __version__

project = "captum_cfx"
author = "The captum_cfx developers"
release = __version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
exclude_patterns = ["_build"]
html_theme = "alabaster"
