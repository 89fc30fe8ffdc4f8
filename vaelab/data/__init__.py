"""Datasets: in-memory image tensors, ground-truth factors, procedural and downloaded data."""

from vaelab.data import (  # noqa: F401  (registration order is the table of contents)
    base,
    download,
    toy,
    dsprites,
    dsprites_domains,
    dsprites_variants,
    mnist,
    cifar,
    celeba,
    chairs,
    cars,
    groundtruth,
    shapes3d,
    mpi3d,
    smallnorb,
    cars3d,
    frey,
    mixed,
    custom,
)
from vaelab.data.base import DataConfig, DataError, FactorDataset, ImageDataset, data_home
from vaelab.data.loading import load_dataset

__all__ = ["DataConfig", "DataError", "FactorDataset", "ImageDataset", "data_home", "load_dataset"]
