"""Label maps as dense auxiliary targets: the maps against geometry, their
augmentation, and runs that learn them."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from heteroagg.aggregate import Aggregate
from heteroagg.learn import TrainConfig, load_run, train
from heteroagg.learn.batches import augment, batch_generator
from heteroagg.learn.label_maps import item_label_maps, stored_label_maps
from heteroagg.learn.networks import ResNetRegressor
from heteroagg.stem import FieldOfViewWarning, HaadfRenderer
from learn_data import tiny_dataset, train_killed_at_step, trainer_of

ALL_MAPS = ("path_tio2", "path_wo3", "centres_tio2", "centres_wo3")


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_path_maps_integrate_to_each_materials_volume():
    """Σ path · block area = the volume of that material's (separate) spheres."""
    renderer = HaadfRenderer(pixel_size=0.5, shape=(128, 128))
    centers = np.array([[-12.0, 0.0, 0.0], [12.0, 3.0, 0.0], [0.0, -14.0, 5.0]])
    radii = np.array([6.0, 4.5, 3.0])
    materials = np.array([0, 1, 1], dtype=np.uint8)
    agg = Aggregate(centers, radii, materials)
    rotation = random_rotation(np.random.default_rng(1))
    maps = item_label_maps(agg, rotation, renderer, ALL_MAPS, 8)
    assert maps.shape == (4, 16, 16)
    cell_area = (8 * 0.5) ** 2
    for k, material in enumerate((0, 1)):
        volume = sum(
            4 / 3 * math.pi * r**3 for r, m in zip(radii, materials, strict=True) if m == material
        )
        assert maps[k].sum() * cell_area == pytest.approx(volume, rel=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_centre_maps_put_each_centre_in_the_block_of_its_thickest_pixel(seed):
    """A sphere's path peaks at the pixel nearest its projected centre."""
    rng = np.random.default_rng(seed)
    renderer = HaadfRenderer(pixel_size=1.0, shape=(64, 64))
    radii = np.array([2.3, 3.1])
    agg = Aggregate(rng.uniform(-12, 12, (2, 3)), radii, np.array([0, 1], np.uint8))
    rotation = random_rotation(rng)
    maps = item_label_maps(agg, rotation, renderer, ALL_MAPS, 4)
    rendering = renderer(agg, 0, rotation=rotation, labels=True)
    for material, r in enumerate(radii):  # one sphere per material
        path = rendering.thickness[material]
        # the chord through the pixel centre nearest the sphere's centre (at most √2/2 px off)
        assert 2 * math.sqrt(r**2 - 0.5) - 1e-4 <= path.max() <= 2 * r + 1e-4
        row, col = np.unravel_index(np.argmax(path), path.shape)
        expected = np.zeros((16, 16))
        expected[row // 4, col // 4] = 1
        np.testing.assert_array_equal(maps[2 + material], expected)


def test_centres_outside_the_field_are_not_counted():
    renderer = HaadfRenderer(pixel_size=1.0, shape=(32, 32))
    centers = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    agg = Aggregate(centers, np.array([3.0, 3.0]), np.array([1, 1], np.uint8))
    with pytest.warns(FieldOfViewWarning):
        maps = item_label_maps(agg, np.eye(3), renderer, ("centres_wo3",), 4)
    # the field is centred on the aggregate's middle, so each sphere is 20 nm off centre
    assert maps.sum() == 0
    maps = item_label_maps(
        Aggregate(centers[:1], np.array([3.0]), np.array([1], np.uint8)),
        np.eye(3),
        renderer,
        ("centres_wo3",),
        4,
    )
    assert maps.sum() == 1


def test_augment_turns_and_flips_the_maps_with_their_images():
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((16, 3, 8, 8)).astype(np.float32))
    # images that are the maps' first channel blown up 4x: the pair must stay aligned
    images = maps[:, :1].repeat_interleave(4, dim=2).repeat_interleave(4, dim=3).contiguous()
    options = dict(dose_prior=None, pixel_size_nm=1.0, flips=True, contrast_jitter=0, read_noise=0)
    g = batch_generator(3, 1, 2, torch.device("cpu"))
    x, m = augment(images, g, maps=maps, **options)
    np.testing.assert_array_equal(x[:, 0, ::4, ::4].numpy(), m[:, 0].numpy())
    assert not torch.equal(m, maps)  # some were turned
    alone = augment(images, batch_generator(3, 1, 2, torch.device("cpu")), **options)
    assert torch.equal(alone, x)


def test_dense_head_shape_and_its_absence():
    net = ResNetRegressor(3, widths=(8, 16, 32), blocks=(1, 1, 1), space_to_depth=2, map_outputs=4)
    x = torch.randn(2, 1, 64, 64)
    out, maps = net(x, maps=True)
    assert out.shape == (2, 3) and maps.shape == (2, 4, 16, 16)
    assert net.map_block == 4
    net.eval()
    torch.testing.assert_close(net(x), net(x, maps=True)[0])
    with pytest.raises(ValueError, match="no dense head"):
        ResNetRegressor(3, widths=(8,), blocks=(1,))(x, maps=True)


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("maps") / "train", 192, 5)


