import math

import numpy as np
import pytest

import heteroagg
from heteroagg import Aggregate, ModelParams
from reference import (
    brute_contacts,
    gyration_tensor,
    homo_clusters,
    n_components,
    radius_of_gyration,
)


def random_packing(seed: int, n: int, box: float, materials: str = "mixed") -> Aggregate:
    """Hand-built spheres scattered in a box: many contacts, chains and loners."""
    g = np.random.default_rng(seed)
    centers = g.uniform(0, box, size=(n, 3))
    radii = g.lognormal(np.log(1.0), 0.3, size=n)
    if materials == "mixed":
        mats = g.integers(0, 2, size=n)
    else:
        mats = np.full(n, 0 if materials == "ti" else 1)
    return Aggregate(centers, radii, mats)


def sorted_pairs(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def brute_force_descriptors(agg: Aggregate, tol: float) -> dict:
    pairs = brute_contacts(agg.centers, agg.radii, tol)
    n = len(agg)
    cn = np.bincount(pairs.ravel(), minlength=n) if len(pairs) else np.zeros(n, int)
    hetero = (
        pairs[agg.materials[pairs[:, 0]] != agg.materials[pairs[:, 1]]] if len(pairs) else pairs
    )
    hcn = np.bincount(hetero.ravel(), minlength=n) if len(hetero) else np.zeros(n, int)
    ti, w = agg.materials == 0, agg.materials == 1
    ev = np.linalg.eigvalsh(gyration_tensor(agg.centers, agg.radii))
    return {
        "contacts": pairs,
        "cn": cn,
        "hcn": hcn,
        "n_contacts": len(pairs),
        "n_hetero_contacts": len(hetero),
        "coordination_number": cn.mean(),
        "hetero_coordination_number": hcn.mean(),
        "hetero_coordination_ti": hcn[ti].mean() if ti.any() else math.nan,
        "hetero_coordination_w": hcn[w].mean() if w.any() else math.nan,
        "hetero_contact_fraction": len(hetero) / len(pairs) if len(pairs) else math.nan,
        "radius_of_gyration": radius_of_gyration(agg.centers, agg.radii),
        "gyration_eigenvalues": ev,
        "asphericity": ev[2] - 0.5 * (ev[0] + ev[1]),
        "acylindricity": ev[1] - ev[0],
        "relative_shape_anisotropy": 1.5 * np.sum((ev - ev.mean()) ** 2) / ev.sum() ** 2,
        "n_components": n_components(n, pairs),
        "n_homo_clusters_ti": homo_clusters(agg.materials, pairs, 0),
        "n_homo_clusters_w": homo_clusters(agg.materials, pairs, 1),
        "volume_fraction_wo3": np.sum(agg.radii[w] ** 3) / np.sum(agg.radii**3),
        "total_volume": np.sum(4.0 / 3.0 * np.pi * agg.radii**3),
    }


AGGREGATES = [
    ("sampled-mixed", heteroagg.sample_aggregate(ModelParams(n_particles=300, frac_w=0.4), 1)),
    (
        "sampled-sintered",
        heteroagg.sample_aggregate(
            ModelParams(n_particles=200, overlap=0.2, segregation=0.6, fractal_dim=2.3), 2
        ),
    ),
    ("packing-mixed", random_packing(3, 400, 18.0)),
    ("packing-ti-only", random_packing(4, 150, 12.0, "ti")),
    ("packing-w-only", random_packing(5, 150, 12.0, "w")),
    ("single", Aggregate([[0.0, 0.0, 0.0]], [2.0], [1])),
    # pair-search stress cases: one crowded cell, a long thin rod far from the
    # origin (single-precision screening on large coordinates), a sparse set
    # whose extent forces the grid to coarsen, and exact touching on a lattice
    ("crowded", random_packing(6, 300, 2.5)),
    (
        "far-rod",
        Aggregate(
            np.c_[1e6 + 1.999999 * np.arange(200), np.full(200, -3e5), np.zeros(200)],
            np.ones(200),
            np.arange(200) % 2,
        ),
    ),
    (
        "sparse-huge",
        Aggregate(
            np.r_[
                np.random.default_rng(7).uniform(0, 1e5, (60, 3)),
                [[0, 0, 0], [2, 0, 0], [1e5, 1e5, 2]],
            ],
            np.ones(63),
            np.arange(63) % 2,
        ),
    ),
    # radii over several orders: spheres 3, 9 and 27 times the rest, kept out of the grid
    (
        "giants",
        Aggregate(
            np.random.default_rng(8).uniform(0, 30, (900, 3)),
            np.where(
                np.arange(900) % 100 == 0,
                27.0,
                np.where(
                    np.arange(900) % 20 == 0, 9.0, np.where(np.arange(900) % 7 == 0, 3.0, 1.0)
                ),
            ),
            np.arange(900) % 2,
        ),
    ),
    (
        "lattice",
        Aggregate(
            2.0 * np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3),
            np.ones(216),
            np.arange(216) % 2,
        ),
    ),
]


