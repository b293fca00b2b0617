"""The CUDA LUT renderer against its CPU twin (skipped without a CUDA device).

Tolerances: the geometry (beam paths) is computed in the same IEEE order on
both sides, but the GPU's exp/log/expm1 may round the last bit differently
from the host's, so noise-free images agree to 2e-6 relative to their
largest value.  Shot noise draws the same per-pixel streams; a count can
differ where that last bit decides a Poisson comparison, so at least 99.9 %
of the pixels must agree exactly and the rest within one electron.
"""

import warnings

import numpy as np
import pytest

import heteroagg
from heteroagg import Aggregate
from heteroagg.stem import FieldOfViewWarning, HaadfRenderer

CUDA = heteroagg.cuda_status()[0]
needs_cuda = pytest.mark.skipif(not CUDA, reason=heteroagg.cuda_status()[1])
pytestmark = [pytest.mark.cuda, needs_cuda]


def default_prior_aggregates(count: int, seed: int) -> list[Aggregate]:
    """Aggregates from the default dataset prior (failed draws skipped)."""
    from heteroagg.aggregate import sample_aggregate
    from heteroagg.model import GenerationError

    space = heteroagg.default_config().params
    out = []
    i = 0
    while len(out) < count:
        try:
            out.append(sample_aggregate(space.sample(seed, i), seed + i))
        except GenerationError:
            pass
        i += 1
    return out


def both(aggs, seeds, **settings):
    settings = {"pixel_size": 1.0, "shape": (256, 256), "extrapolate": True, **settings}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        cpu = HaadfRenderer(**settings, device="cpu").batch(aggs, seeds)
        gpu = HaadfRenderer(**settings, device="cuda").batch(aggs, seeds)
    return cpu, gpu


def assert_images_close(cpu, gpu, rtol=2e-6):
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    scale = float(np.abs(cpu).max())
    assert scale > 0
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize(
    "settings",
    [
        {"probe": None, "orientation_spread": False},
        {},  # the dataset's settings: probe blur and orientation spread
        {"shape": (200, 136), "pixel_size": 0.5},
        {"support": 5.0, "scan_jitter": 0.7, "gain": 2.0, "black_level": 0.01, "read_noise": 0.002},
    ],
)
def test_noise_free_images_match_the_cpu(settings):
    aggs = default_prior_aggregates(24, seed=11)
    seeds = list(range(100, 124))
    (cpu, rot_cpu, clip_cpu), (gpu, rot_gpu, clip_gpu) = both(aggs, seeds, **settings)
    np.testing.assert_array_equal(rot_gpu, rot_cpu)
    np.testing.assert_array_equal(clip_gpu, clip_cpu)
    assert_images_close(cpu, gpu)


def test_shot_noise_draws_the_cpu_streams():
    aggs = default_prior_aggregates(8, seed=12)
    dose = 2e3
    (cpu, _, _), (gpu, _, _) = both(aggs, list(range(8)), dose=dose)
    electrons = dose * 100.0
    counts_cpu, counts_gpu = np.rint(cpu * electrons), np.rint(gpu * electrons)
    assert np.mean(counts_cpu == counts_gpu) >= 0.999
    assert np.abs(counts_cpu - counts_gpu).max() <= 1
    assert counts_cpu.max() > 100  # the aggregates are really there


