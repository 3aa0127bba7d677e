"""Sphinx configuration of the implicit_inverse documentation.

Build (offline, warnings are errors)::

    MPLBACKEND=agg sphinx-build -W -b html docs docs/_build/html

With ``DOCS_FAST=1`` the gallery examples run in their reduced mode (``IMPLICIT_INVERSE_FAST=1``).
"""

import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gallery_order

import implicit_inverse  # noqa: E402

if os.environ.get("DOCS_FAST", "") not in ("", "0"):
    os.environ["IMPLICIT_INVERSE_FAST"] = "1"
os.environ.setdefault("MPLBACKEND", "agg")
# torch's forward-mode AD (used by estimate_lipschitz) scripts its decompositions on first use;
# keep that internal deprecation notice out of the rendered example output.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                        category=FutureWarning)

project = "implicit_inverse"
author = "implicit_inverse developers"
copyright = "2026, implicit_inverse developers"
version = release = implicit_inverse.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "alabaster"
html_static_path = ["_static"] if (Path(__file__).parent / "_static").is_dir() else []
html_theme_options = {"description": "Implicit networks for imaging inverse problems",
                      "fixed_sidebar": True}

# -- API reference ------------------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
default_role = "literal"

# -- Gallery ------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("implicit_inverse",),
    "reference_url": {"implicit_inverse": None},
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "download_all_examples": False,
}


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods (metadata routing)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
