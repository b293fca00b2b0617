"""Structural descriptors of aggregates, computed in the C++ core."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroagg import _core
from heteroagg._numbers import is_real
from heteroagg._rotation import check_rotation
from heteroagg.aggregate import Aggregate

#: Scalar descriptors in a stable order (used for tables and datasets).
SCALAR_DESCRIPTORS: tuple[str, ...] = (
    "coordination_number",
    "hetero_coordination_number",
    "hetero_coordination_ti",
    "hetero_coordination_w",
    "hetero_contact_fraction",
    "n_contacts",
    "n_hetero_contacts",
    "radius_of_gyration",
    "asphericity",
    "acylindricity",
    "relative_shape_anisotropy",
    "n_homo_clusters_ti",
    "n_homo_clusters_w",
    "n_components",
    "volume_fraction_wo3",
)


@dataclass(frozen=True, eq=False)
class Descriptors:
    """Descriptors of one aggregate.

    Contacts are the pairs with ``d_ij <= (r_i + r_j)(1 + contact_tol)``.

    Attributes
    ----------
    coordination_number
        Mean number of contacts per particle.
    hetero_coordination_number
        Mean number of contacts with a particle of the other material, over
        all particles (``2 n_hetero_contacts / N``).
    hetero_coordination_ti, hetero_coordination_w
        The same averaged over the TiO2 / WO3 particles (NaN if none).
    hetero_contact_fraction
        ``n_hetero_contacts / n_contacts`` (NaN without contacts).
    n_contacts, n_hetero_contacts
        Numbers of contacts and of hetero contacts.
    radius_of_gyration
        Volume-weighted radius of gyration in nm, including the (3/5) r^2
        self term of each sphere.
    gyration_eigenvalues
        Ascending eigenvalues (nm^2) of the volume-weighted gyration tensor
        (self terms included); they sum to ``radius_of_gyration**2``.
    asphericity, acylindricity
        ``l3 - (l1 + l2)/2`` and ``l2 - l1`` of those eigenvalues, in nm^2.
    relative_shape_anisotropy
        kappa^2 in [0, 1]: 0 for a spherically symmetric, 1 for a linear shape.
    n_homo_clusters_ti, n_homo_clusters_w
        Connected components of each material's homo-contact graph (1 for a
        fully segregated material).
    n_components
        Connected components of the contact graph (1 for one aggregate).
    volume_fraction_wo3
        WO3 share of the particle volume.
    total_volume
        Sum of the sphere volumes in nm^3 (overlaps not removed).
    contacts
        Contact pairs ``(i, j)`` with ``i < j``, shape (M, 2), in an order
        that depends only on the input (use ``np.lexsort`` to sort them).
    cn, hcn
        Contacts and hetero contacts per particle, shape (N,).
    n_particles, n_ti, n_w
        Particle counts.
    contact_tol
        Tolerance used for the contacts.
    """

    coordination_number: float
    hetero_coordination_number: float
    hetero_coordination_ti: float
    hetero_coordination_w: float
    hetero_contact_fraction: float
    n_contacts: int
    n_hetero_contacts: int
    radius_of_gyration: float
    gyration_eigenvalues: tuple[float, float, float]
    asphericity: float
    acylindricity: float
    relative_shape_anisotropy: float
    n_homo_clusters_ti: int
    n_homo_clusters_w: int
    n_components: int
    volume_fraction_wo3: float
    total_volume: float
    contacts: np.ndarray
    cn: np.ndarray
    hcn: np.ndarray
    n_particles: int
    n_ti: int
    n_w: int
    contact_tol: float

    @classmethod
    def _from_core(cls, values: dict) -> Descriptors:
        """Adopt the core's result dict (read-only arrays) as the instance dict."""
        out = object.__new__(cls)
        object.__setattr__(out, "__dict__", values)
        return out

    def scalars(self) -> dict[str, float]:
        """The scalar descriptors of :data:`SCALAR_DESCRIPTORS` as a dict."""
        return {name: getattr(self, name) for name in SCALAR_DESCRIPTORS}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v:.4g}" for k, v in self.scalars().items())
        return f"Descriptors({body})"


