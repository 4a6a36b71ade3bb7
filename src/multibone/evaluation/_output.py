"""Writing helpers shared by evaluate, compare and readers: JSON, HTML, output folders."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from multibone.errors import InputError

DISCLAIMER = "Decision support, not a diagnosis."

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}
h3{margin-top:1.4em} .disclaimer{background:#fff3cd;border:1px solid #e0c66b;padding:8px 12px;
font-weight:bold;display:inline-block} .synthetic{background:#e8f0fe;border:1px solid #9bb8f0;
padding:8px 12px;margin-top:8px} .warn{background:#fdecea;border:1px solid #f5c2c0;padding:8px 12px}
table.tbl{border-collapse:collapse;font-size:0.82em;margin:8px 0 16px 0}
table.tbl th,table.tbl td{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.tbl th{background:#f3f3f3} table.tbl td:first-child,table.tbl th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0} .note{color:#555;font-size:0.9em}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs img{max-width:560px}
"""


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


def df_html(df: pd.DataFrame, *, digits: int = 3, p_columns: Iterable[str] = ()) -> str:
    """A DataFrame as an HTML table (escaped), floats rounded, p-values formatted."""
    if df is None or df.empty:
        return '<p class="note">(no rows)</p>'
    d = df.copy()
    for c in p_columns:
        if c in d.columns:
            d[c] = d[c].map(fmt_p)
    return d.to_html(
        index=False,
        border=0,
        classes="tbl",
        na_rep="–",
        escape=True,
        float_format=lambda v: f"{v:.{digits}f}",
    )


def esc(text: object) -> str:
    return html.escape(str(text))


def html_page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def img_tag(data_uri: str, alt: str) -> str:
    return f'<img src="{data_uri}" alt="{esc(alt)}">'


def safe_name(text: str) -> str:
    """A file-name-safe version of a set or model name."""
    out = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))
    return out.strip("_") or "x"
