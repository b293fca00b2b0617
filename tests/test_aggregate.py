import json

import numpy as np
import pytest

import heteroagg
from damaged_files import flip_member_bytes
from heteroagg import Aggregate, ModelParams


@pytest.fixture
def agg():
    return heteroagg.sample_aggregate(ModelParams(n_particles=25, segregation=0.5), 4)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_round_trip_is_exact(tmp_path, agg, suffix):
    path = agg.save(tmp_path / f"agg{suffix}")
    back = Aggregate.load(path)
    np.testing.assert_array_equal(back.centers, agg.centers)
    np.testing.assert_array_equal(back.radii, agg.radii)
    np.testing.assert_array_equal(back.materials, agg.materials)
    assert back.params == agg.params
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_hand_built_aggregate_round_trips_without_params(tmp_path):
    agg = Aggregate([[0, 0, 0], [1.5, 0, 0]], [1.0, 0.5], [0, 1])
    back = Aggregate.load(agg.save(tmp_path / "hand.json"))
    assert back.params is None and len(back) == 2


def test_bad_files(tmp_path, agg):
    with pytest.raises(ValueError, match=r"\.npz or \.json"):
        agg.save(tmp_path / "agg.txt")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(ValueError, match="format"):
        Aggregate.load(tmp_path / "other.json")


def test_to_atoms_delegates_to_the_crystal_fill():
    pytest.importorskip("ase")
    agg = Aggregate([[0, 0, 0], [1.5, 0, 0]], [1.0, 0.5], [0, 1])
    atoms = agg.to_atoms(seed=3, vacuum=2.0)
    same = heteroagg.to_atoms(agg, 3, vacuum=2.0)
    np.testing.assert_array_equal(atoms.positions, same.positions)
    assert set(atoms.get_chemical_symbols()) == {"Ti", "W", "O"}
    np.testing.assert_allclose(atoms.cell.lengths(), [34.0, 24.0, 24.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"centers": np.zeros((3, 2)), "radii": np.ones(3), "materials": np.zeros(3)}, "centers"),
        (
            {"centers": np.zeros((0, 3)), "radii": np.ones(0), "materials": np.zeros(0)},
            "at least one",
        ),
        ({"centers": np.zeros((3, 3)), "radii": np.ones(2), "materials": np.zeros(3)}, "radii"),
        ({"centers": np.zeros((3, 3)), "radii": [1, -1, 1], "materials": np.zeros(3)}, "radii"),
        ({"centers": np.zeros((3, 3)), "radii": np.ones(3), "materials": [0, 2, 1]}, "materials"),
        ({"centers": np.zeros((3, 3)), "radii": np.ones(3), "materials": [0.5, 0, 1]}, "materials"),
        ({"centers": [[np.nan, 0, 0]], "radii": [1], "materials": [0]}, "finite"),
        ({"centers": np.zeros((3, 3)), "radii": np.ones(3), "materials": np.zeros(4)}, "materials"),
    ],
)
def test_aggregate_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Aggregate(**kwargs)


def test_aggregate_is_immutable_and_copies_input():
    centers = np.zeros((2, 3))
    centers[1, 0] = 2.0
    agg = Aggregate(centers, [1.0, 1.0], [0, 1])
    centers[1, 0] = 50.0
    assert agg.centers[1, 0] == 2.0
    with pytest.raises(ValueError):
        agg.centers[0, 0] = 1.0
    assert "n_particles=2" in repr(agg)


def test_load_reports_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Aggregate.load(tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"broken\.npz"):
        Aggregate.load(tmp_path / "broken.npz")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        Aggregate.load(tmp_path / "broken.json")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz"):
        Aggregate.load(tmp_path / "other.npz")


