"""The lesion box drawn with the mouse: display scaling, mapping back to the original
pixels, checking, and keeping the drawing and the four number fields in step.

Streamlit-free (tests call these directly; AppTest cannot drive a custom component).
Coordinates: ``(x0, y0, x1, y1)`` in original pixels with x1/y1 exclusive, as everywhere in
multibone. The canvas shows the image downscaled by one factor per axis,
``canvas_width / width`` and ``canvas_height / height``; a rectangle on the canvas
(``left, top, width, height`` in canvas pixels, floats allowed) maps back by dividing by
those factors and rounding to the nearest original pixel. A box set in the number fields is
drawn at its exact fractional canvas position, so an untouched drawing maps back to the
very same integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Longest side of the drawing canvas in screen pixels (the image is shown downscaled).
CANVAS_MAX_SIDE = 640


@dataclass(frozen=True)
class CanvasGeometry:
    """An image of ``width`` x ``height`` original pixels shown as ``canvas_width`` x
    ``canvas_height`` canvas pixels."""

    width: int
    height: int
    canvas_width: int
    canvas_height: int

    @property
    def scale_x(self) -> float:
        return self.canvas_width / self.width

    @property
    def scale_y(self) -> float:
        return self.canvas_height / self.height


def canvas_geometry(width: int, height: int, max_side: int = CANVAS_MAX_SIDE) -> CanvasGeometry:
    """The canvas size for an image: the longest side at most ``max_side``, never upscaled."""
    if width < 1 or height < 1:
        raise ValueError(f"image of {width} x {height} px has no pixels")
    s = min(1.0, max_side / max(width, height))
    return CanvasGeometry(
        width=int(width),
        height=int(height),
        canvas_width=max(1, round(width * s)),
        canvas_height=max(1, round(height * s)),
    )


def box_to_rect(box: Sequence[int], geo: CanvasGeometry) -> dict[str, float]:
    """A box in original pixels as a canvas rectangle (left, top, width, height)."""
    x0, y0, x1, y1 = box
    return {
        "left": x0 * geo.scale_x,
        "top": y0 * geo.scale_y,
        "width": (x1 - x0) * geo.scale_x,
        "height": (y1 - y0) * geo.scale_y,
    }


def rect_to_box(
    rect: Mapping[str, float], geo: CanvasGeometry
) -> tuple[tuple[int, int, int, int] | None, str]:
    """Map a canvas rectangle back to original pixels and check it.

    Returns ``(box, "")``, or ``(None, message)`` for a rectangle that misses the image or
    has no area there. A rectangle reaching past an edge is cut at the edge (a drag that
    overshoots the corner is what the hand does, not an error).
    """
    try:
        left, top = float(rect["left"]), float(rect["top"])
        w, h = float(rect["width"]), float(rect["height"])
    except (KeyError, TypeError, ValueError):
        return None, "the drawn box could not be read; draw it again"
    if not all(math.isfinite(v) for v in (left, top, w, h)):
        return None, "the drawn box could not be read; draw it again"
    if w < 0:  # a rectangle dragged leftwards / upwards
        left, w = left + w, -w
    if h < 0:
        top, h = top + h, -h
    x0 = round(left / geo.scale_x)
    y0 = round(top / geo.scale_y)
    x1 = round((left + w) / geo.scale_x)
    y1 = round((top + h) / geo.scale_y)
    if x1 <= 0 or y1 <= 0 or x0 >= geo.width or y0 >= geo.height:
        return None, (
            "the drawn box is outside the image: draw it over the lesion, inside the picture"
        )
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(geo.width, x1), min(geo.height, y1)
    if x1 <= x0 or y1 <= y0:
        return None, (
            f"the drawn box has no area ({x1 - x0} x {y1 - y0} px): press and drag across "
            "the lesion"
        )
    return (x0, y0, x1, y1), ""


def drawn_rects(json_data: Mapping | None) -> list[dict[str, float]]:
    """Rectangles of a Fabric.js canvas JSON, with their scaleX/scaleY applied (the edit
    handles resize a rectangle by scaling it), in drawing order."""
    rects = []
    for obj in (json_data or {}).get("objects", []) or []:
        if str(obj.get("type", "")).lower() not in ("rect", "labeledrect"):
            continue
        try:
            rects.append(
                {
                    "left": float(obj["left"]),
                    "top": float(obj["top"]),
                    "width": float(obj["width"]) * float(obj.get("scaleX", 1) or 1),
                    "height": float(obj["height"]) * float(obj.get("scaleY", 1) or 1),
                }
            )
        except (KeyError, TypeError, ValueError):
            continue
    return rects


def rect_signature(rect: Mapping[str, float] | None) -> tuple | None:
    """A hashable, rounding-proof fingerprint of a rectangle (to tell a new drawing)."""
    if rect is None:
        return None
    return tuple(round(float(rect[k]), 1) for k in ("left", "top", "width", "height"))


@dataclass
class DrawingUpdate:
    """What one rerun learns from the canvas.

    box: the new box for the number fields (None: leave them); error: a message for a
    drawing that cannot be used; signature: remember it as the drawing seen.
    """

    box: tuple[int, int, int, int] | None
    error: str
    signature: tuple | None


def read_drawing(
    json_data: Mapping | None, geo: CanvasGeometry, seen: tuple | None, current: tuple | None
) -> DrawingUpdate:
    """Compare the canvas with what the page last saw and decide what changed.

    ``seen``: signature of the rectangle the page last took from (or gave to) the canvas.
    ``current``: the box in the number fields (None when they are invalid). The last
    rectangle drawn wins; a rectangle equal to ``seen`` or to ``current`` changes nothing,
    so the number fields keep priority until the mouse draws something new.
    """
    rects = drawn_rects(json_data)
    if not rects:
        return DrawingUpdate(None, "", seen)
    rect = rects[-1]
    sig = rect_signature(rect)
    if sig == seen:
        return DrawingUpdate(None, "", seen)
    box, error = rect_to_box(rect, geo)
    if box is not None and box == (None if current is None else tuple(current)):
        return DrawingUpdate(None, "", sig)  # the fields' own box, echoed by the canvas
    return DrawingUpdate(box, error, sig)
