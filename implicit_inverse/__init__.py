"""implicit_inverse: implicit (deep equilibrium) networks for imaging inverse problems."""

__version__ = "0.1.0"
