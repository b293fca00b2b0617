"""Speed of the deployed model: the Predictor (ONNX Runtime) against PyTorch eager.

The model is the default recipe (network A, Gaussian head, heads for HCN, CN
and R_g) at the default 256 x 256 input, trained for one epoch on a small
generated set (the weights do not change the speed).  Measured in one run:

- single-image latency of :class:`heteroagg.deploy.Predictor` on one CPU thread;
- the same for ``TrainedRun.predict`` (PyTorch eager, one thread): the anchor;
- batch throughput of the Predictor (64 images, default threads);
- single-image latency of a model exported with ``symmetrize=True`` (eight
  copies of the image per member), one thread.

Figures go to docs/performance.md.  Run with ``pytest benchmarks/test_bench_deploy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bench_rates import record_rate  # noqa: E402
from heteroagg.data import default_config, generate, open_dataset  # noqa: E402
from heteroagg.deploy import Predictor, export_onnx  # noqa: E402
from heteroagg.learn import TrainConfig, TrainedRun, train  # noqa: E402

HEADS = ("hetero_coordination_number", "coordination_number", "radius_of_gyration")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    generate(default_config(), 160, root / "data", seed=5, shard_size=80, workers=2)
    config = TrainConfig(epochs=1, batch_size=32, gaussian=True, descriptor_heads=HEADS,
                         val_fraction=0.2, bn_batches=1)  # fmt: skip
    train(root / "data", root / "run", config, device="cpu", progress=False)
    export_onnx(root / "run", root / "model.onnx")
    export_onnx(root / "run", root / "symmetric.onnx", symmetrize=True)
    images = open_dataset(root / "data").images[:64]
    return root, np.asarray(images, dtype=np.float32)


def test_predictor_single_image_one_thread(benchmark, deployed):
    root, images = deployed
    predictor = Predictor(root / "model.onnx", providers="cpu", threads=1)
    predictor.predict(images[0])
    benchmark(predictor.predict, images[0])
    benchmark.extra_info["target_ms"] = 5.0


def test_torch_eager_single_image_one_thread(benchmark, deployed):
    root, images = deployed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = TrainedRun(root / "run", device="cpu")
        run.predict(images[:1])
        benchmark(run.predict, images[:1])
    finally:
        torch.set_num_threads(threads)


def test_predictor_batch_throughput(benchmark, deployed):
    root, images = deployed
    predictor = Predictor(root / "model.onnx", providers="cpu")
    predictor.predict(images)
    benchmark.pedantic(predictor.predict, (images,), rounds=5, iterations=1)
    record_rate(benchmark, "images_per_second", len(images))


def test_symmetrized_predictor_single_image_one_thread(benchmark, deployed):
    root, images = deployed
    predictor = Predictor(root / "symmetric.onnx", providers="cpu", threads=1)
    predictor.predict(images[0])
    benchmark(predictor.predict, images[0])
