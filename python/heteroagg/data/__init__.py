"""Synthetic datasets: the parameter space, the configuration, generation and reading."""

from heteroagg.data.config import DatasetConfig, ImagingConfig, default_config
from heteroagg.data.dataset import SyntheticDataset, open_dataset
from heteroagg.data.generation import GenerationSummary, generate
from heteroagg.data.space import ParameterSpace, Prior

__all__ = [
    "DatasetConfig",
    "GenerationSummary",
    "ImagingConfig",
    "ParameterSpace",
    "Prior",
    "SyntheticDataset",
    "default_config",
    "generate",
    "open_dataset",
]
