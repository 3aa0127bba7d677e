"""Forward operators ``A`` acting on image batches shaped (N, C, H, W)."""

from .base import LinearOperator, conjugate_gradient, dot_test
from .blur import Blur, disk_kernel, gaussian_kernel, motion_kernel
from .noise import make_measurements
from .sampling import Downsample, Identity, Mask

__all__ = ["LinearOperator", "Blur", "Downsample", "Mask", "Identity", "gaussian_kernel",
           "disk_kernel", "motion_kernel", "make_measurements", "dot_test", "conjugate_gradient"]
