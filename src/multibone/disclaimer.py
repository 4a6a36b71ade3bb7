"""The one decision-support disclaimer and synthetic-data warning.

Every HTML page (``multibone._html``), ``metrics.json``-style outputs, the case
result and the dashboard show these texts; change them here only.
"""

from __future__ import annotations

#: Shown once at the top of every page and in the dashboard.
DISCLAIMER = (
    "Decision support, not a diagnosis: the probabilities come from the cohort the "
    "model was trained on and must be weighed with the whole clinical picture."
)

#: Shown beside the disclaimer wherever the data are simulated.
SYNTHETIC_WARNING = (
    "Synthetic data (simulated images and clinical data): the numbers test the "
    "software, they say nothing about real patients."
)
