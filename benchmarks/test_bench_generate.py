"""End-to-end dataset generation: sampling, descriptors, rendering and compressed HDF5 writes.

The case of issue #5: 256² images of 100-particle aggregates of the default model
(other fields from the default priors), 1 and 2 local worker processes.  Figures go to
docs/performance.md.  Run with ``pytest benchmarks/test_bench_generate.py``.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("h5py")

from bench_rates import record_rate
from heteroagg.data import DatasetConfig, default_config, generate

N = 512


def config_100():
    config = default_config().to_dict()
    config["params"]["n_particles"] = 100
    return DatasetConfig.from_dict(config)


@pytest.mark.parametrize("workers", [1, 2])
def test_generate(benchmark, tmp_path, workers):
    config = config_100()
    out = tmp_path / "ds"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        return generate(config, N, out, seed=1, workers=workers, shard_size=128)

    summary = benchmark.pedantic(run, rounds=3, iterations=1)
    # a failed draw is stored as a blank placeholder: it is an item, not an image
    record_rate(benchmark, "items_per_second", N)
    record_rate(benchmark, "images_per_second", N - summary.failed)
    benchmark.extra_info.update(
        bytes_per_image=summary.bytes_per_image,
        failed=summary.failed,
        clipped=summary.clipped,
    )
