"""heteroagg.data.generate and open_dataset: HDF5 shards, determinism and resume."""

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

import heteroagg
from heteroagg.data import DatasetConfig, default_config
from heteroagg.data.dataset import open_dataset
from heteroagg.data.generation import IMAGE_SCALE, generate
from heteroagg.deploy.images import read_images
from heteroagg.rng import derive_seed


def small_config():
    config = default_config().to_dict()
    config["params"]["n_particles"] = {"prior": "uniform", "low": 8, "high": 30}
    config["imaging"].update(pixel_size=1.0, shape=[64, 64])
    return DatasetConfig.from_dict(config)


def arrays(ds):
    return {
        "images": ds.images[:],
        "params": np.stack([c[:] for c in ds.params.values()], axis=1),
        "descriptors": np.stack([c[:] for c in ds.descriptors.values()], axis=1),
        "failed": ds.failed[:],
        "rotations": ds.rotations[:],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "reference"
    summary = generate(small_config(), 70, out, seed=5, shard_size=16)
    return out, summary


def test_items_are_pure_functions_of_seed_and_index(reference, tmp_path):
    out, summary = reference
    assert summary.items == summary.computed == 70
    ds = open_dataset(out)
    parallel = generate(small_config(), 70, tmp_path / "two", seed=5, shard_size=16, workers=2)
    assert parallel.computed == 70
    ref, two = arrays(ds), arrays(open_dataset(tmp_path / "two"))
    for name in ref:
        np.testing.assert_array_equal(ref[name], two[name], err_msg=name)
    # a shorter dataset with other shards holds the same first items
    short = generate(small_config(), 20, tmp_path / "short", seed=5, shard_size=7)
    assert short.items == 20
    np.testing.assert_array_equal(open_dataset(tmp_path / "short").images[:], ds.images[:20])


def test_items_hold_their_truth(reference):
    out, _ = reference
    ds = open_dataset(out)
    config = small_config()
    assert len(ds) == 70 and ds.images[3:9].shape == (6, 64, 64)
    assert ds.images[:].dtype == np.float32 and ds.images[:].max() < 1
    i = int(np.flatnonzero(~ds.failed[:])[3])
    theta = config.params.sample(5, i)
    assert ds.params["radius_ti"][i] == theta.radius_ti
    agg = ds.aggregate(i)
    expected = heteroagg.sample_aggregate(theta, derive_seed(derive_seed(5, i), 1))
    np.testing.assert_array_equal(agg.centers, expected.centers)
    assert agg.params == theta
    d = expected.descriptors()
    assert ds.descriptors["hetero_coordination_number"][i] == d.hetero_coordination_number
    # the stored image is the renderer's, quantised to 1 / 65535 of the beam
    from heteroagg.stem import HaadfRenderer

    renderer = HaadfRenderer(pixel_size=1.0, shape=(64, 64), extrapolate=True)
    image = renderer(expected, derive_seed(derive_seed(5, i), 0))
    np.testing.assert_allclose(ds.images[i], np.clip(image, 0, 1), atol=0.51 / IMAGE_SCALE)
    np.testing.assert_allclose(ds.rotations[i] @ ds.rotations[i].T, np.eye(3), atol=1e-12)


def test_slices_cross_shards(reference):
    ds = open_dataset(reference[0])
    whole = ds.params["frac_w"][:]
    np.testing.assert_array_equal(ds.params["frac_w"][10:40], whole[10:40])
    np.testing.assert_array_equal(ds.params["frac_w"][::7], whole[::7])
    assert ds.params["frac_w"][33] == whole[33]
    # index arrays keep their order and repeats across shards, as numpy's do
    picks = np.array([60, 5, 33, 5, 17])
    singles = [ds.images[int(i)] for i in picks]
    np.testing.assert_array_equal(ds.images[picks], np.stack(singles))
    np.testing.assert_array_equal(ds.params["frac_w"][picks], [whole[i] for i in picks])
    assert ds.images[10:10].shape == (0, 64, 64) and ds.params["frac_w"][[]].shape == (0,)
    with pytest.raises(IndexError):
        ds.aggregate(70)


def test_item_keys_select_as_numpy_does_with_few_shards_open(reference, monkeypatch):
    import heteroagg.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "MAX_OPEN_SHARDS", 2)
    gc.collect()  # datasets of earlier tests close their files
    before = open_shard_files()
    ds = open_dataset(reference[0])  # 70 items in 5 shards of 16
    whole = {"images": ds.images[:], "frac_w": ds.params["frac_w"][:], "failed": ds.failed[:]}
    whole["rotations"] = np.stack([ds.rotations[i] for i in range(70)])  # item by item
    mask = np.arange(70) % 3 == 1
    keys = [5, -1, np.int64(69), np.uint8(7), slice(None, None, -3), slice(60, 3, -5),
            slice(-20, None), [-1, 0, 69], np.array([69, -70, 5, 5]), mask, np.array([], int),
            np.array(12)]  # fmt: skip
    columns = {"images": ds.images, "frac_w": ds.params["frac_w"], "failed": ds.failed}
    for key in keys:
        for name, column in columns.items():
            np.testing.assert_array_equal(column[key], whole[name][key], err_msg=f"{name}[{key}]")
        np.testing.assert_array_equal(ds.rotations[key], whole["rotations"][key])
        assert 0 < open_shard_files() - before <= 2
    np.testing.assert_array_equal(ds.rotations[:], whole["rotations"])  # the kept table
    # small integer types: the indices widen before they wrap (100 000 fits no int16)
    keys = dataset_module._item_indices(np.array([1, -2], np.int16), 100_000)
    np.testing.assert_array_equal(keys, [1, 99_998])
    # 1-tuples index as numpy's
    small = np.array([1, 69], np.uint8), np.array([-1, 3], np.int8), np.array([5], np.uint64)
    for key in (*small, (5,), (np.array([2, 4]),)):
        np.testing.assert_array_equal(ds.params["frac_w"][key], whole["frac_w"][key])
        np.testing.assert_array_equal(ds.images[key], whole["images"][key])
    for bad in (70, -71, [3, 70], np.array([-71]), True, 2.0, "3", (1, 2), [(1, 2)],
                np.array([[1, 2], [3, 4]]), np.array([2**63], np.uint64)):  # fmt: skip
        with pytest.raises(IndexError):
            ds.images[bad]
        with pytest.raises(IndexError):
            ds.params["frac_w"][bad]
    ds.close()
    assert open_shard_files() == before


