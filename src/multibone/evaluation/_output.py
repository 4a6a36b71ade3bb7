"""Writing helpers shared by evaluate, compare and readers: JSON, table data, output folders."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from multibone.errors import InputError


def jsonable(obj: object) -> object:
    """Turn numpy scalars/arrays, dataclass dicts and NaN/inf into JSON-safe values (NaN -> null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "to_dict") and not isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict())
    return obj


def write_json(obj: object, path: Path) -> None:
    path.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def prepare_out_dir(out: Path, marker: str) -> None:
    """Refuse to replace an existing non-empty folder that is not a previous output.

    A previous output is recognised by its ``marker`` file (e.g. ``metrics.json``);
    it is replaced atomically by the caller (``atomic_dir(force=True)``).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise InputError(
            f"refusing to replace {out}: it is not empty and holds no {marker} from an earlier "
            "run of this command; choose another --out"
        )


def fmt_p(p: object) -> str:
    """p-value for tables: '<0.001', else 3 decimals; '–' when undefined."""
    try:
        v = float(p)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def table(df: pd.DataFrame | None, *, digits: int = 3, p_columns: Iterable[str] = ()) -> dict:
    """A DataFrame as plain data for the ``table`` macro of the templates.

    Returns ``{"columns": [str], "rows": [[str]]}``: floats rounded to ``digits``
    decimals, p-values in ``p_columns`` formatted by :func:`fmt_p`, missing
    values as "–"; no rows when ``df`` is None or empty. The template escapes.
    """
    if df is None or df.empty:
        return {"columns": [], "rows": []}
    d = df.copy()
    for c in p_columns:
        if c in d.columns:
            d[c] = d[c].map(fmt_p)
    rows = [[_cell(v, digits) for v in row] for row in d.itertuples(index=False, name=None)]
    return {"columns": [str(c) for c in d.columns], "rows": rows}


def _cell(v: object, digits: int) -> str:
    """One table cell as pandas' ``to_html(float_format=..., na_rep="–")`` wrote it."""
    if v is None or (isinstance(v, float | np.floating) and math.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def safe_name(text: str) -> str:
    """A file-name-safe version of a set or model name."""
    out = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))
    return out.strip("_") or "x"
