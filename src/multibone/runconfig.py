"""The run config: one YAML file, one section per layer.

```yaml
positive_class: infection      # which diagnosis is the positive class
splits:   {...}                # multibone.cohort.splits.SplitConfig
imaging:  {...}                # multibone.imaging.config.ImagingConfig
stacking: {...}                # multibone.stacking.config.StackingConfig
evaluation: {...}              # multibone.evaluation.config.EvaluationConfig
radiomics: {...}               # multibone.radiomics.config.RadiomicsConfig
detection: {...}               # multibone.detection.config.DetectionConfig (absent: no detector)
```

Each section is a typed dataclass owned by its layer; unknown sections or keys
are rejected with the dotted key named. The resolved config (defaults filled in)
is written next to every run's outputs.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from multibone._config import did_you_mean, from_dict, read_yaml, to_dict, write_yaml
from multibone.errors import ConfigError

_SECTIONS = {
    "splits": ("multibone.cohort.splits", "SplitConfig"),
    "imaging": ("multibone.imaging.config", "ImagingConfig"),
    "stacking": ("multibone.stacking.config", "StackingConfig"),
    "evaluation": ("multibone.evaluation.config", "EvaluationConfig"),
    "radiomics": ("multibone.radiomics.config", "RadiomicsConfig"),
    "detection": ("multibone.detection.config", "DetectionConfig"),
}
#: Sections that stay ``None`` when absent (the stage is skipped), instead of taking defaults.
_OPTIONAL = ("detection",)
_SCALARS = {"positive_class": "infection", "name": "", "description": ""}
POSITIVE_CLASSES = ("infection", "tumor")


def _section_type(name: str) -> type:
    module, cls = _SECTIONS[name]
    return getattr(importlib.import_module(module), cls)


@dataclasses.dataclass
class RunConfig:
    """A whole run's settings. Sections are the layers' own dataclasses."""

    positive_class: str = "infection"
    name: str = ""
    description: str = ""
    splits: Any = None
    imaging: Any = None
    stacking: Any = None
    evaluation: Any = None
    radiomics: Any = None
    detection: Any = None  # lesion detector; None: the run trains none

    def __post_init__(self) -> None:
        if self.positive_class not in POSITIVE_CLASSES:
            raise ConfigError(
                f"positive_class: {self.positive_class!r} is not one of {', '.join(POSITIVE_CLASSES)}"
            )
        for section in _SECTIONS:
            if getattr(self, section) is None and section not in _OPTIONAL:
                setattr(self, section, _section_type(section)())


def run_config_from_dict(data: dict, where: str = "config") -> RunConfig:
    unknown = sorted(set(data) - set(_SECTIONS) - set(_SCALARS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section {', '.join(unknown)}"
            f"{did_you_mean(unknown, [*_SCALARS, *_SECTIONS])}; valid top-level keys are "
            f"{', '.join(sorted([*_SCALARS, *_SECTIONS]))}"
        )
    kwargs: dict[str, Any] = {}
    for key, default in _SCALARS.items():
        value = data.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected text, got {value!r}")
        kwargs[key] = value
    for section in _SECTIONS:
        if section in _OPTIONAL and data.get(section) is None:
            kwargs[section] = None
            continue
        kwargs[section] = from_dict(_section_type(section), data.get(section), f"{where}: {section}")
    try:
        return RunConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_run_config(path: str | Path | None) -> RunConfig:
    """Read a run config YAML; ``None`` gives all defaults."""
    if path is None:
        return RunConfig()
    return run_config_from_dict(read_yaml(path), where=str(path))


def save_run_config(config: RunConfig, path: str | Path) -> None:
    write_yaml(config, path)


def run_config_to_dict(config: RunConfig) -> dict:
    return to_dict(config)
