"""Session fixtures: tiny datasets and a trained run for the learning tests."""

import os

import pytest

from learn_data import tiny_dataset

# Under pytest-xdist the workers share the cores: each worker's PyTorch and
# OpenMP pools get its share, so that 16 workers on 16 cores do not start 16
# threads each.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory):
    pytest.importorskip("torch")
    return tiny_dataset(tmp_path_factory.mktemp("learn") / "train", 400, seed=11)


@pytest.fixture(scope="session")
def tiny_test(tmp_path_factory):
    pytest.importorskip("torch")
    return tiny_dataset(tmp_path_factory.mktemp("learn") / "test", 120, seed=12)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_train):
    """A two-member Gaussian ensemble trained for a few epochs."""
    from heteroagg.learn import TrainConfig, train

    out = tmp_path_factory.mktemp("learn") / "run"
    config = TrainConfig(
        epochs=3,
        batch_size=32,
        widths=(8, 16, 32),
        blocks=(1, 1, 1),
        ensemble=2,
        gaussian=True,
        descriptor_heads=("hetero_coordination_number",),
        val_fraction=0.15,
        seed=3,
    )
    train(tiny_train, out, config, progress=False)
    return out