@pytest.mark.parametrize(("name", "agg"), AGGREGATES, ids=[a[0] for a in AGGREGATES])
@pytest.mark.parametrize("tol", [1e-9, 1e-3, 0.05])
def test_descriptors_match_brute_force(name, agg, tol):
    d = heteroagg.descriptors(agg, contact_tol=tol)
    ref = brute_force_descriptors(agg, tol)
    assert np.all(d.contacts[:, 0] < d.contacts[:, 1])
    np.testing.assert_array_equal(sorted_pairs(d.contacts), ref["contacts"])
    np.testing.assert_array_equal(d.cn, ref["cn"])
    np.testing.assert_array_equal(d.hcn, ref["hcn"])
    for key, value in ref.items():
        if key in ("contacts", "cn", "hcn"):
            continue
        np.testing.assert_allclose(
            getattr(d, key), value, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=key
        )


@pytest.mark.parametrize("seed", range(6))
def test_random_sets_match_brute_force(seed):
    # random sizes, densities and radius spreads, well beyond hand-built cases
    g = np.random.default_rng(100 + seed)
    n = int(g.integers(2, 1500))
    agg = Aggregate(
        g.uniform(-1, 1, (n, 3)) * g.uniform(1, 40, 3) + g.uniform(-1e3, 1e3, 3),
        g.lognormal(0.0, g.uniform(0, 1.2), n),
        g.integers(0, 2, n),
    )
    tol = float(g.choice([0.0, 1e-3, 0.1]))
    d = heteroagg.descriptors(agg, contact_tol=tol)
    np.testing.assert_array_equal(
        sorted_pairs(d.contacts), brute_contacts(agg.centers, agg.radii, tol)
    )


@pytest.mark.parametrize("scale", [1e-30, 1e-25, 1e-15, 1e15, 1e20, 1e25])
def test_contacts_do_not_depend_on_the_unit_of_length(scale):
    # the single-precision screen would square 1e20 nm past float's range, and 1e-25 nm
    # below it, and then count far pairs as touching
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=30), 1)
    scaled = Aggregate(agg.centers * scale, agg.radii * scale, agg.materials)
    d = heteroagg.descriptors(scaled, contact_tol=1e-3)
    np.testing.assert_array_equal(
        sorted_pairs(d.contacts), brute_contacts(agg.centers, agg.radii, 1e-3)
    )
    assert d.radius_of_gyration == pytest.approx(scale * agg.descriptors().radius_of_gyration)


def test_contacts_exactly_at_the_reach():
    # dyadic radii make d_ij == r_i + r_j exact: such pairs touch at
    # contact_tol=0, and moving each sphere out by one ulp separates them
    r = np.array([0.5, 1.25, 2.0, 0.75])
    x = np.cumsum(np.r_[0.0, r[:-1] + r[1:]]) + 1e3
    touching = Aggregate(np.c_[x, np.zeros(4), np.zeros(4)], r, [0, 1, 0, 1])
    assert touching.descriptors(contact_tol=0.0).n_contacts == 3
    x_apart = x.copy()
    for k in range(1, 4):
        x_apart[k] = np.nextafter(x_apart[k - 1] + r[k - 1] + r[k], np.inf)
    apart = Aggregate(np.c_[x_apart, np.zeros(4), np.zeros(4)], r, [0, 1, 0, 1])
    assert len(brute_contacts(apart.centers, apart.radii, 0.0)) == 0
    assert apart.descriptors(contact_tol=0.0).n_contacts == 0
    # a chain of touching spheres of the largest radius, off an origin that puts
    # rounding at the neighbour search's cell boundaries: every contact is found
    n = 200
    chain = np.zeros((n, 3))
    chain[:, 0] = 0.1 + 2.0 * np.arange(n)
    rod = Aggregate(chain, np.ones(n), np.zeros(n, np.uint8))
    brute = len(brute_contacts(rod.centers, rod.radii, 0.0))
    assert brute > 0.9 * n  # most neighbours touch after the recentring's rounding
    d = rod.descriptors(contact_tol=0.0)
    assert d.n_contacts == brute and d.n_components == n - brute


