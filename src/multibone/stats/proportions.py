"""Binomial proportions with the Wilson score interval (Wilson 1927, JASA 22:209-212).

The interval is scipy's (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``,
no continuity correction); it matches R's ``binom.confint(method="wilson")``
(``tests/test_stats_proportions.py``).
"""

from __future__ import annotations

import dataclasses
import math

from scipy import stats

from multibone.errors import InputError


@dataclasses.dataclass(frozen=True)
class Proportion:
    """``k / n`` with a Wilson CI; ``value`` and bounds are NaN when ``n == 0``."""

    value: float
    ci_low: float
    ci_high: float
    k: int
    n: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def wilson(k: int, n: int, *, level: float = 0.95) -> Proportion:
    """Wilson score interval of the binomial proportion ``k / n`` at confidence ``level``.

    ``n == 0`` gives NaN value and bounds (nothing to estimate).
    """
    k, n = int(k), int(n)
    if n == 0:
        return Proportion(math.nan, math.nan, math.nan, k, n)
    if not 0 <= k <= n:
        raise InputError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return Proportion(k / n, float(ci.low), float(ci.high), k, n)
