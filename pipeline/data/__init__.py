"""MNIST-format datasets: the catalogue, the IDX reader, and where the files come from."""

from pipeline.data.catalog import DATASETS, DatasetSpec, get_spec
from pipeline.data.idx import parse_idx
from pipeline.data.loading import ImageDataset, load_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "get_spec", "load_dataset", "parse_idx"]
