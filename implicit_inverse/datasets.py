"""The bundled data sets, where users import them from (defined in :mod:`.data`)."""

from .data.datasets import (PatchDataset, load_celeba, load_faces, load_image_folder,
                            load_natural_patches, train_test_faces)

__all__ = ["PatchDataset", "load_celeba", "load_faces", "load_image_folder",
           "load_natural_patches", "train_test_faces"]