def _check_contact_tol(contact_tol: float) -> None:
    if not (is_real(contact_tol) and math.isfinite(contact_tol) and contact_tol >= 0):
        raise ValueError(f"contact_tol must be a finite number >= 0, got {contact_tol!r}")


def _projected_centres(agg: Aggregate, rotation: np.ndarray | None) -> np.ndarray:
    """(N, 2) centres after ``R @ x`` (the identity for None), projected along z."""
    turn = np.eye(3) if rotation is None else check_rotation(rotation)
    return (agg.centers @ turn.T)[:, :2]


def descriptors(agg: Aggregate, contact_tol: float = 1e-3) -> Descriptors:
    """Compute the descriptors of an aggregate (C++, grid contact search).

    Parameters
    ----------
    agg
        The aggregate.
    contact_tol
        Relative tolerance of the contact criterion, >= 0.  0 is exact: spheres
        the sampler placed in contact touch only to rounding, and about half of
        them are then missed; any tolerance above 1e-12 finds them.

    Returns
    -------
    Descriptors
    """
    if not isinstance(agg, Aggregate):
        raise ValueError(f"descriptors() takes an Aggregate, got {type(agg).__name__}")
    _check_contact_tol(contact_tol)
    values = _core.descriptors(agg.centers, agg.radii, agg.materials, float(contact_tol))
    return Descriptors._from_core(values)


def convex_hull_volume_fraction(agg: Aggregate, points_per_sphere: int = 64) -> float:
    """Fraction of the aggregate's convex hull filled by its particles.

    The hull of the spheres is approximated by the hull of
    ``points_per_sphere`` quasi-uniform points (a Fibonacci lattice) about
    each sphere, on a sphere enlarged so that one sphere's polytope has the
    sphere's volume (points on the surface itself would span a hull about
    10 % too small at 64 points).  The fraction is then exact for one sphere
    and within 1 % for a touching pair or a pair far apart.  Overlaps between
    spheres are not subtracted.

    Parameters
    ----------
    agg
        The aggregate.
    points_per_sphere
        Surface points per sphere, >= 12.

    Returns
    -------
    float
        Sum of sphere volumes / hull volume.
    """
    from scipy.spatial import ConvexHull

    if points_per_sphere < 12:
        raise ValueError(f"points_per_sphere must be >= 12, got {points_per_sphere}")
    k = np.arange(points_per_sphere) + 0.5
    z = 1.0 - 2.0 * k / points_per_sphere
    phi = math.pi * (1.0 + math.sqrt(5.0)) * k
    rho = np.sqrt(1.0 - z * z)
    unit = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    unit *= (4.0 / 3.0 * math.pi / ConvexHull(unit).volume) ** (1.0 / 3.0)
    points = (agg.centers[:, None, :] + agg.radii[:, None, None] * unit[None]).reshape(-1, 3)
    hull_volume = ConvexHull(points).volume
    return float(np.sum(4.0 / 3.0 * math.pi * agg.radii**3) / hull_volume)


@dataclass(frozen=True)
class ProjectedCoverage:
    """How much of each particle's projected disc other particles cover.

    Attributes
    ----------
    fraction
        (N,) share of each particle's disc inside the disc of at least one
        other particle, in [0, 1].
    centre_covered
        (N,) whether each particle's projected centre lies inside another
        particle's disc.
    """

    fraction: np.ndarray
    centre_covered: np.ndarray


