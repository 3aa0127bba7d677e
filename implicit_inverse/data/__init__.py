"""Data: bundled sample images and faces, photo folders, patch datasets, image files."""

from .datasets import (PatchDataset, load_celeba, load_faces, load_image_folder,
                       load_natural_patches, train_test_faces)

__all__ = ["PatchDataset", "load_celeba", "load_faces", "load_image_folder",
           "load_natural_patches", "train_test_faces"]
