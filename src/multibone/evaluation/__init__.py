"""Evaluation layer: statistics, figures and reports.

Statistics come from statsmodels / scikit-learn / scipy wherever they exist.
AUC, DeLong, the bootstrap, Wilson intervals and operating points live in the
statistics core :mod:`multibone.stats` and are re-exported here for convenience.

* :mod:`~multibone.evaluation.metrics`: confusion counts, metrics with Wilson CIs, LR+/LR-.
* :mod:`~multibone.evaluation.agreement`: McNemar, Cochran's Q, Cohen/Fleiss kappa,
  kappa-difference permutation test.
* :mod:`~multibone.evaluation.calibration`: intercept, slope, Brier, O/E, deciles.
* :mod:`~multibone.evaluation.curves`: PR/AP, max-F1, decision curves.
* :mod:`~multibone.evaluation.report`: ``evaluate_run`` (``multibone evaluate``).
* :mod:`~multibone.evaluation.compare`: ``compare_predictions`` (``multibone compare``).
* :mod:`~multibone.evaluation.readers`: ``run_readers`` (``multibone readers``).
"""

from multibone.evaluation.agreement import (
    CochranQResult,
    KappaDifferenceResult,
    KappaResult,
    McNemarResult,
    cochran_q,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_table,
    kappa_difference_test,
    mcnemar_sens_spec,
    mcnemar_test,
)
from multibone.evaluation.calibration import CalibrationResult, calibration, calibration_table
from multibone.evaluation.curves import PRResult, net_benefit, pr_curve
from multibone.evaluation.metrics import (
    BinaryMetrics,
    apply_operating_point,
    binary_metrics,
    confusion_counts,
    likelihood_ratios,
    metrics_from_counts,
)
from multibone.stats import (
    OPERATING_POINTS,
    AUCResult,
    Bootstrap,
    BootstrapCI,
    OperatingPoint,
    PairedDeLongResult,
    Proportion,
    SingleClassError,
    auc_score,
    bootstrap,
    bootstrap_auc,
    bootstrap_auc_difference,
    bootstrap_metrics,
    choose_operating_points,
    delong_auc,
    delong_paired,
    percentile_ci,
    roc_points,
    wilson,
)

# The report modules import matplotlib; load them only when asked for (PEP 562).
_LAZY = {
    "evaluate_run": "multibone.evaluation.report",
    "compare_predictions": "multibone.evaluation.compare",
    "run_readers": "multibone.evaluation.readers",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'multibone.evaluation' has no attribute {name!r}")


__all__ = [
    "AUCResult",
    "BinaryMetrics",
    "Bootstrap",
    "BootstrapCI",
    "CalibrationResult",
    "CochranQResult",
    "KappaDifferenceResult",
    "KappaResult",
    "McNemarResult",
    "OPERATING_POINTS",
    "OperatingPoint",
    "PRResult",
    "PairedDeLongResult",
    "Proportion",
    "SingleClassError",
    "apply_operating_point",
    "auc_score",
    "binary_metrics",
    "bootstrap",
    "bootstrap_auc",
    "bootstrap_auc_difference",
    "bootstrap_metrics",
    "calibration",
    "calibration_table",
    "choose_operating_points",
    "cochran_q",
    "cohen_kappa",
    "compare_predictions",
    "confusion_counts",
    "delong_auc",
    "delong_paired",
    "evaluate_run",
    "fleiss_kappa",
    "fleiss_kappa_table",
    "kappa_difference_test",
    "likelihood_ratios",
    "mcnemar_sens_spec",
    "mcnemar_test",
    "metrics_from_counts",
    "net_benefit",
    "percentile_ci",
    "pr_curve",
    "roc_points",
    "run_readers",
    "wilson",
]