def test_output_into_device_arrays():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    aggs = default_prior_aggregates(6, seed=13)
    renderer = HaadfRenderer(pixel_size=1.0, shape=(64, 96), extrapolate=True, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        host, rotations, _ = renderer.batch(aggs, range(6))
        out = torch.full((6, 64, 96), -1.0, device="cuda")
        same, rotations2, _ = renderer.batch(aggs, range(6), out=out)
        assert same is out
        np.testing.assert_array_equal(out.cpu().numpy(), host)
        np.testing.assert_array_equal(rotations2, rotations)
        with pytest.raises(ValueError, match="shape"):
            renderer.batch(aggs, range(6), out=torch.empty((5, 64, 96), device="cuda"))
        with pytest.raises(ValueError, match="float32"):
            renderer.batch(aggs, range(6), out=torch.empty((6, 64, 96), device="cuda").double())
        with pytest.raises(ValueError, match="contiguous"):
            renderer.batch(
                aggs, range(6), out=torch.empty((6, 96, 64), device="cuda").transpose(1, 2)
            )
        # host memory: a C-contiguous numpy out is filled in place, a strided one through a copy
        filled = np.full((6, 64, 96), np.nan, np.float32)
        same, _, _ = renderer.batch(aggs, range(6), out=filled)
        assert same is filled
        np.testing.assert_array_equal(filled, host)
        wide = np.zeros((6, 64, 192), np.float32)
        renderer.batch(aggs, range(6), out=wide[:, :, ::2])
        np.testing.assert_array_equal(wide[:, :, ::2], host)
        assert not wide[:, :, 1::2].any()
        with pytest.raises(ValueError, match="shape"):
            renderer.batch(aggs, range(6), out=np.empty((6, 96, 64), np.float32))
        with pytest.raises(ValueError, match="read-only"):
            frozen = np.empty((6, 64, 96), np.float32)
            frozen.flags.writeable = False
            renderer.batch(aggs, range(6), out=frozen)
    try:
        import cupy
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        array = cupy.empty((6, 64, 96), dtype=cupy.float32)
        renderer.batch(aggs, range(6), out=array)
    np.testing.assert_array_equal(cupy.asnumpy(array), host)
    np.testing.assert_array_equal(torch.from_dlpack(array).cpu().numpy(), host)


def test_single_images_rotations_and_centres():
    agg = default_prior_aggregates(1, seed=14)[0]
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    kw = {"pixel_size": 0.8, "shape": 128, "extrapolate": True}
    cpu, gpu = HaadfRenderer(**kw, device="cpu"), HaadfRenderer(**kw, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        for args in ({}, {"rotation": rotation}, {"rotation": rotation, "center": (3.0, -2.0)}):
            assert_images_close(cpu(agg, 5, **args), gpu(agg, 5, **args))
        labels = gpu(agg, 5, labels=True)  # label maps come from the CPU renderer
    np.testing.assert_array_equal(labels.image, cpu(agg, 5, labels=True).image)


def test_deep_stacks_fall_back_to_the_cpu_exactly():
    # 80 separate spheres on the beam axis: more covered intervals than a
    # GPU pixel holds, so the image is drawn by the CPU renderer.
    z = np.arange(80) * 1.5
    deep = Aggregate(
        np.column_stack([np.zeros(80), np.zeros(80), z]), np.full(80, 0.6), np.zeros(80)
    )
    shallow = default_prior_aggregates(1, seed=15)[0]
    kw = {"pixel_size": 0.3, "shape": 32, "extrapolate": True, "probe": None}
    rotations = np.stack([np.eye(3)] * 2)
    cpu, gpu = HaadfRenderer(**kw, device="cpu"), HaadfRenderer(**kw, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        expected = [cpu(a, 3, rotation=r) for a, r in zip((deep, shallow), rotations, strict=True)]
        images, _, _ = gpu._cuda_batch(
            [gpu._arrays(deep), gpu._arrays(shallow)], [3, 3], 0, 0, rotations
        )
    np.testing.assert_array_equal(images[0], expected[0])
    assert_images_close(expected[1], images[1])
    assert expected[0].max() > 0
    # into device memory the host-drawn image is uploaded in its place
    torch = pytest.importorskip("torch")
    out = torch.full((2, 32, 32), float("nan"), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FieldOfViewWarning)
        arrays = [gpu._arrays(deep), gpu._arrays(shallow)]
        gpu._cuda_batch(arrays, [3, 3], 0, out.data_ptr(), rotations)
    on_device = out.cpu().numpy()
    np.testing.assert_array_equal(on_device[0], expected[0])
    assert_images_close(expected[1], on_device[1])


def test_errors_match_the_cpu():
    agg = default_prior_aggregates(1, seed=16)[0]
    thick = Aggregate([[0.0, 0.0, 0.0]], [200.0], [1])
    messages = []
    for device in ("cpu", "cuda"):
        renderer = HaadfRenderer(pixel_size=1.0, shape=64, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FieldOfViewWarning)
            with pytest.raises(ValueError, match="exceeds its LUT") as error:
                renderer.batch([agg, thick], [1, 2])
        messages.append(str(error.value))
        with pytest.raises(ValueError, match="seeds"):
            renderer.batch([agg], [1, 2])
    assert messages[0] == messages[1]


def test_generated_datasets_agree_with_the_cpu(tmp_path):
    """Stored uint16 images of both renderers differ by rounding at most."""
    from heteroagg.data import SyntheticDataset, generate

    for device in ("cpu", "cuda"):
        generate(heteroagg.default_config(), 40, tmp_path / device, seed=3, device=device,
                 workers=2, shard_size=16)  # fmt: skip
    a, b = SyntheticDataset(tmp_path / "cpu"), SyntheticDataset(tmp_path / "cuda")
    compared = 0
    for i in range(40):
        if not a.failed[i]:
            diff = np.abs(a.stored_image(i).astype(int) - b.stored_image(i).astype(int))
            assert diff.max() <= 1
            compared += 1
    assert compared > 30
