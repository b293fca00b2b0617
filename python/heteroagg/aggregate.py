"""Aggregates of spheres and the sampler of the stochastic 3D model."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heteroagg import _core
from heteroagg._atomic import replaced_on_success
from heteroagg._numbers import is_count
from heteroagg._progress import progress_bar
from heteroagg.materials import MATERIAL_NAMES, WO3
from heteroagg.model import GenerationError, ModelParams
from heteroagg.rng import check_uint64, derive_seed

if TYPE_CHECKING:
    import ase

    from heteroagg.descriptors import Descriptors

#: Version of the on-disk layout written by :meth:`Aggregate.save`.
FILE_FORMAT_VERSION = 1

#: File suffixes :meth:`Aggregate.save` and :meth:`Aggregate.load` understand.
AGGREGATE_SUFFIXES: tuple[str, ...] = (".npz", ".json")


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _table_of_centres(values: Any) -> np.ndarray:
    """Stored centres as an (N, 3) array; only an empty list is reshaped, so that a
    table of another shape meets the constructor's (N, 3) check instead of being
    read in the wrong order."""
    centres = np.asarray(values, dtype=np.float64)
    return centres.reshape(0, 3) if centres.size == 0 else centres


@dataclass(frozen=True, eq=False)
class Aggregate:
    """An aggregate of spheres: positions, radii and materials (nm).

    Parameters
    ----------
    centers
        Sphere centres, shape (N, 3), in nm.
    radii
        Sphere radii, shape (N,), in nm, finite and > 0.
    materials
        Material code per sphere, shape (N,): 0 = TiO2, 1 = WO3.
    params
        The :class:`ModelParams` it was sampled from, or None for an
        aggregate built by hand (for example from particles marked in an image).

    Raises
    ------
    ValueError
        If shapes disagree, values are not finite, radii are not positive or
        material codes are not 0/1.

    Notes
    -----
    The arrays are stored as read-only float64/uint8 copies, so an aggregate
    never changes under its descriptors.
    """

    centers: np.ndarray
    radii: np.ndarray
    materials: np.ndarray
    params: ModelParams | None = None

    def __post_init__(self) -> None:
        for name in ("centers", "radii"):  # complex numbers would lose their imaginary parts
            kind = np.asarray(getattr(self, name)).dtype.kind
            if kind not in "iuf":
                raise ValueError(f"{name} must hold real numbers (nm), got dtype kind {kind!r}")
        centers = np.array(self.centers, dtype=np.float64, order="C", copy=True)
        radii = np.array(self.radii, dtype=np.float64, order="C", copy=True)
        materials_in = np.asarray(self.materials)
        if centers.ndim != 2 or centers.shape[1] != 3:
            raise ValueError(f"centers must have shape (N, 3), got {centers.shape}")
        n = centers.shape[0]
        if n < 1:
            raise ValueError("an aggregate needs at least one particle")
        if radii.shape != (n,):
            raise ValueError(f"radii must have shape ({n},), got {radii.shape}")
        if materials_in.shape != (n,):
            raise ValueError(f"materials must have shape ({n},), got {materials_in.shape}")
        if not np.all(np.isfinite(centers)):
            raise ValueError("centers must be finite")
        if not np.all(np.isfinite(radii)) or np.any(radii <= 0):
            raise ValueError("radii must be finite and > 0 nm")
        if materials_in.dtype.kind not in "iubf" or np.any(
            (materials_in != 0) & (materials_in != 1)
        ):
            raise ValueError("materials must hold the codes 0 (TiO2) or 1 (WO3)")
        if self.params is not None and not isinstance(self.params, ModelParams):
            raise ValueError("params must be a ModelParams or None")
        object.__setattr__(self, "centers", _frozen(centers))
        object.__setattr__(self, "radii", _frozen(radii))
        object.__setattr__(self, "materials", _frozen(materials_in.astype(np.uint8)))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled and deep-copied aggregates keep their arrays read-only."""
        for name, value in state.items():
            frozen = _frozen(np.array(value)) if isinstance(value, np.ndarray) else value
            object.__setattr__(self, name, frozen)

    @classmethod
    def _from_core(cls, arrays: tuple, params: ModelParams | None) -> Aggregate:
        """Wrap freshly made core arrays without copying or re-validating."""
        agg = object.__new__(cls)
        centers, radii, materials = arrays
        object.__setattr__(agg, "centers", _frozen(centers))
        object.__setattr__(agg, "radii", _frozen(radii))
        object.__setattr__(agg, "materials", _frozen(materials))
        object.__setattr__(agg, "params", params)
        return agg

    def __len__(self) -> int:
        return int(self.radii.shape[0])

    def __repr__(self) -> str:
        try:
            rg = f", radius_of_gyration={self.descriptors().radius_of_gyration:.3g} nm"
        except ValueError:  # an aggregate too wide for the descriptors
            rg = ""
        return f"Aggregate(n_particles={len(self)}, n_wo3={self.n_wo3}{rg})"

    @property
    def n_particles(self) -> int:
        """Number of spheres."""
        return len(self)

    @property
    def n_wo3(self) -> int:
        """Number of WO3 spheres."""
        return int(np.count_nonzero(self.materials == WO3))

    @property
    def n_tio2(self) -> int:
        """Number of TiO2 spheres."""
        return len(self) - self.n_wo3

    def descriptors(self, contact_tol: float = 1e-3) -> Descriptors:
        """Structural descriptors; see :func:`heteroagg.descriptors`."""
        from heteroagg.descriptors import descriptors

        return descriptors(self, contact_tol=contact_tol)

    def to_atoms(self, seed: int = 0, **options: Any) -> ase.Atoms:
        """The atoms of the aggregate's crystals (Å); see :func:`heteroagg.to_atoms`.

        Needs the ``ase`` extra.
        """
        from heteroagg.atoms import to_atoms

        return to_atoms(self, seed, **options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the aggregate."""
        return {
            "format": "heteroagg.Aggregate",
            "format_version": FILE_FORMAT_VERSION,
            "units": "nm",
            "material_names": list(MATERIAL_NAMES),
            "centers": self.centers.tolist(),
            "radii": self.radii.tolist(),
            "materials": self.materials.tolist(),
            "params": None if self.params is None else self.params.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"not a heteroagg aggregate: a {type(data).__name__}, not a table")
        version = data.get("format_version")
        if data.get("format") != "heteroagg.Aggregate" or version != FILE_FORMAT_VERSION:
            raise ValueError(
                f"not a heteroagg aggregate of format version {FILE_FORMAT_VERSION} "
                f"(format={data.get('format')!r}, version={version!r})"
            )
        params = data.get("params")
        return cls(
            centers=_table_of_centres(data["centers"]),
            radii=data["radii"],
            materials=data["materials"],  # checked as given, not after a cast
            params=None if params is None else ModelParams.from_dict(params),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the aggregate to ``.npz`` (binary, exact) or ``.json`` (text).

        The file is written to a temporary name first and then renamed, so an
        interrupted save never leaves a truncated file behind.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in AGGREGATE_SUFFIXES:
            raise ValueError(f"aggregate files end in .npz or .json, got {path.name!r}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise IsADirectoryError(f"cannot save {path}: it is a folder")
        with replaced_on_success(path) as tmp:
            if suffix == ".json":
                tmp.write_text(json.dumps(self.to_dict()))
            else:
                meta = {
                    k: v
                    for k, v in self.to_dict().items()
                    if k not in ("centers", "radii", "materials")
                }
                with open(tmp, "wb") as fh:
                    np.savez_compressed(
                        fh,
                        centers=self.centers,
                        radii=self.radii,
                        materials=self.materials,
                        meta=np.array(json.dumps(meta)),
                    )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Aggregate:
        """Read an aggregate written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If the file is not a readable heteroagg aggregate.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no aggregate file at {path}")
        try:
            if path.suffix.lower() == ".json":
                return cls.from_dict(json.loads(path.read_text()))
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if not isinstance(meta, dict):
                    raise ValueError("its meta entry is not a table")
                meta.update(
                    centers=data["centers"], radii=data["radii"], materials=data["materials"]
                )
            return cls.from_dict(meta)
        except (
            OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile, zlib.error
        ) as err:  # fmt: skip
            raise ValueError(f"{path} is not a readable heteroagg aggregate: {err}") from err


@dataclass(frozen=True)
class SamplerOptions:
    """Bounds of the sampler's search; the defaults suit every buildable set.

    Parameters
    ----------
    pair_tries
        Candidate contact pairs tried per target distance between the two
        clusters of a merge.
    placement_tries
        Random placements tried per candidate pair.
    gamma_relaxations
        Steps by which a merge widens its target distance when no placement
        is free of overlaps.
    max_rg_error
        Accepted relative deviation of the final radius of gyration from the
        fractal law.
    aggregate_tries
        Complete restarts (on fresh random sub-streams of the same seed)
        before :class:`GenerationError` is raised.
    """

    pair_tries: int = 48
    placement_tries: int = 12
    gamma_relaxations: int = 24
    max_rg_error: float = 0.05
    aggregate_tries: int = 4

    def __post_init__(self) -> None:
        for name in ("pair_tries", "placement_tries", "gamma_relaxations", "aggregate_tries"):
            value = getattr(self, name)
            if not is_count(value) or not 1 <= value <= 100_000:
                raise ValueError(f"{name} must be an integer in [1, 100000], got {value!r}")
            object.__setattr__(self, name, int(value))
        if not 0.0 < self.max_rg_error <= 1.0:
            raise ValueError(f"max_rg_error must be in (0, 1], got {self.max_rg_error!r}")

    def _to_core(self) -> Any:
        core = _core.SamplerOptions()
        for name, value in asdict(self).items():
            setattr(core, name, value)
        return core


_DEFAULT_OPTIONS = SamplerOptions()

# Items per call into the core: long batches report progress and honour Ctrl-C
# between chunks, while each chunk still keeps every thread busy.
_CHUNK = 2048


def sample_aggregate(
    params: ModelParams, seed: int, *, options: SamplerOptions | None = None
) -> Aggregate:
    """Sample one aggregate of the model.

    Parameters
    ----------
    params
        Model parameters theta.
    seed
        Integer in [0, 2**64).  The aggregate is a pure function of
        ``(params, seed, options)``: the same on any machine and thread count.
        Use :func:`heteroagg.derive_seed` to derive item seeds from one root.
    options
        Bounds of the search (rarely needed).

    Returns
    -------
    Aggregate
        Centred on its volume-weighted centre, in a uniformly random
        orientation, with ``params`` attached.

    Raises
    ------
    GenerationError
        If the parameters cannot be built within the bounded search.
    """
    if not isinstance(params, ModelParams):
        raise ValueError(f"params must be a ModelParams, got {type(params).__name__}")
    opts = (options or _DEFAULT_OPTIONS)._to_core()
    arrays = _core.sample_aggregate(params._to_core(), check_uint64("seed", seed), opts)
    return Aggregate._from_core(arrays, params)


def sample_aggregates(
    params: ModelParams | Sequence[ModelParams],
    seeds: int | Sequence[int],
    *,
    n: int | None = None,
    threads: int | None = None,
    on_error: str = "raise",
    options: SamplerOptions | None = None,
    progress: bool = False,
) -> list[Any]:
    """Sample many aggregates on C++ threads, with the GIL released.

    Items are sampled in chunks, so a long batch shows progress (with
    ``progress=True``) and stops at the next chunk on Ctrl-C.

    Parameters
    ----------
    params
        One ``ModelParams`` for every item, or one per item.
    seeds
        One seed per item, or a single root seed: item ``i`` then gets
        ``derive_seed(root, i)``.
    n
        Number of items, needed only when both ``params`` and ``seeds`` are
        single values.
    threads
        Worker threads; None uses every core.  The result never depends on it.
    on_error
        ``"raise"`` (default) raises for the first failed item; ``"none"``
        returns None in its place; ``"return"`` returns the error itself in
        its place (a :class:`GenerationError`, or a ``ValueError`` for
        parameters the sampler refuses), with the sampler's message.
    options
        Bounds of the search (rarely needed).
    progress
        Show a progress bar on stderr.

    Returns
    -------
    list of Aggregate
        With None, or the error, in place of failed items (``on_error``).
    """
    if on_error not in ("raise", "none", "return"):
        raise ValueError(f"on_error must be 'raise', 'none' or 'return', got {on_error!r}")
    params_list = [params] if isinstance(params, ModelParams) else list(params)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        root = check_uint64("seed", seeds)
        count = len(params_list) if n is None and not isinstance(params, ModelParams) else n
        if count is None:
            raise ValueError("give n (the number of items) when params and seeds are single values")
        seed_list = [derive_seed(root, i) for i in range(count)]
    elif isinstance(seeds, (str, bytes, bool, np.bool_)) or not hasattr(seeds, "__iter__"):
        raise ValueError(
            f"seeds must be an integer in [0, 2**64) or a sequence of them, got {seeds!r}"
        )
    else:
        seed_list = [check_uint64("seed", s) for s in seeds]
    if isinstance(params, ModelParams):
        params_list = params_list * len(seed_list)
    if n is not None and len(seed_list) != n:
        raise ValueError(f"n={n} does not match the {len(seed_list)} seeds given")
    if len(params_list) != len(seed_list):
        raise ValueError(f"{len(params_list)} params for {len(seed_list)} seeds")
    for k, p in enumerate(params_list):
        if not isinstance(p, ModelParams):
            raise ValueError(f"params[{k}] must be a ModelParams, got {type(p).__name__}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    opts = (options or _DEFAULT_OPTIONS)._to_core()
    core_params = [p._to_core() for p in params_list]
    out: list[Any] = []
    with progress_bar(progress, len(seed_list), "sampling aggregates") as advance:
        for start in range(0, len(seed_list), _CHUNK):
            stop = min(start + _CHUNK, len(seed_list))
            results = _core.sample_aggregates(
                core_params[start:stop],
                seed_list[start:stop],
                min(int(threads or 0), stop - start),
                opts,  # no more threads than items
            )
            for k, item in enumerate(results, start=start):
                if isinstance(item[0], str):
                    message, invalid = item
                    error = ValueError if invalid else GenerationError
                    if on_error == "raise":
                        raise error(f"item {k} (seed {seed_list[k]}): {message}")
                    out.append(error(message) if on_error == "return" else None)
                else:
                    out.append(Aggregate._from_core(item, params_list[k]))
            advance(stop - start)
    return out
