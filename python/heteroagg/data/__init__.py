"""Synthetic datasets: the parameter space and the dataset configuration."""

from heteroagg.data.config import DatasetConfig, ImagingConfig, default_config
from heteroagg.data.space import ParameterSpace, Prior

__all__ = ["DatasetConfig", "ImagingConfig", "ParameterSpace", "Prior", "default_config"]
