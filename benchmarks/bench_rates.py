"""Rates of what a benchmark timed, recorded only when it was timed.

``pytest benchmarks --benchmark-disable`` runs every benchmark once, untimed, as a quick
check that it works; its ``benchmark.stats`` is then None.
"""

from __future__ import annotations

from typing import Any


def record_rate(benchmark: Any, key: str, count: float, statistic: str = "median") -> None:
    """Store ``count`` per second of the timed rounds' ``statistic`` as ``extra_info[key]``."""
    if benchmark.stats is None:
        return
    benchmark.extra_info[key] = count / getattr(benchmark.stats.stats, statistic)
