"""Named datasets, fitted to a model's resolution and channels, with seeded subsets."""
from diffrep.data.imageset import (DATA_DEFAULTS, ImageSet, fit_image, hflip_batch, labelled, load,
                                   stratified_subset, to_float)
from diffrep.data.sources import NAMES

__all__ = ["DATA_DEFAULTS", "ImageSet", "NAMES", "fit_image", "hflip_batch", "labelled", "load",
           "stratified_subset", "to_float"]
