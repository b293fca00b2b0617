"""On-the-fly training: the item stream equals a stored dataset, the producer is
deterministic, resumable and fails loudly, and a run trains, resumes and predicts."""

import csv
import json
import threading

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from typer.testing import CliRunner

from heteroagg.cli import app
from heteroagg.data import DatasetConfig
from heteroagg.data.dataset import SyntheticDataset
from heteroagg.data.generation import generate
from heteroagg.learn import TrainConfig, load_run, train
from heteroagg.learn import on_the_fly as fly
from heteroagg.learn.batches import Targets
from heteroagg.learn.image_store import ImageStore
from heteroagg.learn.item_split import split_items
from learn_data import tiny_config, train_killed_at_step

CPU = torch.device("cpu")
HEADS = ("hetero_coordination_number",)
FLY = dict(
    on_the_fly=True, items_per_epoch=96, val_items=48, batch_size=32, widths=(8, 16),
    blocks=(1, 1), bn_batches=2, val_fraction=0.2, seed=1, data_seed=7, threads=2,
)  # fmt: skip


def failing_config() -> DatasetConfig:
    """Small WO3 on large TiO2 without overlap: about half the draws cannot be built."""
    config = tiny_config().to_dict()
    config["params"]["radius_ti"] = {"prior": "log-uniform", "low": 4.0, "high": 6.0}
    config["params"]["radius_w"] = {"prior": "log-uniform", "low": 1.0, "high": 1.5}
    config["params"]["overlap"] = 0.0
    return DatasetConfig.from_dict(config)


def toml_text(config: DatasetConfig) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    tables = config.to_dict()
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items())
        for name, table in tables.items()
    )


@pytest.mark.parametrize("on_failure", ["skip", "redraw"])
def test_stream_items_are_the_items_of_a_stored_dataset(tmp_path, on_failure):
    config = failing_config()
    generate(config, 64, tmp_path / "ds", seed=5, shard_size=32, on_failure=on_failure)
    dataset = SyntheticDataset(tmp_path / "ds")
    failed = dataset.failed[:]
    assert failed.any() if on_failure == "skip" else not failed.all()
    train_items, val_items = split_items(len(dataset), failed, 3, 0.2)
    stream = fly.ItemStream(
        config, 5, 3, 0.2, on_failure=on_failure, threads=2, descriptor_names=HEADS
    )
    walker = stream.walk(0)
    first = stream.batch(walker, 12)
    second = stream.batch(walker, 12)
    items = np.concatenate([first.items, second.items])
    np.testing.assert_array_equal(items, train_items[:24])  # failed items are skipped
    assert first.cursor == first.items[-1] + 1 and first.cursor <= second.items[0]
    assert second.cursor == items[-1] + 1

    store = ImageStore(dataset, train_items, "memory", CPU, 0, False)
    targets = Targets(dataset, config.params, HEADS, fit_items=train_items)
    with pytest.raises(ValueError, match="stats or the items"):
        Targets(dataset, config.params, HEADS)
    for batch in (first, second):
        assert torch.equal(batch.clean(CPU), store(batch.items))  # bit for bit
        got = fly.target_values(batch.params, batch.descriptors, HEADS, targets.stats)
        np.testing.assert_array_equal(got, targets(batch.items).numpy())

    validation = stream.batch(stream.walk(0, validation=True), 4)
    np.testing.assert_array_equal(validation.items, val_items[:4])
    # A walk from a batch's cursor continues the stream exactly.
    np.testing.assert_array_equal(stream.batch(stream.walk(first.cursor), 12).items, second.items)


def test_producer_is_deterministic_resumable_and_stops(tmp_path):
    stream = fly.ItemStream(tiny_config(), 7, 1, 0.2, threads=2)
    with fly.BatchProducer(stream, 0, 16, prefetch=2) as producer:
        batches = [producer.get() for _ in range(3)]
    assert not producer._thread.is_alive()
    items = np.concatenate([b.items for b in batches])
    assert len(set(items)) == 48 and np.all(np.diff(items) > 0)
    with fly.BatchProducer(stream, batches[0].cursor, 16, prefetch=2) as resumed:
        again = [resumed.get() for _ in range(2)]
    for a, b in zip(batches[1:], again, strict=True):
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.params, b.params)
    # Closing a producer blocked on its full queue ends its thread at once.
    blocked = fly.BatchProducer(stream, 0, 4, prefetch=1)
    threading.Event().wait(0.3)
    blocked.close(timeout=10)
    assert not blocked._thread.is_alive()


