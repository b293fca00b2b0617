"""The parameter space of a dataset: a prior per field of :class:`ModelParams`.

Each field is ``uniform`` or ``log-uniform`` over ``[low, high]`` or
``fixed``.  ``n_particles`` is drawn over the integers ``low .. high``
(both included); its log-uniform prior weighs each integer by
``log((n + 1) / n)``.  Draw ``i`` under a root seed is a pure function of
``(root_seed, i)``, and :meth:`ParameterSpace.normalize` maps the varied
fields to [0, 1] for networks (log-uniform fields on a log scale).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroagg import _core
from heteroagg._numbers import is_count, is_real
from heteroagg.model import ModelParams
from heteroagg.rng import check_uint64, derive_seed

#: Stream of an item's seed that draws its parameters ("params" in ASCII).
PARAMS_STREAM = 0x706172616D73

PRIOR_KINDS = ("uniform", "log-uniform", "fixed")


@dataclass(frozen=True)
class Prior:
    """The prior of one field: ``kind`` over ``[low, high]`` (equal when fixed)."""

    kind: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in PRIOR_KINDS:
            raise ValueError(f"prior must be one of {PRIOR_KINDS}, got {self.kind!r}")
        for name in ("low", "high"):
            bound = getattr(self, name)
            if not is_real(bound):
                raise ValueError(f"prior bounds must be numbers, got {bound!r}")
            if not math.isfinite(bound):
                raise ValueError(f"prior bounds must be finite, got {bound!r}")
            # kept as a Python int or float, which JSON writes and numpy takes as a number
            object.__setattr__(self, name, int(bound) if is_count(bound) else float(bound))
        if self.kind == "fixed" and self.low != self.high:
            raise ValueError("a fixed prior has one value (low == high)")
        if self.kind != "fixed" and not self.low < self.high:
            raise ValueError(f"need low < high, got [{self.low}, {self.high}]")
        if self.kind == "log-uniform" and self.low <= 0:
            raise ValueError(f"a log-uniform prior needs low > 0, got {self.low}")
        if self.kind == "log-uniform" and not math.isfinite(self.high / self.low):
            raise ValueError(
                f"a log-uniform prior from {self.low:g} to {self.high:g} spans more than a "
                "float can hold; raise low"
            )

    def to_config(self) -> Any:
        """The TOML value :meth:`from_config` reads back."""
        if self.kind == "fixed":
            return self.low
        return {"prior": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_config(cls, name: str, spec: Any) -> Prior:
        """A prior from a TOML value: a number (fixed) or ``{prior, low, high}``."""
        if is_real(spec):
            try:
                return cls("fixed", spec, spec)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        if not isinstance(spec, Mapping):
            raise ValueError(f"{name}: give a number or {{prior, low, high}}, got {spec!r}")
        kind = spec.get("prior", "uniform")
        allowed = {"prior", "value"} if kind == "fixed" else {"prior", "low", "high"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(
                f"{name}: keys {sorted(unknown)} do not apply to a {kind!r} prior "
                f"(it takes {sorted(allowed)})"
            )
        try:
            if kind == "fixed":
                return cls("fixed", spec["value"], spec["value"])
            return cls(kind, spec["low"], spec["high"])
        except KeyError as err:
            raise ValueError(f"{name}: missing {err.args[0]!r}") from None
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None


class ParameterSpace:
    """Priors over the fields of :class:`ModelParams`.

    Parameters
    ----------
    priors
        Field name -> :class:`Prior`, or a TOML-style spec (a number for a
        fixed value, or ``{"prior": "log-uniform", "low": 2, "high": 10}``).
        Every field of :class:`ModelParams` must be given.

    Raises
    ------
    ValueError
        For unknown or missing fields, bad priors, integer fields with
        non-integer bounds, or bounds outside the model's valid range.
    """

    def __init__(self, priors: Mapping[str, Prior | Any]) -> None:
        if not isinstance(priors, Mapping):
            raise ValueError(f"the priors must be a table of field -> prior, got {priors!r}")
        names = ModelParams.field_names()
        unknown = set(priors) - set(names)
        missing = [n for n in names if n not in priors]
        if unknown:
            raise ValueError(f"unknown ModelParams fields: {sorted(unknown)}")
        if missing:
            raise ValueError(f"no prior for {missing}")
        self.priors: dict[str, Prior] = {
            n: p if isinstance(p, Prior) else Prior.from_config(n, priors[n])
            for n, p in ((n, priors[n]) for n in names)
        }
        n = self.priors["n_particles"]
        if not (float(n.low).is_integer() and float(n.high).is_integer()):
            raise ValueError(f"n_particles bounds must be integers, got [{n.low}, {n.high}]")
        valid = ModelParams().as_dict()  # each field's bounds are checked on their own
        for name, prior in self.priors.items():
            for bound in (prior.low, prior.high):
                try:
                    ModelParams(**{**valid, name: bound})
                except ValueError as err:
                    message = f"the prior of {name} leaves the model's range: {err}"
                    raise ValueError(message) from None

    def __repr__(self) -> str:
        parts = [
            f"{n}={p.low:g}" if p.kind == "fixed" else f"{n}~{p.kind}[{p.low:g}, {p.high:g}]"
            for n, p in self.priors.items()
        ]
        return f"ParameterSpace({', '.join(parts)})"

    @property
    def varied(self) -> tuple[str, ...]:
        """Names of the fields that are not fixed: the network's targets."""
        return tuple(n for n, p in self.priors.items() if p.kind != "fixed")

    def _from_unit(self, name: str, u: np.ndarray) -> np.ndarray:
        """Map uniform draws (or normalised values) in [0, 1] to field values."""
        p = self.priors[name]
        if p.kind == "fixed":
            return np.full_like(u, p.low, dtype=float)
        if name == "n_particles":
            lo, hi = int(p.low), int(p.high)
            if p.kind == "uniform":
                return np.minimum(lo + np.floor(u * (hi - lo + 1)), hi)
            return np.minimum(np.floor(lo * ((hi + 1) / lo) ** u), hi)
        if p.kind == "uniform":
            return p.low + u * (p.high - p.low)
        return p.low * (p.high / p.low) ** u

    def sample(self, root_seed: int, index: int) -> ModelParams:
        """Draw ``index`` under ``root_seed``: a pure function of the two."""
        return self.sample_many(root_seed, [index])[0]

    def sample_many(self, root_seed: int, indices: Sequence[int]) -> list[ModelParams]:
        """Draws for several indices (each as :meth:`sample` gives it)."""
        root_seed = check_uint64("root_seed", root_seed)
        names = ModelParams.field_names()
        u = np.array([
            _core.uniform(derive_seed(root_seed, check_uint64("index", i)), PARAMS_STREAM,
                          len(names))
            for i in indices
        ]).reshape(len(indices), len(names))  # fmt: skip
        values = {n: self._from_unit(n, u[:, k]) for k, n in enumerate(names)}
        return [
            ModelParams(**{n: (int(values[n][j]) if n == "n_particles" else float(values[n][j]))
                           for n in names})
            for j in range(len(indices))
        ]  # fmt: skip

    def normalize(self, values: Mapping[str, Any] | ModelParams) -> np.ndarray:
        """The varied fields mapped to [0, 1], shape (..., len(varied)).

        ``values`` is a :class:`ModelParams` or a mapping of field name to
        arrays (e.g. a dataset's parameter columns).  Log-uniform fields are
        normalised on a log scale, integers over ``[low, high]``.
        """
        if isinstance(values, ModelParams):
            values = values.as_dict()
        out = []
        for name in self.varied:
            p = self.priors[name]
            v = np.asarray(values[name], dtype=float)
            if p.kind == "log-uniform":
                out.append(np.log(v / p.low) / math.log(p.high / p.low))
            else:
                out.append((v - p.low) / (p.high - p.low))
        if not out:  # nothing varies: no columns, one row per item
            shape = np.shape(values[next(iter(self.priors))]) if values else ()
            return np.empty((*shape, 0))
        return np.stack(out, axis=-1)

    def denormalize(self, normalized: Any) -> dict[str, np.ndarray]:
        """Field values from :meth:`normalize`'s output (fixed fields included).

        ``n_particles`` comes back as a float: round it when an integer is needed.
        """
        x = np.asarray(normalized, dtype=float)
        if x.shape[-1] != len(self.varied):
            raise ValueError(f"expected {len(self.varied)} normalised values, got {x.shape[-1]}")
        out: dict[str, np.ndarray] = {}
        for name, p in self.priors.items():
            if p.kind == "fixed":
                out[name] = np.full(x.shape[:-1], p.low, dtype=float)
                continue
            v = x[..., self.varied.index(name)]
            if p.kind == "log-uniform":
                out[name] = p.low * (p.high / p.low) ** v
            else:
                out[name] = p.low + v * (p.high - p.low)
        return out

    def to_config(self) -> dict[str, Any]:
        """The priors as TOML-ready values (what :meth:`from_config` reads)."""
        return {n: p.to_config() for n, p in self.priors.items()}

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> ParameterSpace:
        """Build from the ``[params]`` table of a dataset config."""
        return cls(dict(table))
