"""Named datasets, fitted to a model's resolution and channels, with seeded subsets.

Classification (ImageSet, `load`): fashion-mnist, digits, imagefolder:PATH, cifar10:PATH, and fmnist-scenes
(the scene images, each with its main item's class, for distilling on the dense tasks' images).
Dense tasks (DenseSet, `load_dense`): fmnist-scenes (generated offline), celebamask-hq:PATH, wflw:PATH.
"""
from diffrep.data.imageset import (DATA_DEFAULTS, ImageSet, check_classes, fit_image, hflip_batch, held_out, labelled,
                                   load, outside, stratified_subset, to_float)
from diffrep.data.sources import NAMES
from diffrep.data.dense import (DENSE_DEFAULTS, DENSE_NAMES, DenseSet, held_out_dense, hflip_dense, labelled_dense,
                                load_dense, random_subset)
from diffrep.data.wflw import interocular

__all__ = ["DATA_DEFAULTS", "DENSE_DEFAULTS", "DENSE_NAMES", "DenseSet", "ImageSet", "NAMES", "check_classes",
           "fit_image", "held_out", "held_out_dense", "hflip_batch", "hflip_dense", "interocular", "labelled",
           "labelled_dense", "load", "load_dense", "outside", "random_subset", "stratified_subset", "to_float"]