MAP_CONFIG = dict(
    epochs=2,
    batch_size=16,
    widths=(8, 16),
    blocks=(1, 1),
    space_to_depth=2,
    bn_batches=2,
    label_maps=ALL_MAPS,
)


def test_stored_label_maps_serve_each_items_maps_and_are_cached(tiny_train, tmp_path):
    from heteroagg.data import open_dataset

    ds = open_dataset(tiny_train)
    items = np.flatnonzero(~ds.failed[:])[:20]
    cache = tmp_path / "maps.npy"
    maps = stored_label_maps(ds, items, ALL_MAPS, 4, cache=cache, threads=2)
    imaging = ds.index["config"]["imaging"]
    renderer = HaadfRenderer(pixel_size=imaging["pixel_size"], shape=tuple(imaging["shape"]))
    got = maps(items[[7, 3]]).numpy()
    for row, i in zip(got, items[[7, 3]], strict=True):
        direct = item_label_maps(ds.aggregate(int(i)), ds.rotations[int(i)], renderer, ALL_MAPS, 4)
        np.testing.assert_allclose(row, direct, rtol=1e-3, atol=1e-3)  # stored as float16
    assert np.load(cache).shape == (20, 4, 16, 16)
    assert not list(tmp_path.glob("*.part.npy"))
    again = stored_label_maps(ds, items, ALL_MAPS, 4, cache=cache)
    assert isinstance(again.maps, np.memmap)
    assert torch.equal(again(items), maps(items))
    scale = maps.scale(items)
    assert scale.shape == (1, 4, 1, 1) and torch.all(scale > 1e-3)
    # a cache of other maps is drawn again, not misread
    other = stored_label_maps(ds, items, ("path_wo3",), 4, cache=cache)
    assert other(items).shape == (20, 1, 16, 16)
    np.testing.assert_allclose(other(items)[:, 0], maps(items)[:, 1])


def test_label_maps_are_cropped_with_the_image(tiny_train, tmp_path, monkeypatch):
    # 64² images, 4 x 4 pixel blocks: the centred 32² crop is map blocks 4..11 of 16; shot
    # noise on the lit pixels and read noise on every pixel would draw more numbers for the
    # whole image (an aggregate reaching beyond the crop), and so other flips after them
    config = dict(MAP_CONFIG, read_noise=0.0, noise=False)
    cropped = trainer_of(tiny_train, tmp_path / "c", TrainConfig(**config, crop=32), monkeypatch)
    whole = trainer_of(tiny_train, tmp_path / "w", TrainConfig(**config, crop=0), monkeypatch)
    items = cropped.train_items[:16]
    for training in (True, False):  # turned and flipped first, then cut
        images, _, maps = cropped._batch(items, 1, 3, training)
        full_images, _, full_maps = whole._batch(items, 1, 3, training)
        assert full_maps.shape == (16, 4, 16, 16) and maps.shape == (16, 4, 8, 8)
        # each trainer standardises by the spread over what its network sees
        unscaled, full = maps * cropped.map_scale, full_maps * whole.map_scale
        torch.testing.assert_close(unscaled, full[..., 4:12, 4:12])
        assert torch.all(cropped.map_scale > whole.map_scale)  # less vacuum in the crop
        assert images.shape == (16, 1, 32, 32) and full_images.shape == (16, 1, 64, 64)
    _, dense = cropped.model(images, maps=True)
    assert dense.shape == maps.shape


