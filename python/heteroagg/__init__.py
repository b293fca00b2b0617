"""heteroagg: 3D structure of TiO2-WO3 hetero-aggregates from single HAADF-STEM images.

The stochastic 3D model (:class:`ModelParams`, :func:`sample_aggregate`) and the
structural descriptors (:func:`descriptors`) run in a compiled C++ core.
Geometry is in nm.
"""

from heteroagg._core import build_info as _build_info
from heteroagg._device import cuda_status, resolve_device
from heteroagg.aggregate import Aggregate, SamplerOptions, sample_aggregate, sample_aggregates
from heteroagg.atoms import frozen_phonons, to_atoms
from heteroagg.data import DatasetConfig, ParameterSpace, default_config, open_dataset
from heteroagg.descriptors import (
    Descriptors,
    ProjectedCoverage,
    convex_hull_volume_fraction,
    descriptors,
    projected_contact_candidates,
    projected_coverage,
)
from heteroagg.model import GenerationError, ModelParams, fractal_law_rg
from heteroagg.rng import derive_seed

__version__: str = _build_info["version"]

__all__ = [
    "Aggregate",
    "DatasetConfig",
    "Descriptors",
    "GenerationError",
    "ModelParams",
    "ParameterSpace",
    "ProjectedCoverage",
    "SamplerOptions",
    "__version__",
    "convex_hull_volume_fraction",
    "cuda_status",
    "default_config",
    "derive_seed",
    "descriptors",
    "fractal_law_rg",
    "frozen_phonons",
    "open_dataset",
    "projected_contact_candidates",
    "projected_coverage",
    "resolve_device",
    "sample_aggregate",
    "sample_aggregates",
    "to_atoms",
]