def test_running_out_of_file_handles_is_not_called_damage(reference, tmp_path, monkeypatch):
    """A shard that cannot be opened for lack of file handles is healthy: neither
    reading nor resuming may call it damaged (resume would write over it)."""
    import errno

    import h5py

    from heteroagg.data.generation import _shard_done

    def no_handles(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    ds = open_dataset(reference[0])
    monkeypatch.setattr(h5py, "File", no_handles)
    with pytest.raises(OSError, match="ulimit -n") as refused:
        ds.images[40]
    assert not isinstance(refused.value, ValueError) and "delete" not in str(refused.value)
    with pytest.raises(OSError, match="Too many open files"):
        _shard_done(reference[0] / "shard-00000.h5", 5, 0, 16)


def test_resume_completes_a_killed_run(reference, tmp_path):
    out = tmp_path / "killed"
    generate(small_config(), 70, out, seed=5, shard_size=16)
    (out / "shard-00001.h5").unlink()  # never finished
    (out / "shard-00002.h5").rename(out / "shard-00002.h5.part")  # killed while writing
    with pytest.raises(ValueError, match="incomplete"):
        open_dataset(out)
    with pytest.raises(ValueError, match="resume=True"):
        generate(small_config(), 70, out, seed=5, shard_size=16)
    with pytest.raises(ValueError, match=r"other settings \(seed differ\)"):
        generate(small_config(), 70, out, seed=6, shard_size=16, resume=True)
    summary = generate(small_config(), 70, out, seed=5, shard_size=16, resume=True)
    assert summary.computed == 32
    # a shard cut short after the run (a full disk, an interrupted copy) is found and redone
    shard = out / "shard-00003.h5"
    shard.write_bytes(shard.read_bytes()[:6000])
    with pytest.raises(ValueError, match=r"shard-00003\.h5 cannot be read"):
        open_dataset(out).images[50]
    assert generate(small_config(), 70, out, seed=5, shard_size=16, resume=True).computed == 16
    # one of full size with a zeroed tail (a copy into a preallocated file) opens in HDF5
    shard = out / "shard-00002.h5"
    size = shard.stat().st_size
    with shard.open("r+b") as f:
        f.seek(size // 2)
        f.write(bytes(size - size // 2))
    with pytest.raises(ValueError, match=r"shard-00002\.h5 cannot be read.*resume=True"):
        arrays(open_dataset(out))
    assert generate(small_config(), 70, out, seed=5, shard_size=16, resume=True).computed == 16
    ref, resumed = arrays(open_dataset(reference[0])), arrays(open_dataset(out))
    for name in ref:
        np.testing.assert_array_equal(ref[name], resumed[name], err_msg=name)
    # resuming a finished dataset writes nothing, its index included
    index = out / "dataset.json"
    written = index.stat().st_mtime_ns
    assert generate(small_config(), 70, out, seed=5, shard_size=16, resume=True).computed == 0
    assert index.stat().st_mtime_ns == written
    # shards left without their index may hold other settings: a new run refuses them
    index.unlink()
    with pytest.raises(ValueError, match=r"holds shards but no dataset\.json"):
        generate(small_config(), 70, out, seed=7, shard_size=16)


def test_a_shard_of_another_run_is_redone(reference, tmp_path):
    out = tmp_path / "mixed"
    generate(small_config(), 40, out, seed=5, shard_size=16)
    generate(small_config(), 40, tmp_path / "other", seed=6, shard_size=16)
    (tmp_path / "other" / "shard-00001.h5").replace(out / "shard-00001.h5")
    # the reader refuses it rather than hand out another run's items under these indices
    with open_dataset(out) as mixed, open_dataset(reference[0]) as ref:
        with pytest.raises(ValueError, match=r"items 16:32 of root seed 6, not items 16:32 of"):
            mixed.params["frac_w"][20]
        assert mixed.params["frac_w"][3] == ref.params["frac_w"][3]
    assert generate(small_config(), 40, out, seed=5, shard_size=16, resume=True).computed == 16
    ref, mixed = arrays(open_dataset(reference[0])), arrays(open_dataset(out))
    for name in ref:
        np.testing.assert_array_equal(ref[name][:40], mixed[name], err_msg=name)


def test_failed_items_are_recorded_or_redrawn(tmp_path):
    config = small_config().to_dict()
    # tiny WO3 among large TiO2, fully segregated and compact: often unbuildable
    config["params"].update(radius_ti=10.0, segregation=1.0, fractal_dim=2.2, prefactor=1.8,
                            frac_w=0.5)  # fmt: skip
    config["params"]["radius_w"] = {"prior": "log-uniform", "low": 1.0, "high": 8.0}
    config = DatasetConfig.from_dict(config)
    skipped = generate(config, 24, tmp_path / "skip", seed=1, shard_size=24)
    assert skipped.failed > 0 and set(skipped.reasons) == {"GenerationError"}
    ds = open_dataset(tmp_path / "skip")
    i = int(np.flatnonzero(ds.failed[:])[0])
    assert ds.images[i].max() == 0
    with pytest.raises(ValueError, match="failed: GenerationError"):
        ds.aggregate(i)
    redrawn = generate(config, 24, tmp_path / "redraw", seed=1, shard_size=24, on_failure="redraw")
    assert redrawn.failed < skipped.failed


def test_fixed_rotation_images_the_sampled_frame(tmp_path):
    config = small_config().to_dict()
    config["imaging"]["rotation"] = "fixed"
    generate(DatasetConfig.from_dict(config), 6, tmp_path / "fixed", seed=5, shard_size=6)
    ds = open_dataset(tmp_path / "fixed")
    i = int(np.flatnonzero(~ds.failed[:])[0])
    np.testing.assert_array_equal(ds.rotations[i], np.eye(3))
    from heteroagg.stem import HaadfRenderer

    image = HaadfRenderer(pixel_size=1.0, shape=64, extrapolate=True)(
        ds.aggregate(i), derive_seed(derive_seed(5, i), 0), rotation=np.eye(3)
    )
    np.testing.assert_allclose(ds.images[i], np.clip(image, 0, 1), atol=0.51 / IMAGE_SCALE)


def test_items_the_renderer_refuses_are_recorded():
    from heteroagg import Aggregate
    from heteroagg.data.generation import _render_items
    from heteroagg.stem import HaadfLUT, HaadfRenderer

    t = np.linspace(0, 3.0, 16)  # LUTs that end at 3 nm
    mean = -np.expm1(-0.01 * t)
    samples = np.stack([mean, mean])
    luts = {m: HaadfLUT(m, t, mean, 0.1 * mean, samples, {}) for m in ("TiO2", "WO3")}
    renderer = HaadfRenderer(pixel_size=0.5, shape=32, luts=luts, probe=None)
    small, large = Aggregate([[0, 0, 0]], [1.0], [0]), Aggregate([[0, 0, 0]], [4.0], [1])
    out = _render_items(renderer, "random", [small, large, small], [1, 2, 3])
    assert [bool(r[3]) for r in out] == [False, True, False]
    assert "ValueError" in out[1][3] and "LUT" in out[1][3]
    np.testing.assert_array_equal(out[0][0], renderer(small, 1))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        generate(small_config(), 0, tmp_path / "x")
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 2\.0"):
        generate(small_config(), 2.0, tmp_path / "x")
    # a setting the renderer refuses is refused before the folder holds anything
    config = small_config().to_dict()
    config["imaging"]["pixel_size"] = 0.0005
    with pytest.raises(ValueError, match="pixel_size must be finite and at least"):
        generate(DatasetConfig.from_dict(config), 4, tmp_path / "tiny_pixels")
    assert not (tmp_path / "tiny_pixels").exists()
    summary = generate(small_config(), np.int64(2), tmp_path / "numpy_n", shard_size=np.int64(2))
    assert summary.items == 2
    with pytest.raises(ValueError, match="on_failure"):
        generate(small_config(), 4, tmp_path / "x", on_failure="retry")
    with pytest.raises(ValueError, match="no heteroagg dataset"):
        open_dataset(tmp_path)


def test_torch_dataset_adds_seeded_shot_noise(reference):
    torch = pytest.importorskip("torch")
    from heteroagg.data.torch_dataset import TorchDataset

    out, _ = reference
    ds = open_dataset(out)
    data = TorchDataset(out, seed=3)
    assert len(data) == int((~ds.failed[:]).sum())
    assert data.dataset._files == {}  # no handle for forked DataLoader workers to inherit
    image, target = data[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert target.shape == (len(small_config().params.varied),)
    assert 0 <= float(target.min()) and float(target.max()) <= 1
    i = int(data.items[0])
    np.testing.assert_allclose(target.numpy(), small_config().params.normalize(
        {n: ds.params[n][i] for n in ds.params}), rtol=1e-6)  # fmt: skip
    # pure in (seed, epoch, item); new noise each epoch; mean stays the clean image
    np.testing.assert_array_equal(image, TorchDataset(out, seed=3)[0][0])
    data.set_epoch(1)
    assert not torch.equal(image, data[0][0])
    clean = TorchDataset(out, noise=False)[0][0]
    np.testing.assert_array_equal(clean[0].numpy(), ds.images[i])
    stack = []
    for epoch in range(200):
        data.set_epoch(epoch)
        stack.append(data[0][0].numpy())
    stack = np.array(stack)
    bright = clean.numpy() > 0.5 * clean.numpy().max()
    assert abs(stack.mean(axis=0)[bright].mean() / clean.numpy()[bright].mean() - 1) < 0.01
    # a DataLoader with worker processes opens the shards in each worker
    loader = torch.utils.data.DataLoader(TorchDataset(out), batch_size=8, num_workers=2)
    images, targets = next(iter(loader))
    assert images.shape == (8, 1, 64, 64) and targets.shape[0] == 8
    # workers that persist across epochs draw each epoch's noise too
    data = TorchDataset(out, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1,
                                         persistent_workers=True)  # fmt: skip
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        got = next(iter(loader))[0]
        expected = torch.stack([data[k][0] for k in range(4)])
        assert torch.equal(got, expected), epoch
    with pytest.raises(ValueError, match="epoch"):
        data.set_epoch(-1)
    # copies keep the epoch and their own: pickled, deep-copied, or in spawned workers
    import copy
    import pickle

    data.epoch = 2
    for twin in (pickle.loads(pickle.dumps(data)), copy.deepcopy(data)):
        assert twin.epoch == 2 and torch.equal(twin[0][0], data[0][0])
        twin.set_epoch(3)
        assert data.epoch == 2
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1,
                                         persistent_workers=True,
                                         multiprocessing_context="spawn")  # fmt: skip
    for epoch in (0, 1):
        data.set_epoch(epoch)
        got = next(iter(loader))[0]
        assert torch.equal(got, torch.stack([data[k][0] for k in range(4)])), epoch


def test_baked_noise_is_the_load_time_noise(tmp_path):
    config = small_config().to_dict()
    config["imaging"]["bake_noise"] = True
    generate(DatasetConfig.from_dict(config), 6, tmp_path / "baked", seed=5, shard_size=6)
    generate(small_config(), 6, tmp_path / "clean", seed=5, shard_size=6)
    baked, clean = open_dataset(tmp_path / "baked"), open_dataset(tmp_path / "clean")
    from heteroagg.data.torch_dataset import draw_dose

    i = int(np.flatnonzero(~clean.failed[:])[0])
    dose = draw_dose(small_config().imaging.dose, derive_seed(derive_seed(5, i), 0))
    electrons = dose * 10.0**2  # 1 nm pixels
    matter = clean.images[i] > 0
    residual = (baked.images[i] - clean.images[i])[matter]
    # Poisson: the residual's variance is I / electrons (up to uint16 rounding)
    expected = clean.images[i][matter] / electrons
    assert residual.var() == pytest.approx(expected.mean(), rel=0.3)
    assert not np.array_equal(baked.images[i], clean.images[i])


def test_dask_local_cluster_gives_the_same_dataset(reference, tmp_path):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "dask"
    summary = generate(small_config(), 70, out, seed=5, shard_size=16, workers=2, scheduler="local")
    assert summary.computed == 70
    ref, dask = arrays(open_dataset(reference[0])), arrays(open_dataset(out))
    for name in ref:
        np.testing.assert_array_equal(ref[name], dask[name], err_msg=name)


def test_dask_local_workers_start_with_ctrl_c_ignored(tmp_path, monkeypatch):
    """They inherit the ignored SIGINT (no traceback from each on Ctrl-C); the parent
    keeps its own handler."""
    distributed = pytest.importorskip("dask.distributed")
    seen = []

    class Recording(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            seen.append(signal.getsignal(signal.SIGINT))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Recording)
    before = signal.getsignal(signal.SIGINT)
    generate(small_config(), 4, tmp_path / "dask", seed=5, shard_size=2, workers=1,
             scheduler="local")  # fmt: skip
    assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is before


def generating(out, n: int, shard_size: int, workers: int = 1) -> subprocess.Popen:
    """A process generating ``n`` items of the small config into ``out``, once it
    has written its first shard."""
    script = (
        "import sys, json; from heteroagg.data import DatasetConfig, generate; "
        "cfg = DatasetConfig.from_dict(json.loads(sys.argv[1])); "
        f"generate(cfg, {n}, sys.argv[2], seed=5, shard_size={shard_size}, workers={workers})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(small_config().to_dict()), str(out)]
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("shard-*.h5")) and time.monotonic() < deadline:
        time.sleep(0.005)
    return process


def test_kill_9_mid_run_then_resume(reference, tmp_path):
    """A real generating process killed with SIGKILL mid-shard; --resume completes it."""
    out = tmp_path / "killed"
    process = generating(out, 70, 16)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.name for p in out.glob("shard-*.h5"))
    assert finished and len(finished) < 5, finished  # killed part-way
    generate(small_config(), 70, out, seed=5, shard_size=16, resume=True)
    ref, resumed = arrays(open_dataset(reference[0])), arrays(open_dataset(out))
    for name in ref:
        np.testing.assert_array_equal(ref[name], resumed[name], err_msg=name)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, waiting to be reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses PID namespaces")
def test_workers_run_under_a_parent_of_pid_1(tmp_path):
    """As the entrypoint of a container, generate is process 1: its workers must not
    take that for a parent that died."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a PID namespace here")
    script = (
        "import os, sys\n"
        "from heteroagg.data import generate\n"
        "from test_generate import small_config\n"
        "assert os.getpid() == 1\n"
        f"print(generate(small_config(), 4, {str(tmp_path / 'ds')!r}, seed=1, shard_size=2, "
        "workers=2, progress=False).computed)\n"
    )
    result = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.split()[-1] == "4", result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")
def test_workers_end_with_a_killed_parent(tmp_path):
    """SIGKILL of a multi-process run leaves no idle workers behind."""
    process = generating(tmp_path / "orphans", 4000, 20, workers=2)
    tasks = Path(f"/proc/{process.pid}/task").iterdir()
    children = [int(c) for t in tasks for c in (t / "children").read_text().split()]
    assert len(children) >= 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 20
    while any(map(alive, children)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, children))


def test_ctrl_c_stops_a_multi_process_run_at_once(reference, tmp_path, monkeypatch):
    """Ctrl-C as the first shard of 35 comes in: the shards not started are cancelled,
    those the two workers hold are finished, and a resumed run completes the dataset."""
    import contextlib

    from heteroagg import _progress

    @contextlib.contextmanager
    def interrupted_bar(*args, **kwargs):
        def advance(n=1):
            raise KeyboardInterrupt

        yield advance

    monkeypatch.setattr(_progress, "progress_bar", interrupted_bar)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        generate(small_config(), 70, out, seed=5, shard_size=2, workers=2)
    finished = list(out.glob("shard-*.h5"))
    # the one done by then and at most the three submitted beyond it (two running, one
    # queued): the other 31 shards never start
    assert 1 <= len(finished) <= 4 and not list(out.glob("*.part")), finished
    monkeypatch.undo()
    summary = generate(small_config(), 70, out, seed=5, shard_size=2, resume=True)
    assert summary.computed == 70 - 2 * len(finished)
    ref, resumed = arrays(open_dataset(reference[0])), arrays(open_dataset(out))
    for name in ref:
        np.testing.assert_array_equal(ref[name], resumed[name], err_msg=name)


def open_shard_files() -> int:
    """Shard files this process holds open (0 where /proc is missing)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return 0
    return sum("shard-" in os.path.realpath(fd) for fd in fds.iterdir())


@pytest.mark.parametrize("fmt", ["emd", "hspy"])
def test_export_opens_in_the_fields_readers(reference, tmp_path, fmt):
    from heteroagg.data.export import export_dataset

    pytest.importorskip("emdfile" if fmt == "emd" else "rsciio.hspy")
    ds = open_dataset(reference[0])
    out = export_dataset(reference[0], tmp_path / f"sub.{fmt}", format=fmt, items=slice(10, 30))
    if fmt == "emd":
        emdfile = pytest.importorskip("emdfile")
        root = emdfile.read(str(out))
        images = root.tree("images").data
        params = root.tree("params").data
        fields = str(root.metadata["dataset"]["params_fields"]).split(",")
        np.testing.assert_array_equal(params[:, fields.index("frac_w")], ds.params["frac_w"][10:30])
    else:
        rsciio = pytest.importorskip("rsciio.hspy")
        signal = rsciio.file_reader(str(out))[0]
        images = signal["data"]
        assert signal["axes"][2]["units"] == "nm" and signal["axes"][2]["scale"] == 1.0
        item = signal["axes"][0]
        assert (item["name"], item["offset"], item["scale"]) == ("item", 10.0, 1.0)
        meta = signal["original_metadata"]["heteroagg"]
        np.testing.assert_array_equal(meta["params"]["frac_w"], ds.params["frac_w"][10:30])
    np.testing.assert_array_equal(images, ds.images[10:30])
    # what `heteroagg predict` reads of it: the images, not another table, at their pixel size
    back = read_images(out)
    np.testing.assert_array_equal(back.images, ds.images[10:30])
    assert back.pixel_size_nm == pytest.approx(1.0)
    # items in the order asked for, across shards; no shard file left open
    gc.collect()  # shard files of datasets other tests left to the collector
    before = open_shard_files()
    picks = export_dataset(reference[0], tmp_path / f"picks.{fmt}", format=fmt, items=[60, 5])
    assert open_shard_files() == before
    np.testing.assert_array_equal(read_images(picks).images, ds.images[[60, 5]])
    if fmt == "hspy":  # items not evenly spaced: the axis counts the selection
        uneven = export_dataset(reference[0], tmp_path / "uneven.hspy", format=fmt, items=[9, 5, 6])
        assert rsciio.file_reader(str(uneven))[0]["axes"][0]["name"] == "position in selection"
    with pytest.raises(ValueError, match="format"):
        export_dataset(reference[0], tmp_path / "x.tif", format="tif")
    other = "hspy" if fmt == "emd" else "emd"
    with pytest.raises(ValueError, match=rf"a {fmt} file must end in \."):
        export_dataset(reference[0], tmp_path / f"mixed.{other}", format=fmt)
    assert not (tmp_path / f"mixed.{other}").exists()
    # a shard of the dataset is not overwritten by its own export
    if fmt == "emd":
        shard = sorted(reference[0].glob("shard-*.h5"))[0]
        before = shard.read_bytes()
        with pytest.raises(ValueError, match="a file of the dataset itself"):
            export_dataset(reference[0], shard, format=fmt)
        assert shard.read_bytes() == before
    n = len(open_dataset(reference[0]))
    for items in (slice(0, n + 1), slice(n + 5, None)):  # beyond the dataset: not clipped
        with pytest.raises(ValueError, match=f"reach beyond the {n} items"):
            export_dataset(reference[0], tmp_path / f"beyond.{fmt}", format=fmt, items=items)


def test_export_keeps_a_root_seed_beyond_int64_and_the_old_file_on_failure(tmp_path, monkeypatch):
    pytest.importorskip("emdfile")
    from heteroagg.data.export import export_dataset

    config = small_config().to_dict()
    config["imaging"]["shape"] = [16, 16]
    config["params"]["n_particles"] = {"prior": "uniform", "low": 2, "high": 3}
    config["params"]["radius_ti"] = {"prior": "uniform", "low": 2, "high": 3}
    config["params"]["radius_w"] = {"prior": "uniform", "low": 2, "high": 3}
    small = DatasetConfig.from_dict(config)
    seed = 2**64 - 3
    generate(small, 2, tmp_path / "big", seed=seed, shard_size=2)
    out = export_dataset(tmp_path / "big", tmp_path / "big.emd", format="emd")
    import emdfile

    assert int(emdfile.read(str(out)).metadata["dataset"]["seed"]) == seed
    before = out.read_bytes()

    def full_disk(path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emdfile, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        export_dataset(tmp_path / "big", out, format="emd")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["big.emd"]
