"""The drawing canvas of the lesion box (``streamlit-drawable-canvas``, MIT), behind one
function so the page works without it and tests can stand in for the browser.

The component ships its JavaScript in the wheel (``frontend/build``): nothing is fetched
from the network. AppTest cannot move a mouse, so the AppTest tests replace :func:`draw`
with a stub that returns the JSON a browser would send; the browser test drives the real
component with the mouse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multibone.app import box as box_mod

#: Colours: the user's box (orange, as in the static outline) and an unconfirmed proposal.
BOX_COLOUR = "#ff8c00"
PROPOSAL_COLOUR = "#00b4ff"


def available() -> bool:
    """Whether the drawing component is installed (the ``dashboard`` extra)."""
    try:
        import streamlit_drawable_canvas  # noqa: F401
        from streamlit import runtime
    except Exception:  # not installed, or a Streamlit too old for components v2
        return False
    # A v2 component mounts through the Runtime singleton; a script run without one (an
    # AppTest started in a worker thread) gets the static picture instead of failing.
    return runtime.exists()


def draw(
    image: np.ndarray,
    geo: box_mod.CanvasGeometry,
    box: Sequence[int] | None,
    *,
    key: str,
    proposal: bool = False,
) -> dict | None:
    """Show ``image`` (uint8, any size; resized to the canvas) with ``box`` drawn on it and
    let the mouse draw a new one. Returns the canvas's Fabric.js JSON (None before the
    browser has sent anything)."""
    from PIL import Image
    from streamlit_drawable_canvas import boxes_to_drawing, st_canvas

    pil = (
        Image.fromarray(image)
        .convert("RGB")
        .resize((geo.canvas_width, geo.canvas_height), Image.Resampling.LANCZOS)
    )
    colour = PROPOSAL_COLOUR if proposal else BOX_COLOUR
    initial = None
    if box is not None:
        rect = box_mod.box_to_rect(box, geo)
        initial = boxes_to_drawing(
            [{**rect, "label": "proposal" if proposal else ""}],
            stroke_color=colour,
            stroke_width=2,
        )
    result = st_canvas(
        fill_color="rgba(255, 140, 0, 0.08)",
        stroke_width=2,
        stroke_color=BOX_COLOUR,
        background_image=pil,
        width=geo.canvas_width,
        height=geo.canvas_height,
        drawing_mode="labeled_rect",
        initial_drawing=initial,
        key=key,
    )
    return result.json_data