def test_label_map_run_learns_the_maps_resumes_and_predicts(tiny_train, tmp_path, monkeypatch):
    config = TrainConfig(**MAP_CONFIG, crop=32, checkpoint_minutes=1e-9)
    train(tiny_train, tmp_path / "whole", config, progress=False, device="cpu")
    rows = (tmp_path / "whole" / "member-0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("val_map_loss")]) for r in rows[1:]]
    assert losses[-1] < losses[0] < 1.5  # standardised maps: 1 is a constant guess
    info = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert info["train"]["label_maps"] == list(ALL_MAPS)

    train_killed_at_step(7, tiny_train, tmp_path / "resumed", config, monkeypatch)
    from heteroagg.learn import label_maps

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run reads the label maps it drew")

    monkeypatch.setattr(label_maps, "item_label_maps", refuse)
    train(tiny_train, tmp_path / "resumed", config, progress=False, device="cpu", resume=True)
    for name in ("best.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "whole" / "member-0" / name, weights_only=True)
        b = torch.load(tmp_path / "resumed" / "member-0" / name, weights_only=True)
        a, b = a.get("model", a), b.get("model", b)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    run = load_run(tmp_path / "whole", device="cpu")
    image = np.zeros((1, 64, 64), np.float32)
    prediction = run.predict(image)
    assert prediction.normalized.shape == (1, len(info["parameters"]))
    assert np.all(np.isfinite(prediction.normalized))

    # the exported model is the θ network alone, as without label maps
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    from heteroagg.deploy import export_onnx

    report = export_onnx(tmp_path / "whole", tmp_path / "model.onnx")
    assert max(report.max_rel_difference.values()) < 1e-4
    names = [t.name for t in onnx.load(str(tmp_path / "model.onnx")).graph.initializer]
    assert names and not [n for n in names if "dense" in n]


def test_label_map_settings_are_checked(tiny_train, tmp_path):
    with pytest.raises(ValueError, match="unknown label_maps"):
        TrainConfig(label_maps=("path_tio2", "density"))
    with pytest.raises(ValueError, match="repeats"):
        TrainConfig(label_maps=("path_wo3", "path_wo3"))
    with pytest.raises(ValueError, match="label_map_weight"):
        TrainConfig(label_maps=("path_wo3",), label_map_weight=0)
    odd = TrainConfig(**{**MAP_CONFIG, "space_to_depth": 64})
    with pytest.raises(ValueError, match="multiples of 128"):
        train(tiny_train, tmp_path / "odd", odd, progress=False, device="cpu")


def test_on_the_fly_label_maps_are_those_of_the_stored_items(tmp_path):
    from heteroagg.data.dataset import SyntheticDataset
    from heteroagg.data.generation import generate
    from heteroagg.learn import on_the_fly as fly
    from heteroagg.learn.label_maps import stored_label_maps
    from learn_data import tiny_config

    config = tiny_config()
    generate(config, 48, tmp_path / "ds", seed=5, shard_size=24)
    stream = fly.ItemStream(config, 5, 3, 0.2, threads=2, label_maps=ALL_MAPS, map_block=4)
    batch = stream.batch(stream.walk(0), 12)
    stored = stored_label_maps(SyntheticDataset(tmp_path / "ds"), batch.items, ALL_MAPS, 4)
    assert batch.maps.shape == (12, 4, 16, 16)
    np.testing.assert_allclose(batch.maps, stored(batch.items).numpy(), rtol=1e-3, atol=1e-3)
    assert batch.maps[:, 2:].sum() > 12  # the centres are there


def test_on_the_fly_run_learns_label_maps_validated_on_a_stored_set(tmp_path):
    from heteroagg.data.generation import generate
    from learn_data import tiny_config

    data = tiny_config()
    generate(data, 40, tmp_path / "val", seed=8, shard_size=40)
    config = TrainConfig(
        epochs=1, on_the_fly=True, items_per_epoch=64, batch_size=32, widths=(8, 16),
        blocks=(1, 1), bn_batches=2, val_fraction=0.2, seed=1, data_seed=7, threads=2,
        label_maps=("path_wo3", "centres_wo3"),
    )  # fmt: skip
    train(data, tmp_path / "run", config, progress=False, device="cpu", validation=tmp_path / "val")
    rows = (tmp_path / "run/member-0/metrics.csv").read_text().splitlines()
    assert "val_map_loss" in rows[0].split(",")
    n_val = json.loads((tmp_path / "run/run.json").read_text())["dataset"]["n_val"]
    side = 64 // config.map_block  # 64² images
    assert np.load(tmp_path / "run/validation_label_maps.npy").shape == (n_val, 2, side, side)
