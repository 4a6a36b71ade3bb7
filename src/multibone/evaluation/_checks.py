"""Message helpers of the evaluation layer; the input checks themselves live in :mod:`multibone.stats`."""

from __future__ import annotations

from collections.abc import Sequence

from multibone.stats._checks import (  # re-exported for the evaluation modules
    SingleClassError,
    as_labels,
    as_probabilities,
    as_scores,
    require_both_classes,
)

__all__ = [
    "SingleClassError",
    "as_labels",
    "as_probabilities",
    "as_scores",
    "require_both_classes",
    "short_list",
]


def short_list(items: Sequence[object], k: int = 5) -> str:
    """``a, b, c (and 7 more)`` for error messages."""
    items = list(items)
    head = ", ".join(str(i) for i in items[:k])
    return head + (f" (and {len(items) - k} more)" if len(items) > k else "")
