"""Independent brute-force references used by the tests (pure numpy/scipy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32-10 written from the published algorithm (Salmon et al. 2011)."""
    c = list(counter)
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & MASK32
            k1 = (k1 + 0xBB67AE85) & MASK32
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [
            ((p1 >> 32) ^ c[1] ^ k0) & MASK32,
            p1 & MASK32,
            ((p0 >> 32) ^ c[3] ^ k1) & MASK32,
            p0 & MASK32,
        ]
    return tuple(c)


def stream_words(seed: int, stream: int, n_words: int) -> list[int]:
    """The first n_words 32-bit words of the stream (seed, stream)."""
    words: list[int] = []
    block = 0
    key = (seed & MASK32, seed >> 32)
    while len(words) < n_words:
        ctr = (block & MASK32, block >> 32, stream & MASK32, stream >> 32)
        words.extend(philox4x32_10(ctr, key))
        block += 1
    return words[:n_words]


def stream_uniforms(seed: int, stream: int, n: int) -> np.ndarray:
    w = stream_words(seed, stream, 2 * n)
    bits = [((w[2 * i] >> 5) << 26) | (w[2 * i + 1] >> 6) for i in range(n)]
    return (np.array(bits, dtype=np.float64) + 0.5) / 2.0**53


def pair_distances(centers: np.ndarray) -> np.ndarray:
    diff = centers[:, None, :] - centers[None, :, :]
    return np.sqrt(np.sum(diff * diff, axis=-1))


def brute_contacts(centers, radii, tol) -> np.ndarray:
    """All pairs i < j with d_ij <= (r_i + r_j)(1 + tol), sorted."""
    d = pair_distances(centers)
    reach = (radii[:, None] + radii[None, :]) * (1.0 + tol)
    i, j = np.nonzero(np.triu(d <= reach, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def n_components(n: int, pairs: np.ndarray) -> int:
    if len(pairs) == 0:
        return n
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def homo_clusters(materials: np.ndarray, pairs: np.ndarray, code: int) -> int:
    """Connected components among the particles of one material via homo contacts."""
    idx = np.flatnonzero(materials == code)
    if len(idx) == 0:
        return 0
    keep = (materials[pairs[:, 0]] == code) & (materials[pairs[:, 1]] == code) if len(pairs) else []
    sub = pairs[keep] if len(pairs) else pairs
    remap = -np.ones(len(materials), dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    return n_components(len(idx), remap[sub] if len(sub) else np.zeros((0, 2), dtype=np.int64))


def radius_of_gyration(centers, radii) -> float:
    """Volume-weighted R_g with the (3/5) r^2 self term of each sphere."""
    m = radii**3
    c = (m[:, None] * centers).sum(0) / m.sum()
    return float(
        np.sqrt((m * (np.sum((centers - c) ** 2, axis=1) + 0.6 * radii**2)).sum() / m.sum())
    )


def gyration_tensor(centers, radii) -> np.ndarray:
    m = radii**3
    c = (m[:, None] * centers).sum(0) / m.sum()
    d = centers - c
    t = np.einsum("i,ij,ik->jk", m, d, d) + np.eye(3) * np.sum(m * 0.2 * radii**2)
    return t / m.sum()


def geometric_mean_radius(radii) -> float:
    return float(np.exp(np.mean(np.log(radii))))


def owned_paths(agg, x: float, y: float) -> np.ndarray:
    """The beam's path through each particle along z at (x, y), each point
    counted for the lowest-indexed sphere that holds it (a sweep over the
    sphere boundaries)."""
    edges = []
    for c, r in zip(agg.centers, agg.radii, strict=True):
        d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2
        if d2 < r * r:
            h = math.sqrt(r * r - d2)
            edges += [c[2] - h, c[2] + h]
    edges.sort()
    owned = np.zeros(len(agg.radii))
    for lo, hi in itertools.pairwise(edges):
        z = 0.5 * (lo + hi)
        inside = np.sum((agg.centers - [x, y, z]) ** 2, axis=1) < agg.radii**2
        if inside.any():
            owned[np.argmax(inside)] += hi - lo
    return owned