def projected_coverage(
    agg: Aggregate, rotation: np.ndarray | None = None, points_per_disc: int = 256
) -> ProjectedCoverage:
    """Overlap of the particles' discs in a projection along the beam.

    The aggregate is turned by ``rotation`` (``R @ x``, as the renderer turns
    it) and projected along z; each sphere becomes a disc of its radius.  In a
    transmission image overlapping particles add up rather than hide each
    other, so a covered particle is not lost, only harder to tell apart.

    Parameters
    ----------
    agg
        The aggregate.
    rotation
        (3, 3) rotation; the identity (projection along the aggregate's z)
        by default.  The renderer's rotation of a dataset item is stored with
        it (:attr:`heteroagg.data.SyntheticDataset.rotations`).
    points_per_disc
        Points of the sunflower lattice that samples each disc, >= 16; the
        fraction's error is of order ``1 / sqrt(points_per_disc)`` at worst
        and much smaller for smooth boundaries.

    Returns
    -------
    ProjectedCoverage

    Raises
    ------
    ValueError
        For a rotation that is not a finite 3 x 3 array, or too few points.
    """
    from scipy.spatial import cKDTree

    integer = isinstance(points_per_disc, (int, np.integer)) and not isinstance(
        points_per_disc, bool
    )
    if not integer or points_per_disc < 16:
        raise ValueError(f"points_per_disc must be an integer >= 16, got {points_per_disc!r}")
    count = int(points_per_disc)
    xy = _projected_centres(agg, rotation)
    radii = agg.radii
    n = radii.size
    k = np.arange(count) + 0.5
    angle = math.pi * (3.0 - math.sqrt(5.0)) * k
    lattice = np.sqrt(k / count)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    fraction = np.zeros(n)
    centre = np.zeros(n, dtype=bool)
    if n < 2:
        return ProjectedCoverage(fraction, centre)
    tree = cKDTree(xy)
    reach = radii + radii.max()
    for i in range(n):
        near = np.asarray(tree.query_ball_point(xy[i], reach[i]), dtype=int)
        distance = np.linalg.norm(xy[near] - xy[i], axis=1)
        keep = (near != i) & (distance < radii[near] + radii[i])
        near, distance = near[keep], distance[keep]
        if near.size == 0:
            continue
        centre[i] = bool(np.any(distance < radii[near]))
        points = xy[i] + radii[i] * lattice
        offsets = points[:, None, :] - xy[near][None, :, :]
        inside = np.einsum("pjk,pjk->pj", offsets, offsets) < radii[near] ** 2
        fraction[i] = inside.any(axis=1).mean()
    return ProjectedCoverage(fraction, centre)


def projected_contact_candidates(
    agg: Aggregate, rotation: np.ndarray | None = None, contact_tol: float = 1e-3
) -> np.ndarray:
    """The pairs that may touch, judged from a projection along the beam.

    A projection shortens every distance, so two spheres in contact project
    to discs that overlap or touch.  The pairs whose discs meet,
    ``|xy_i - xy_j| <= (r_i + r_j)(1 + contact_tol)``, are therefore a
    superset of the contacts of :func:`descriptors` with the same tolerance:
    what an observer who sees every particle in the image, but not its depth,
    can narrow the contacts down to.

    Parameters
    ----------
    agg
        The aggregate.
    rotation
        (3, 3) rotation applied as ``R @ x`` before projecting along z (the
        renderer's convention); the identity by default.
    contact_tol
        Relative tolerance of the contact criterion, >= 0.

    Returns
    -------
    numpy.ndarray
        (M, 2) int64 pairs ``(i, j)`` with ``i < j``, sorted
        lexicographically.

    Raises
    ------
    ValueError
        For a rotation that is not a finite 3 x 3 array or a bad tolerance.
    """
    from scipy.spatial import cKDTree

    if not isinstance(agg, Aggregate):
        raise ValueError(
            f"projected_contact_candidates() takes an Aggregate, got {type(agg).__name__}"
        )
    _check_contact_tol(contact_tol)
    xy = _projected_centres(agg, rotation)
    radii = agg.radii
    if radii.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    # a margin of rounding (the rotation, the norm) keeps pairs that touch exactly in 3D
    margin = (1.0 + contact_tol) * (1.0 + 1e-12)
    reach = 2.0 * float(radii.max()) * margin
    pairs = cKDTree(xy).query_pairs(reach, output_type="ndarray").astype(np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    distance = np.linalg.norm(xy[i] - xy[j], axis=1)
    pairs = pairs[distance <= (radii[i] + radii[j]) * margin]
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
