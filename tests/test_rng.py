import numpy as np
import pytest

import heteroagg
from heteroagg import rng
from reference import philox4x32_10, stream_uniforms, stream_words

# Known-answer vectors of Philox4x32-10 from the Random123 distribution.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(counter, key, expected):
    assert rng.philox4x32_10(counter, key) == expected
    assert philox4x32_10(counter, key) == expected  # the reference itself


@pytest.mark.parametrize(("seed", "stream"), [(0, 0), (12345, 7), (2**64 - 1, 2**63 + 5)])
def test_uniform_stream_matches_independent_implementation(seed, stream):
    np.testing.assert_array_equal(rng.uniform(seed, stream, 37), stream_uniforms(seed, stream, 37))


def test_derive_seed_is_philox_of_root_and_index():
    root, index = 987654321012345, 42
    w = philox4x32_10((index & 0xFFFFFFFF, index >> 32, 0x5EED, 0), (root & 0xFFFFFFFF, root >> 32))
    assert heteroagg.derive_seed(root, index) == (w[1] << 32) | w[0]
    seeds = {heteroagg.derive_seed(root, i) for i in range(1000)}
    assert len(seeds) == 1000


def test_uniform_is_uniform():
    from scipy import stats

    values = rng.uniform(3, 0, 200_000)
    assert values.min() > 0.0 and values.max() < 1.0
    assert stats.kstest(values, "uniform").pvalue > 1e-4


def test_stream_words_differ_between_streams():
    assert stream_words(1, 0, 8) != stream_words(1, 1, 8)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, True])
def test_bad_seed_raises(bad):
    with pytest.raises(ValueError, match="seed"):
        rng.uniform(bad, 0, 3)
    with pytest.raises(ValueError, match="root_seed"):
        heteroagg.derive_seed(bad, 0)


def test_device_selection():
    assert heteroagg.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device"):
        heteroagg.resolve_device("gpu")
    available, _ = heteroagg.cuda_status()
    if available:
        assert heteroagg.resolve_device("auto") == "cuda"
    else:
        assert heteroagg.resolve_device("auto") == "cpu"
        with pytest.raises(RuntimeError, match="cuda"):
            heteroagg.resolve_device("cuda")
        with pytest.raises(RuntimeError, match="cuda"):
            rng.uniform(1, 2, 3, device="cuda")
    np.testing.assert_array_equal(rng.uniform(1, 2, 10, device="auto"), stream_uniforms(1, 2, 10))


@pytest.mark.cuda
def test_cuda_uniform_matches_cpu_bit_for_bit():
    if not heteroagg.cuda_status()[0]:
        pytest.skip("no CUDA device")
    for seed, stream, n in [(0, 0, 1), (5, 3, 1001), (2**64 - 1, 2**40, 100_003)]:
        np.testing.assert_array_equal(
            rng.uniform(seed, stream, n, device="cuda"), rng.uniform(seed, stream, n, device="cpu")
        )
