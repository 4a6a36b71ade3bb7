"""The statistics core: the one implementation of every statistic several layers need.

At the bottom of the import graph: it imports numpy, scipy, scikit-learn's
metrics and :mod:`multibone.errors`, nothing else from multibone.

* :mod:`~multibone.stats.auc`: ROC AUC (Mann-Whitney, mid-ranks) with one NaN
  rule, ROC curve points;
* :mod:`~multibone.stats.delong`: DeLong variance and CI, paired DeLong test;
* :mod:`~multibone.stats.bootstrap`: plain, stratified and patient-clustered
  percentile bootstrap (vectorised AUC and threshold metrics);
* :mod:`~multibone.stats.proportions`: Wilson interval of a proportion;
* :mod:`~multibone.stats.operating`: operating points (youden, sens90, spec90,
  maxf1) with one tie rule, and their names;
* :mod:`~multibone.stats._checks`: input checks (0/1 labels, finite scores).
"""

from multibone.stats._checks import (
    SingleClassError,
    as_labels,
    as_probabilities,
    as_scores,
    require_both_classes,
)
from multibone.stats.auc import auc_or_nan, auc_score, roc_points
from multibone.stats.bootstrap import (
    Bootstrap,
    BootstrapCI,
    bootstrap,
    bootstrap_auc,
    bootstrap_auc_difference,
    bootstrap_metrics,
    percentile_ci,
)
from multibone.stats.delong import AUCResult, PairedDeLongResult, delong_auc, delong_paired
from multibone.stats.operating import (
    DECISION_POINTS,
    LABELS,
    OPERATING_POINTS,
    PLAIN_LABELS,
    OperatingPoint,
    apply_threshold,
    choose_operating_points,
)
from multibone.stats.proportions import Proportion, wilson

__all__ = [
    "DECISION_POINTS",
    "LABELS",
    "OPERATING_POINTS",
    "PLAIN_LABELS",
    "AUCResult",
    "Bootstrap",
    "BootstrapCI",
    "OperatingPoint",
    "PairedDeLongResult",
    "Proportion",
    "SingleClassError",
    "apply_threshold",
    "as_labels",
    "as_probabilities",
    "as_scores",
    "auc_or_nan",
    "auc_score",
    "bootstrap",
    "bootstrap_auc",
    "bootstrap_auc_difference",
    "bootstrap_metrics",
    "choose_operating_points",
    "delong_auc",
    "delong_paired",
    "percentile_ci",
    "require_both_classes",
    "roc_points",
    "wilson",
]