def test_contact_tolerance_boundary():
    gap = 1 + 5e-4  # centre distance (r1 + r2)(1 + 5e-4)
    agg = Aggregate([[0, 0, 0], [3.0 * gap, 0, 0]], [1.0, 2.0], [0, 1])
    assert agg.descriptors(contact_tol=1e-3).n_contacts == 1
    assert agg.descriptors(contact_tol=1e-4).n_contacts == 0
    d = agg.descriptors(contact_tol=1e-3)
    assert d.hetero_coordination_number == 1.0 and d.hetero_contact_fraction == 1.0


def test_rod_shape_descriptors():
    # a straight chain of equal touching spheres is close to linear
    n = 30
    agg = Aggregate(np.c_[2.0 * np.arange(n), np.zeros(n), np.zeros(n)], np.ones(n), np.zeros(n))
    d = agg.descriptors()
    assert d.relative_shape_anisotropy > 0.99
    assert d.n_contacts == n - 1 and d.n_components == 1
    # R_g^2 of the chain: variance of the centres along x plus 3/5 r^2
    assert d.radius_of_gyration**2 == pytest.approx(np.var(2.0 * np.arange(n)) + 0.6)


def test_gyration_eigenvalues_of_any_axis_symmetric_aggregate_are_equal_pairs():
    # a dimer along any axis has two equal eigenvalues: acylindricity 0 to rounding, and
    # the three agree with numpy's solver (the closed form of the cubic kept 1e-8)
    rng = np.random.default_rng(4)
    for _ in range(50):
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        radius = rng.uniform(0.5, 8.0)
        agg = Aggregate(np.array([-axis, axis]) * radius + rng.uniform(-50, 50, 3),
                        [radius, radius], [0, 1])  # fmt: skip
        d = agg.descriptors()
        ev = np.asarray(d.gyration_eigenvalues)
        assert d.acylindricity <= 1e-13 * ev[2]
        x = agg.centers - agg.centers.mean(axis=0)
        tensor = x.T @ x / 2 + 0.2 * radius**2 * np.eye(3)  # a sphere: r²/5 per axis
        np.testing.assert_allclose(ev, np.linalg.eigvalsh(tensor), rtol=1e-12)


def test_hetero_counts_on_a_known_graph():
    # Ti - W - Ti - Ti in a line: 3 contacts, 2 hetero
    agg = Aggregate(np.c_[2.0 * np.arange(4), np.zeros(4), np.zeros(4)], np.ones(4), [0, 1, 0, 0])
    d = agg.descriptors()
    assert (d.n_contacts, d.n_hetero_contacts) == (3, 2)
    np.testing.assert_array_equal(d.hcn, [1, 2, 1, 0])
    assert d.hetero_coordination_ti == pytest.approx(2 / 3)
    assert d.hetero_coordination_w == 2.0
    assert (d.n_homo_clusters_ti, d.n_homo_clusters_w) == (2, 1)


def test_descriptor_input_errors():
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=5), 0)
    for bad in (-1e-3, math.nan, math.inf, "0.1", True, np.bool_(False)):
        with pytest.raises(ValueError, match="contact_tol"):
            heteroagg.descriptors(agg, contact_tol=bad)
    plain = heteroagg.descriptors(agg, contact_tol=1e-3)
    for numpy_scalar in (np.float32(1e-3), np.float64(1e-3)):
        assert heteroagg.descriptors(agg, contact_tol=numpy_scalar).n_contacts == plain.n_contacts
    assert heteroagg.descriptors(agg, contact_tol=np.int64(0)).n_contacts <= plain.n_contacts
    with pytest.raises(ValueError, match="Aggregate"):
        heteroagg.descriptors(agg.centers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("centers", "radii", "materials", "match"),
    [
        ([[0, 0, 0], [np.nan, 0, 0]], [1, 1], [0, 1], "centers must be finite"),
        ([[0, 0, 0], [0, -np.inf, 0]], [1, 1], [0, 1], "centers must be finite"),
        ([[0, 0, 0], [2, 0, 0]], [1, np.inf], [0, 1], "radii"),
        ([[0, 0, 0], [2, 0, 0]], [1, 0], [0, 1], "radii"),
        ([[0, 0, 0], [2, 0, 0]], [1, 1], [0, 2], "materials"),
        ([[0, 0, 0], [2e30, 0, 0]], [1, 1], [0, 1], "spans more than"),
        (np.zeros((0, 3)), [], [], "no particles"),
    ],
)
def test_core_rejects_bad_input(centers, radii, materials, match):
    # the compiled core checks its own input, whatever the caller validated
    from heteroagg import _core

    with pytest.raises(ValueError, match=match):
        _core.descriptors(
            np.asarray(centers, float),
            np.asarray(radii, float),
            np.asarray(materials, np.uint8),
            1e-3,
        )


