"""The ``evaluation:`` section of a run config (:class:`EvaluationConfig`).

```yaml
evaluation:
  shortcut_auc: 0.90   # flag any clinical feature (or its blankness) this predictive alone
```
"""

from __future__ import annotations

import dataclasses

from multibone.errors import ConfigError


@dataclasses.dataclass
class EvaluationConfig:
    """Settings of the evaluation report.

    Attributes
    ----------
    shortcut_auc:
        A clinical feature whose value alone, or whose being blank alone,
        separates the classes on development data with an AUC at or above this
        is warned about at the top of the report, in ``summary.md`` and in the
        dashboard (:mod:`multibone.evaluation.shortcuts`). Between 0.5 and 1.
    """

    shortcut_auc: float = 0.90

    def __post_init__(self) -> None:
        if not 0.5 < float(self.shortcut_auc) <= 1.0:
            raise ConfigError(
                f"evaluation.shortcut_auc: must be above 0.5 and at most 1, got {self.shortcut_auc}"
            )
