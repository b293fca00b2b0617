"""The LUT renderer and dataset generation on a GPU against the CPU, same machine, one run.

Case: 2 048 aggregates from the default dataset prior, rendered at 256² and
1 nm per pixel with the dataset's settings (shipped LUTs, orientation
spread, probe blur, extrapolation).  The aggregates are built beforehand;
only rendering is timed:
- ``cpu``: the C++ renderer on every core, images into numpy;
- ``cuda_host``: the CUDA renderer, images copied back into numpy;
- ``cuda_device``: the CUDA renderer writing into a torch CUDA tensor.

End to end, ``heteroagg.data.generate`` writes 8 192 items (aggregates,
descriptors, images, gzip'd HDF5 shards) with all cores as workers,
rendering on the CPU or on the GPU.  Skips without a CUDA device.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pytest

import heteroagg

if not heteroagg.cuda_status()[0]:
    pytest.skip(heteroagg.cuda_status()[1], allow_module_level=True)

from bench_rates import record_rate
from heteroagg.stem import FieldOfViewWarning, HaadfRenderer

IMAGES = 2048
ITEMS = 8192
SETTINGS = {"pixel_size": 1.0, "shape": (256, 256), "extrapolate": True}


@pytest.fixture(scope="module")
def aggregates():
    from heteroagg.data.generation import build_items

    _, aggs, _ = build_items(heteroagg.default_config().params, 1, range(IMAGES + 200), "skip")
    return [a for a in aggs if a is not None][:IMAGES]


def _time(benchmark, run, label):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        run()
        benchmark.pedantic(run, rounds=3, iterations=1)
    record_rate(benchmark, "renders_per_second", IMAGES)
    benchmark.extra_info["card"] = _card_name()
    benchmark.extra_info["cores"] = os.cpu_count()
    benchmark.extra_info["case"] = label


@pytest.mark.parametrize("where", ["cpu", "cuda_host", "cuda_device"])
def test_render_256(benchmark, aggregates, where):
    renderer = HaadfRenderer(**SETTINGS, device="cpu" if where == "cpu" else "cuda")
    seeds = list(range(len(aggregates)))
    out = None
    if where == "cuda_device":
        torch = pytest.importorskip("torch")
        out = torch.empty((len(aggregates), 256, 256), device="cuda")

    def run():
        renderer.batch(aggregates, seeds, out=out)

    _time(benchmark, run, where)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_generate_end_to_end(benchmark, tmp_path, device):
    from heteroagg.data import generate

    workers = os.cpu_count() or 1
    folder = tmp_path / "data"
    summaries = []

    def run():
        shutil.rmtree(folder, ignore_errors=True)
        summaries.append(
            generate(heteroagg.default_config(), ITEMS, folder, seed=1, workers=workers,
                     shard_size=256, device=device)
        )  # fmt: skip

    benchmark.pedantic(run, rounds=2, iterations=1)
    record_rate(benchmark, "images_per_second", ITEMS)
    benchmark.extra_info["workers"] = workers
    benchmark.extra_info["card"] = _card_name()
    assert all(s.computed == ITEMS for s in summaries)


def _card_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "unknown"