def test_an_error_in_the_producer_is_raised_by_the_consumer(monkeypatch):
    stream = fly.ItemStream(tiny_config(), 7, 1, 0.2, threads=1)
    calls = {"n": 0}
    original = stream.batch

    def breaks_on_the_second(walker, size):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ZeroDivisionError("boom in the producer")
        return original(walker, size)

    monkeypatch.setattr(stream, "batch", breaks_on_the_second)
    producer = fly.BatchProducer(stream, 0, 8, prefetch=2)
    producer.get()
    with pytest.raises(ZeroDivisionError, match="boom"):
        producer.get()
    producer._thread.join(10)
    assert not producer._thread.is_alive()


def test_on_the_fly_run_trains_resumes_exactly_and_predicts(tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, checkpoint_minutes=1e-9, descriptor_heads=HEADS, **FLY)
    data = tiny_config()
    train(data, tmp_path / "full", config, progress=False, device="cpu")

    train_killed_at_step(5, data, tmp_path / "cut", config, monkeypatch)
    assert not [t for t in threading.enumerate() if t.name == "heteroagg-batches"]
    saved = torch.load(tmp_path / "cut/member-0/checkpoint.pt", weights_only=True)
    assert (saved["state"]["epoch"], saved["state"]["batch"]) == (1, 1)
    assert saved["state"]["cursor"] > 4 * 32  # mid-epoch: the stream's place is kept
    train(data, tmp_path / "cut", config, resume=True, progress=False, device="cpu")
    for name in ("best.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "full/member-0" / name, weights_only=True)
        b = torch.load(tmp_path / "cut/member-0" / name, weights_only=True)
        a, b = (a, b) if name == "best.pt" else (a["model"], b["model"])
        assert all(torch.equal(a[k], b[k]) for k in a), name

    with open(tmp_path / "full/member-0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[-1]["generated_images_per_s"]) > 0 and "data_wait_s" in rows[-1]
    info = json.loads((tmp_path / "full/run.json").read_text())
    assert info["dataset"]["on_the_fly"] and info["dataset"]["seed"] == 7
    assert info["dataset"]["n_val"] == 48 and info["dataset_config"] == data.to_dict()
    assert info["train"]["on_the_fly"] and info["descriptor_heads"] == list(HEADS)

    run = load_run(tmp_path / "full", device="cpu")
    stream = fly.ItemStream(data, 9, 1, 0.2)
    images = stream.batch(stream.walk(0), 3).clean(CPU)[:, 0].numpy()
    prediction = run.predict(images)
    assert prediction.normalized.shape == (3, len(run.parameters))
    assert np.isfinite(prediction.descriptors["hetero_coordination_number"]).all()
    with pytest.raises(ValueError, match="other settings"):
        other = TrainConfig(epochs=3, checkpoint_minutes=1e-9, descriptor_heads=HEADS, **FLY)
        train(data, tmp_path / "full", other, resume=True, progress=False, device="cpu")


def test_validation_dataset_and_clear_errors(tmp_path):
    data = tiny_config()
    generate(data, 40, tmp_path / "val", seed=8, shard_size=40)
    config = TrainConfig(epochs=1, **FLY)
    train(data, tmp_path / "run", config, progress=False, device="cpu", validation=tmp_path / "val")
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["dataset"]["validation"] == str((tmp_path / "val").resolve())
    assert info["dataset"]["n_val"] == 40
    assert (info["dataset"]["validation_n"], info["dataset"]["validation_seed"]) == (40, 8)
    # the validation set generated anew in its folder: the resumed run would validate on others
    index_path = tmp_path / "val" / "dataset.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "seed": 9}))
    with pytest.raises(ValueError, match="was generated anew since the run started"):
        train(data, tmp_path / "run", config, progress=False, device="cpu",
              validation=tmp_path / "val", resume=True)  # fmt: skip
    index_path.write_text(json.dumps(index))

    with pytest.raises(ValueError, match="training items"):
        seeded = TrainConfig(epochs=1, **{**FLY, "data_seed": 8})
        train(data, tmp_path / "a", seeded, progress=False, validation=tmp_path / "val")
    with pytest.raises(ValueError, match="another dataset config"):
        train(failing_config(), tmp_path / "b", config, progress=False, validation=tmp_path / "val")
    with pytest.raises(ValueError, match="is a folder"):
        train(tmp_path / "val", tmp_path / "c", config, progress=False)
    with pytest.raises(ValueError, match="on_the_fly = true"):
        train(data, tmp_path / "d", TrainConfig(), progress=False)
    with pytest.raises(ValueError, match="validation= is for on_the_fly"):
        train(tmp_path / "val", tmp_path / "e", TrainConfig(), validation=tmp_path / "val")
    with pytest.raises(ValueError, match="does not exist"):
        train(tmp_path / "none.toml", tmp_path / "f", config, progress=False)
    with pytest.raises(ValueError, match="items_per_epoch"):
        TrainConfig(on_the_fly=True, items_per_epoch=8, batch_size=32)
    with pytest.raises(ValueError, match="on_failure"):
        TrainConfig(on_failure="retry")
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=-1)
    with pytest.raises(ValueError, match="data_seed"):
        TrainConfig(data_seed=-1)


def test_a_config_that_gives_no_items_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """Every particle's path outruns the LUTs and extrapolation is off: no draw
    renders, and training says so instead of drawing for ever."""
    config = tiny_config().to_dict()
    config["params"].update(n_particles=4, radius_ti=50.0, radius_w=50.0)
    config["imaging"]["extrapolate"] = False
    monkeypatch.setattr(fly, "FRUITLESS_DRAWS", 64)
    with pytest.raises(ValueError, match=r"none of \d+ parameter draws in a row"):
        train(DatasetConfig.from_dict(config), tmp_path / "run", TrainConfig(epochs=1, **FLY),
              progress=False, device="cpu")  # fmt: skip


def test_the_gpu_path_gives_up_on_a_config_that_gives_no_items_too(monkeypatch):
    """On a GPU the items are built first and rendered as a batch: refusals there count too."""
    config = tiny_config().to_dict()
    config["params"].update(n_particles=4, radius_ti=50.0, radius_w=50.0)
    config["imaging"]["extrapolate"] = False
    monkeypatch.setattr(fly, "FRUITLESS_DRAWS", 64)
    stream = fly.ItemStream(DatasetConfig.from_dict(config), 1, 2, 0.1, threads=1)

    class RefusingRenderer:  # as HaadfRenderer(device="cuda").batch refuses such paths
        def batch(self, aggs, seeds, threads=0, out=None):
            raise ValueError("a beam path exceeds its LUT")

    stream.cuda_renderer, stream.on_cuda = RefusingRenderer(), True
    with pytest.raises(ValueError, match=r"none of \d+ parameter draws in a row"):
        stream.batch(stream.walk(0), 4)


def test_train_on_the_fly_from_the_shell(tmp_path):
    (tmp_path / "data.toml").write_text(toml_text(tiny_config()))
    settings = {k: v for k, v in FLY.items() if k != "on_the_fly"}
    lines = [f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in settings.items()]
    (tmp_path / "run.toml").write_text("[train]\nepochs = 1\n" + "\n".join(lines) + "\n")
    runner = CliRunner()
    args = ["train", "--on-the-fly", "--data-config", str(tmp_path / "data.toml"), "--out",
            str(tmp_path / "run"), "--config", str(tmp_path / "run.toml"), "--device", "cpu",
            "--data-seed", "11"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["train"]["on_the_fly"] and info["dataset"]["seed"] == 11
    bad = runner.invoke(app, ["train", "--on-the-fly", "--data", str(tmp_path), "--out", "x"])
    assert bad.exit_code == 2 and "--data-config" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "--on-the-fly" in " ".join(bad.output.split())


def test_pipeline_throughput_is_measured():
    rate = fly.images_per_second(tiny_config(), 16, threads=2, device="cpu", seconds=0.2)
    assert rate > 0