def test_convex_hull_volume_fraction_of_two_touching_spheres():
    # hull = two hemispheres + a cylinder of length 2r: (4/3 + 2) pi r^3
    agg = Aggregate([[0, 0, 0], [2.0, 0, 0]], [1.0, 1.0], [0, 1])
    exact = (8.0 / 3.0) / (4.0 / 3.0 + 2.0)
    assert heteroagg.convex_hull_volume_fraction(agg, points_per_sphere=4000) == pytest.approx(
        exact, rel=2e-3
    )
    # the default number of points: one sphere fills its hull, a pair within 1 %
    assert heteroagg.convex_hull_volume_fraction(agg) == pytest.approx(exact, rel=0.01)
    one = Aggregate([[5.0, -3.0, 2.0]], [2.5], [0])
    assert heteroagg.convex_hull_volume_fraction(one) == pytest.approx(1.0, rel=1e-9)
    far = Aggregate([[0, 0, 0], [10.0, 0, 0]], [1.0, 1.0], [0, 0])  # a cylinder of length 10
    far_exact = (8.0 / 3.0) / (4.0 / 3.0 + 10.0)
    assert heteroagg.convex_hull_volume_fraction(far) == pytest.approx(far_exact, rel=0.01)
    with pytest.raises(ValueError, match="points_per_sphere"):
        heteroagg.convex_hull_volume_fraction(agg, points_per_sphere=3)


def test_descriptor_arrays_are_read_only():
    d = heteroagg.sample_aggregate(ModelParams(n_particles=10), 0).descriptors()
    with pytest.raises(ValueError):
        d.cn[0] = 5


def test_core_fields_match_the_descriptors_class():
    from dataclasses import fields

    from heteroagg import _core

    names = {f.name for f in fields(heteroagg.Descriptors)}
    assert set(_core.DESCRIPTOR_FIELDS) == names - {"contact_tol"}
    assert len(_core.DESCRIPTOR_FIELDS) == len(set(_core.DESCRIPTOR_FIELDS))


