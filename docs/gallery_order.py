"""Order of the gallery examples (a module so that Sphinx can pickle the configuration)."""

import os

EXAMPLE_ORDER = [
    "plot_quickstart.py",
    "plot_pretrained_prior.py",
    "plot_operators_tour.py",
    "plot_jfb_vs_exact.py",
    "plot_classical_baselines.py",
    "plot_grid_search.py",
    "plot_super_resolution_inpainting.py",
    "plot_convergence_diagnostics.py",
    "plot_custom_regularizer.py",
]


class ExampleOrder:
    """sphinx-gallery ``within_subsection_order`` key: the order above, then by file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __repr__(self):
        return "ExampleOrder"

    def __call__(self, filename):
        name = os.path.basename(filename)
        position = EXAMPLE_ORDER.index(name) if name in EXAMPLE_ORDER else len(EXAMPLE_ORDER)
        return position, name
