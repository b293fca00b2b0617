"""Tiny datasets and runs shared by the learning tests."""

from heteroagg.data import DatasetConfig, default_config
from heteroagg.data.generation import generate


def tiny_config() -> DatasetConfig:
    """64² images of 2 nm pixels of small aggregates: seconds to generate."""
    config = default_config().to_dict()
    config["params"]["n_particles"] = {"prior": "log-uniform", "low": 6, "high": 30}
    config["params"]["radius_ti"] = {"prior": "log-uniform", "low": 2.0, "high": 5.0}
    config["params"]["radius_w"] = {"prior": "log-uniform", "low": 2.0, "high": 4.0}
    config["imaging"].update(pixel_size=2.0, shape=[64, 64])
    return DatasetConfig.from_dict(config)


def tiny_dataset(out, n: int, seed: int):
    generate(tiny_config(), n, out, seed=seed, shard_size=128)
    return out