def lens_area(r1: float, r2: float, d: float) -> float:
    """Area shared by two discs of radii r1, r2 whose centres are d apart."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        return math.pi * min(r1, r2) ** 2
    a1 = r1**2 * math.acos((d * d + r1 * r1 - r2 * r2) / (2 * d * r1))
    a2 = r2**2 * math.acos((d * d + r2 * r2 - r1 * r1) / (2 * d * r2))
    kite = 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))
    return a1 + a2 - kite


@pytest.mark.parametrize("d", [0.5, 1.2, 2.0, 2.9, 3.5])
def test_projected_coverage_of_two_discs_is_the_lens_area(d):
    # spheres at different depths: only the projection along z matters
    agg = Aggregate(np.array([[0.0, 0.0, 0.0], [d, 0.0, 7.0]]), np.array([1.0, 2.0]), [0, 1])
    cover = heteroagg.projected_coverage(agg, points_per_disc=4096)
    shared = lens_area(1.0, 2.0, d)
    assert cover.fraction[0] == pytest.approx(shared / math.pi, abs=0.01)
    assert cover.fraction[1] == pytest.approx(shared / (4 * math.pi), abs=0.01)
    assert cover.centre_covered.tolist() == [d < 2.0, d < 1.0]


def test_projected_coverage_follows_the_rotation():
    # two spheres along x overlap fully when the beam runs along x
    agg = Aggregate(np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]), np.array([1.0, 1.5]), [0, 0])
    assert heteroagg.projected_coverage(agg).fraction.tolist() == [0.0, 0.0]
    beam_along_x = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    cover = heteroagg.projected_coverage(agg, beam_along_x)
    assert cover.fraction[0] == 1.0
    assert cover.fraction[1] == pytest.approx(1 / 1.5**2, abs=0.01)
    assert cover.centre_covered.all()


def test_projected_coverage_matches_dense_sampling_on_an_aggregate():
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=40, frac_w=0.3), seed=4)
    cover = heteroagg.projected_coverage(agg)
    xy, r = agg.centers[:, :2], agg.radii
    g = np.random.default_rng(0)
    for i in range(0, 40, 7):
        rho, phi = r[i] * np.sqrt(g.uniform(size=20000)), g.uniform(0, 2 * math.pi, 20000)
        p = xy[i] + np.stack([rho * np.cos(phi), rho * np.sin(phi)], axis=1)
        d2 = ((p[:, None] - xy[None]) ** 2).sum(-1)
        d2[:, i] = np.inf
        assert cover.fraction[i] == pytest.approx((d2 < r**2).any(1).mean(), abs=0.02)


def test_projected_coverage_refuses_bad_input():
    agg = Aggregate(np.zeros((1, 3)), np.ones(1), [0])
    assert heteroagg.projected_coverage(agg).fraction.tolist() == [0.0]
    with pytest.raises(ValueError, match="rotation"):
        heteroagg.projected_coverage(agg, np.eye(2))
    with pytest.raises(ValueError, match="points_per_disc"):
        heteroagg.projected_coverage(agg, points_per_disc=4)
    with pytest.raises(ValueError, match="points_per_disc"):
        heteroagg.projected_coverage(agg, points_per_disc=True)


def brute_projected_candidates(agg: Aggregate, rotation: np.ndarray, tol: float) -> set:
    xy = (agg.centers @ rotation.T)[:, :2]
    n = len(agg)
    return {
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if math.dist(xy[i], xy[j]) <= (agg.radii[i] + agg.radii[j]) * (1 + tol)
    }


def random_rotation(g: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(g.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projected_candidates_match_brute_force_and_hold_every_contact(seed):
    g = np.random.default_rng(seed)
    agg = heteroagg.sample_aggregate(ModelParams(n_particles=60, frac_w=0.4), seed=seed)
    contacts = {tuple(p) for p in heteroagg.descriptors(agg).contacts.tolist()}
    for tol in (0.0, 1e-3, 0.05):
        rotation = random_rotation(g)
        got = heteroagg.projected_contact_candidates(agg, rotation, contact_tol=tol)
        assert got.dtype == np.int64 and (got[:, 0] < got[:, 1]).all()
        assert np.array_equal(got, sorted_pairs(got))
        assert {tuple(p) for p in got.tolist()} == brute_projected_candidates(agg, rotation, tol)
    candidates = heteroagg.projected_contact_candidates(agg, random_rotation(g))
    assert contacts <= {tuple(p) for p in candidates.tolist()}
    # a projection hides depth: more pairs meet in projection than touch
    assert len(candidates) > len(contacts)


def test_pairs_touching_exactly_in_the_image_plane_are_candidates():
    """Two spheres in contact at contact_tol = 0, their axis across the beam: the
    projection keeps their distance, and rounding must not drop the pair."""
    g = np.random.default_rng(7)
    missed = 0
    for _ in range(500):
        rotation = random_rotation(g)
        angle = g.uniform(0, 2 * np.pi)
        axis = rotation.T @ np.array([np.cos(angle), np.sin(angle), 0.0])
        agg = Aggregate(np.array([[0.0, 0.0, 0.0], 2.0 * axis]), [1.0, 1.0], [0, 1])
        touching = len(heteroagg.descriptors(agg, contact_tol=0.0).contacts)
        missed += touching > len(heteroagg.projected_contact_candidates(agg, rotation, 0.0))
    assert missed == 0


def test_projected_candidates_follow_the_beam():
    # two spheres 5 nm apart along x: apart when the beam runs along z, one disc along x
    agg = Aggregate(np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]), np.array([1.0, 1.5]), [0, 1])
    assert heteroagg.projected_contact_candidates(agg).shape == (0, 2)
    beam_along_x = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert heteroagg.projected_contact_candidates(agg, beam_along_x).tolist() == [[0, 1]]


def test_projected_candidates_refuse_bad_input():
    agg = Aggregate(np.zeros((1, 3)), np.ones(1), [0])
    assert heteroagg.projected_contact_candidates(agg).shape == (0, 2)
    with pytest.raises(ValueError, match="rotation"):
        heteroagg.projected_contact_candidates(agg, np.eye(2))
    with pytest.raises(ValueError, match="rotation"):
        heteroagg.projected_contact_candidates(agg, np.full((3, 3), np.nan))
    # a matrix that is not a rotation would shrink or stretch distances: no guarantee then
    for bad in (0.5 * np.eye(3), np.diag([3.0, 3.0, 1.0]), np.diag([1.0, 1.0, -1.0])):
        with pytest.raises(ValueError, match="proper rotation"):
            heteroagg.projected_contact_candidates(agg, bad)
        with pytest.raises(ValueError, match="proper rotation"):
            heteroagg.projected_coverage(agg, bad)
    with pytest.raises(ValueError, match="contact_tol"):
        heteroagg.projected_contact_candidates(agg, contact_tol=-1.0)
    with pytest.raises(ValueError, match="Aggregate"):
        heteroagg.projected_contact_candidates(np.zeros((2, 3)))