def test_files_with_bad_content_are_refused_not_changed(tmp_path):
    agg = Aggregate([[0, 0, 0], [1.5, 0, 0], [3, 0, 0]], [1.0, 0.5, 1.0], [0, 1, 1])
    record = agg.to_dict()
    for materials in ([0.9, 257, 1], [0.5, 1.9, 1], [-1, 0, 1]):  # a cast would have made codes
        with pytest.raises(ValueError, match="materials must hold the codes"):
            Aggregate.from_dict({**record, "materials": materials})
    # centres stored as (3, N) or flat are refused, not read in another order
    four = Aggregate(
        [[0, 0, 0], [2, 0, 0], [4, 0, 0], [6, 0, 0]], [1.0] * 4, [0, 1, 0, 1]
    ).to_dict()
    for centers in (np.transpose(four["centers"]).tolist(), np.ravel(four["centers"]).tolist()):
        with pytest.raises(ValueError, match=r"centers must have shape \(N, 3\)"):
            Aggregate.from_dict({**four, "centers": centers})
    meta = {k: v for k, v in record.items() if k not in ("centers", "radii", "materials")}
    np.savez(tmp_path / "codes.npz", centers=agg.centers, radii=agg.radii,
             materials=np.array([0.9, 257, 1]), meta=np.array(json.dumps(meta)))  # fmt: skip
    with pytest.raises(ValueError, match=r"codes\.npz is not a readable"):
        Aggregate.load(tmp_path / "codes.npz")
    contents = {"empty.npz": b"", "list.json": "[]", "text.json": '"x"'}
    for name, content in contents.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        with pytest.raises(ValueError, match="is not a readable heteroagg aggregate"):
            Aggregate.load(path)
    np.savez(tmp_path / "listmeta.npz", centers=agg.centers, radii=agg.radii,
             materials=agg.materials, meta=np.array("[]"))  # fmt: skip
    with pytest.raises(ValueError, match="is not a readable heteroagg aggregate"):
        Aggregate.load(tmp_path / "listmeta.npz")
    flipped = heteroagg.sample_aggregate(ModelParams(n_particles=200), 3).save(tmp_path / "f.npz")
    flip_member_bytes(flipped, "centers")
    with pytest.raises(ValueError, match="is not a readable heteroagg aggregate"):
        Aggregate.load(flipped)


def test_failed_saves_name_the_path_and_leave_nothing_behind(tmp_path):
    agg = Aggregate([[0, 0, 0], [1.5, 0, 0]], [1.0, 0.5], [0, 1])
    (tmp_path / "taken.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"taken\.npz: it is a folder"):
        agg.save(tmp_path / "taken.npz")
    with pytest.raises(FileNotFoundError, match=r"the folder .*nowhere does not exist"):
        agg.save(tmp_path / "nowhere" / "x.npz")
    assert [p.name for p in tmp_path.rglob("*")] == ["taken.npz"]


def test_copies_and_unpickled_aggregates_stay_read_only(agg):
    import copy
    import pickle

    for twin in (copy.deepcopy(agg), pickle.loads(pickle.dumps(agg))):
        np.testing.assert_array_equal(twin.centers, agg.centers)
        assert twin.params == agg.params
        for array in (twin.centers, twin.radii, twin.materials):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 0


def test_complex_or_text_coordinates_are_refused_and_a_wide_aggregate_still_prints():
    with pytest.raises(ValueError, match="centers must hold real numbers"):
        Aggregate(np.array([[0, 0, 0], [2, 0, 0]]) + 5j, [1.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="radii must hold real numbers"):
        Aggregate([[0, 0, 0]], np.array(["1.0"]), [0])
    wide = Aggregate([[0, 0, 0], [1e300, 0, 0]], [1.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="spans more than"):
        wide.descriptors()
    assert repr(wide) == "Aggregate(n_particles=2, n_wo3=1)"


def test_numpy_integers_are_counts_wherever_python_ones_are():
    from heteroagg.aggregate import SamplerOptions
    from heteroagg.data.space import Prior

    options = SamplerOptions(pair_tries=np.int64(48))
    assert options.pair_tries == 48 and type(options.pair_tries) is int
    prior = Prior("uniform", np.int64(10), np.float32(50.0))
    assert (prior.low, prior.high) == (10, 50.0) and type(prior.low) is int
    assert type(prior.high) is float
    from fractions import Fraction

    exotic = Prior("uniform", Fraction(1, 2), np.longdouble(2.5))  # stored as plain floats
    assert (exotic.low, exotic.high) == (0.5, 2.5) and type(exotic.low) is type(
        exotic.high
    ) is float
    from heteroagg.data.space import ParameterSpace

    fixed = ParameterSpace({**ModelParams().as_dict(), "n_particles": np.int64(50)})
    assert fixed.priors["n_particles"] == Prior("fixed", 50, 50)
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=12), 1)
    from heteroagg.stem import HaadfRenderer

    renderer = HaadfRenderer(shape=(64, 64), pixel_size=1.0, extrapolate=True, device="cpu")
    images = renderer.batch([agg], seeds=[1], threads=np.int64(1))[0]
    np.testing.assert_array_equal(images[0], renderer(agg, seed=1))
