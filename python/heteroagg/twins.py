"""Digital twins: aggregates sampled at an estimated θ, and their descriptors.

Used by the error analysis (:func:`heteroagg.learn.evaluate`) and by
``heteroagg predict --twins``.  Needs neither torch nor onnxruntime.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from heteroagg.model import GenerationError, ModelParams
from heteroagg.rng import derive_seed

#: Descriptors reported for twins (attributes of :class:`~heteroagg.Descriptors`).
TWIN_DESCRIPTORS = (
    "coordination_number",
    "hetero_coordination_number",
    "hetero_coordination_ti",
    "hetero_coordination_w",
    "hetero_contact_fraction",
    "radius_of_gyration",
)

#: Short labels of those descriptors for tables and plots.
DESCRIPTOR_LABELS = {
    "coordination_number": "CN",
    "hetero_coordination_number": "HCN",
    "hetero_coordination_ti": "HCN TiO2",
    "hetero_coordination_w": "HCN WO3",
    "hetero_contact_fraction": "hetero-contact fraction",
    "radius_of_gyration": "R_g (nm)",
}


def twin_params(space: Any, normalized: np.ndarray) -> ModelParams:
    """A valid :class:`ModelParams` from a normalised θ (clipped to the prior)."""
    values = space.denormalize(np.clip(normalized, 0.0, 1.0))
    fields = {n: float(v) for n, v in values.items()}
    fields["n_particles"] = round(fields["n_particles"])
    return ModelParams(**fields)


def draw_within_prior(
    normalized: np.ndarray, normalized_std: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """θ drawn from the predictive distribution, which lives on the prior's range [0, 1].

    A network trained on targets in [0, 1] reports the mean θ̂ and standard
    deviation of a posterior on [0, 1]: near a bound θ̂ is pulled inward and
    the deviation shrunk.  The draws come from the normal restricted to [0, 1] that has
    that mean and deviation (:func:`~heteroagg.truncated_normal.normal_behind`; near
    the widest deviation such a normal can have, from the one about θ̂ itself),
    by its inverse CDF at ``uniforms``; restricting a normal about θ̂ instead would
    pull them inward once more, and clipping a normal draw would pile a
    finite share onto the bounds.  Columns with a deviation of 0 take θ̂
    clipped to the range.

    Parameters
    ----------
    normalized, normalized_std
        θ̂ and its standard deviation in the normalised space, (P,).
    uniforms
        Uniform draws in (0, 1), (..., P): one θ per row.

    Returns
    -------
    numpy.ndarray
        θ, shaped like ``uniforms``, within [0, 1].
    """
    from scipy.stats import truncnorm

    from heteroagg.truncated_normal import normal_behind

    loc, scale = normal_behind(normalized, normalized_std)
    mu = np.broadcast_to(loc, np.shape(uniforms))
    sd = np.broadcast_to(scale, np.shape(uniforms))
    spread = sd > 0
    scale = np.where(spread, sd, 1.0)
    drawn = truncnorm.ppf(uniforms, -mu / scale, (1.0 - mu) / scale, loc=mu, scale=scale)
    centre = np.broadcast_to(np.asarray(normalized, dtype=float), np.shape(uniforms))
    return np.clip(np.where(spread, drawn, centre), 0.0, 1.0)


def descriptor_row(aggregate: Any) -> list[float]:
    """The :data:`TWIN_DESCRIPTORS` of one aggregate."""
    d = aggregate.descriptors()
    return [getattr(d, name) for name in TWIN_DESCRIPTORS]


def spread_text(rows: np.ndarray, j: int) -> str:
    """Mean ± spread of column ``j`` of twin descriptor rows (NaNs ignored), or a dash."""
    column = rows[:, j] if len(rows) else np.array([])
    finite = column[np.isfinite(column)]
    return f"{finite.mean():.3g} ± {finite.std():.2g}" if len(finite) else "—"


def descriptor_samples(params: ModelParams, seed: int, k: int) -> tuple[np.ndarray, int]:
    """(k', D) descriptors of up to ``k`` aggregates sampled at ``params``; failures skipped."""
    from heteroagg.aggregate import sample_aggregate

    rows, failed = [], 0
    for j in range(k):
        try:
            agg = sample_aggregate(params, derive_seed(seed, j))
        except GenerationError:
            failed += 1
            continue
        rows.append(descriptor_row(agg))
    return np.array(rows, dtype=float).reshape(-1, len(TWIN_DESCRIPTORS)), failed


def check_spread(value: float, name: str = "spread") -> None:
    """Raise ``ValueError`` unless ``value`` is a usable factor on the heads' spread."""
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")


def head_weights(
    rows: np.ndarray, heads: Mapping[str, tuple[float, float]], spread: float = 1.0
) -> np.ndarray:
    """Weights of candidate twins by how well they agree with directly estimated descriptors.

    Parameters
    ----------
    rows
        (M, D) :data:`TWIN_DESCRIPTORS` of M candidate twins.
    heads
        Descriptor name -> (estimate, standard deviation), as a network's
        direct descriptor heads give them for the image.
    spread
        Factor on every standard deviation: above 1 the heads are trusted
        less and the weights are flatter.  The heads read the same image
        as θ̂, so taking their spread at face value counts some of its
        evidence twice and narrows the twins' range (docs/results.md
        measures by how much).

    Returns
    -------
    numpy.ndarray
        (M,) weights summing to one, each proportional to the product over
        ``heads`` of the Gaussian density of the candidate's descriptor
        about the estimate.  A candidate whose descriptor is not finite
        gets weight zero; if none is finite, every candidate weighs alike.
    """
    rows = np.asarray(rows, dtype=float)
    check_spread(spread)
    if rows.ndim != 2 or rows.shape[1] != len(TWIN_DESCRIPTORS):
        raise ValueError(f"rows must be (M, {len(TWIN_DESCRIPTORS)}), got {rows.shape}")
    log_w = np.zeros(len(rows))
    for name, (estimate, std) in heads.items():
        if name not in TWIN_DESCRIPTORS:
            raise ValueError(f"{name!r} is not one of {TWIN_DESCRIPTORS}")
        if not (np.isfinite(std) and std > 0):
            raise ValueError(
                f"the standard deviation of {name!r} must be finite and > 0, got {std}"
            )
        if not np.isfinite(estimate):
            raise ValueError(f"the estimate of {name!r} must be finite, got {estimate}")
        x = rows[:, TWIN_DESCRIPTORS.index(name)]
        with np.errstate(invalid="ignore"):
            log_w += np.where(
                np.isfinite(x), -0.5 * ((x - estimate) / (std * spread)) ** 2, -np.inf
            )
    if not np.isfinite(log_w).any():
        return np.full(len(rows), 1.0 / len(rows)) if len(rows) else log_w
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def resample(weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` draws from ``weights`` by systematic resampling.

    Each index appears ``floor(k w)`` or ``ceil(k w)`` times, so the draws
    follow the weights with the least added noise.
    """
    weights = np.asarray(weights, dtype=float)
    if k < 1 or not len(weights) or not np.isclose(weights.sum(), 1.0) or (weights < 0).any():
        raise ValueError("resample needs k >= 1 and non-negative weights that sum to one")
    u = (np.random.default_rng(seed).random() + np.arange(k)) / k
    return np.minimum(np.searchsorted(np.cumsum(weights), u), len(weights) - 1)


def sample_twins(
    space: Any,
    normalized: np.ndarray,
    normalized_std: np.ndarray | None,
    k: int,
    seed: int,
    heads: Mapping[str, tuple[float, float]] | None = None,
    candidates: int = 0,
    spread: float = 1.0,
) -> tuple[list[Any], int]:
    """Up to ``k`` twins of one image from its estimate θ̂.

    Parameters
    ----------
    space
        The :class:`~heteroagg.ParameterSpace` the estimate lives in.
    normalized, normalized_std
        θ̂ in the normalised space and its predictive standard deviation
        (None: every twin at θ̂; else each twin's θ is drawn from the normal
        restricted to the prior's range with that mean and deviation,
        :func:`draw_within_prior`).
    k
        Twins wanted.
    seed
        Seed of the draws; twin j is a pure function of (seed, j).
    heads, candidates
        Conditioning on directly estimated descriptors (name -> (estimate,
        standard deviation)): ``candidates`` twins are drawn as above and
        ``k`` of them resampled by :func:`head_weights`, so that the twins'
        descriptors agree with what the image shows.  A twin can then be
        drawn more than once.  Without ``heads`` (or with ``candidates`` 0)
        the ``k`` twins are drawn directly.
    spread
        Factor on the heads' standard deviations (:func:`head_weights`).

    Returns
    -------
    (aggregates, failed)
        The twins that could be built, and how many of the ``k`` could not.
        With ``heads`` and ``candidates``, the ``k`` twins are resampled from
        the candidates that could be built, so none fails unless all did.
    """
    if heads and candidates:
        if candidates < k:
            raise ValueError(f"candidates ({candidates}) must be >= k ({k})")
        pool, _ = sample_twins(space, normalized, normalized_std, candidates, seed)
        if not pool:
            return pool, k
        rows = np.array([descriptor_row(t) for t in pool], dtype=float)
        chosen = resample(head_weights(rows, heads, spread), k, derive_seed(seed, 2 * candidates))
        return [pool[int(j)] for j in chosen], 0
    from heteroagg.aggregate import sample_aggregate

    centre = np.asarray(normalized, dtype=float)
    thetas = np.broadcast_to(centre, (k, centre.size))
    if normalized_std is not None:  # twin j's uniforms from (seed, j); one draw for all
        u = [np.random.default_rng(derive_seed(seed, 2 * j + 1)).random(centre.size)
             for j in range(k)]  # fmt: skip
        thetas = draw_within_prior(centre, normalized_std, np.reshape(u, (k, centre.size)))
    twins, failed = [], 0
    for j, theta in enumerate(thetas):
        try:
            twins.append(sample_aggregate(twin_params(space, theta), derive_seed(seed, 2 * j)))
        except GenerationError:
            failed += 1
    return twins, failed


def write_twins(
    path: str | Any,
    records: list[dict[str, Any]],
    pooled_images: int = 0,
    sample: Mapping[str, tuple[float, float | None, float | None]] | None = None,
) -> None:
    """Write digital twins and their descriptor distributions to HDF5.

    Each record becomes a group ``image-<k>`` holding the estimate (attrs
    ``source``, ``index`` and one attr per parameter), ``descriptors``
    (K, D) with the names in its ``names`` attr, their ``mean`` and ``std``
    attrs, and one subgroup ``twin-<j>`` per twin with ``centers`` (nm),
    ``radii`` (nm) and ``materials`` (0 TiO2, 1 WO3) and the twin's θ as attrs.

    Parameters
    ----------
    path
        The file to write (replaced).
    records
        Dicts with ``source`` (str), ``index`` (int), ``params`` (name ->
        value), ``twins`` (aggregates) and ``failed`` (int).
    pooled_images
        Over how many images the shared parameters of ``params`` were pooled
        (:func:`heteroagg.pooling.pool_sample`), stored as the file's
        ``pooled_images`` attr; 0: each image's own estimate.
    sample
        The pooled shared parameters with their one-sigma band
        (:meth:`~heteroagg.pooling.PooledSample.sample_values`), stored as the
        attrs of a group ``sample``: ``<name>``, ``<name>_low``, ``<name>_high``.
    """
    import h5py

    from heteroagg._atomic import replaced_on_success

    with replaced_on_success(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["descriptor_names"] = list(TWIN_DESCRIPTORS)
        f.attrs["pooled_images"] = int(pooled_images)
        if sample is not None:
            pooled = f.create_group("sample")
            for name, (value, low, high) in sample.items():
                pooled.attrs[name] = value
                if low is not None:
                    pooled.attrs[f"{name}_low"], pooled.attrs[f"{name}_high"] = low, high
        for k, record in enumerate(records):
            group = f.create_group(f"image-{k}")
            group.attrs["source"] = str(record["source"])
            group.attrs["index"] = int(record["index"])
            group.attrs["failed_twins"] = int(record["failed"])
            for name, value in record["params"].items():
                group.attrs[name] = float(value)
            rows = np.array([descriptor_row(t) for t in record["twins"]], dtype=float)
            rows = rows.reshape(-1, len(TWIN_DESCRIPTORS))
            table = group.create_dataset("descriptors", data=rows)
            table.attrs["names"] = list(TWIN_DESCRIPTORS)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                table.attrs["mean"] = np.nanmean(rows, axis=0)  # NaN per column without twins
                table.attrs["std"] = np.nanstd(rows, axis=0)
            for j, twin in enumerate(record["twins"]):
                t = group.create_group(f"twin-{j}")
                t.create_dataset("centers", data=twin.centers)
                t.create_dataset("radii", data=twin.radii)
                t.create_dataset("materials", data=twin.materials)
                for name, value in twin.params.as_dict().items():
                    t.attrs[name] = value
