"""Render multibone's self-contained HTML pages from the Jinja2 templates.

The templates live in ``multibone/templates`` (package data): ``base.html``
holds the head, the CSS and the disclaimer; each page extends it. Python code
passes plain data (strings, numbers, lists, dicts; images as ``data:`` URIs);
the templates do layout only. Autoescaping is on, so a model or feature name
such as ``<script>`` is shown as text, never run.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

import jinja2

from multibone.disclaimer import DISCLAIMER, SYNTHETIC_WARNING


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("multibone", "templates"),
        autoescape=True,
        # a misspelt variable fails the render instead of leaving a silent gap
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(disclaimer=DISCLAIMER, synthetic_warning=SYNTHETIC_WARNING)
    return env


def render(template_name: str, **context: Any) -> str:
    """The page ``template_name`` (e.g. ``"report.html"``) rendered with ``context``."""
    return _environment().get_template(template_name).render(**context)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` URI of PNG bytes (keeps a page self-contained)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
