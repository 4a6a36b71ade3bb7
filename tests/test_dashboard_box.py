"""The lesion box drawn with the mouse (multibone.app.box): canvas scaling, the exact map
back to original pixels, bad drawings, and the drawing / number-field hand-over."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from multibone.app import box as bx


@pytest.mark.parametrize(
    ("w", "h", "cw", "ch"),
    [(96, 80, 96, 80), (640, 480, 640, 480), (4000, 3000, 640, 480), (2991, 3505, 546, 640)],
)
def test_canvas_geometry_downscales_never_upscales(w, h, cw, ch):
    geo = bx.canvas_geometry(w, h)
    assert (geo.canvas_width, geo.canvas_height) == (cw, ch)


def test_box_maps_back_to_the_same_original_pixels():
    """Every box of a downscaled radiograph survives original -> canvas -> original, also
    after the canvas's JSON rounds coordinates to 2 decimals (Fabric.js's default)."""
    geo = bx.canvas_geometry(2991, 3505)  # odd sizes: the two axes scale differently
    assert geo.scale_x != geo.scale_y
    for x0, y0, x1, y1 in itertools.product((0, 1, 777), (0, 3, 1999), (1234, 2991), (2000, 3505)):
        rect = bx.box_to_rect((x0, y0, x1, y1), geo)
        rounded = {k: round(v, 2) for k, v in rect.items()}
        assert bx.rect_to_box(rounded, geo) == ((x0, y0, x1, y1), "")


def test_drawn_rect_maps_by_the_axis_scale():
    geo = bx.canvas_geometry(1280, 960)  # canvas 640 x 480: factor 2 on both axes
    box, err = bx.rect_to_box({"left": 10.2, "top": 20, "width": 100, "height": 50.4}, geo)
    assert err == "" and box == (20, 40, 220, 141)


def test_rect_dragged_up_left_and_overshooting_the_edge():
    geo = bx.canvas_geometry(100, 80)
    # dragged from (90, 70) to the upper left: negative width/height
    assert bx.rect_to_box({"left": 90, "top": 70, "width": -40, "height": -30}, geo) == (
        (50, 40, 90, 70),
        "",
    )
    # past the right/bottom edge: cut at the edge
    assert bx.rect_to_box({"left": 60, "top": 50, "width": 80, "height": 90}, geo) == (
        (60, 50, 100, 80),
        "",
    )


@pytest.mark.parametrize(
    ("rect", "message"),
    [
        ({"left": 120, "top": 10, "width": 30, "height": 30}, "outside the image"),
        ({"left": -50, "top": 10, "width": 40, "height": 30}, "outside the image"),
        ({"left": 10, "top": 10, "width": 0, "height": 30}, "no area"),
        ({"left": 10, "top": 10, "width": 0.2, "height": 0.3}, "no area"),
        ({"left": "x", "top": 10, "width": 5, "height": 5}, "could not be read"),
        ({"left": float("nan"), "top": 10, "width": 5, "height": 5}, "could not be read"),
    ],
)
def test_bad_drawings_are_refused_with_a_message(rect, message):
    box, err = bx.rect_to_box(rect, bx.canvas_geometry(100, 80))
    assert box is None and message in err


def test_drawn_rects_apply_the_resize_handles_scale():
    data = {
        "objects": [
            {"type": "path", "left": 1, "top": 1, "width": 3, "height": 3},
            {"type": "LabeledRect", "left": 5, "top": 6, "width": 10, "height": 20,
             "scaleX": 1.5, "scaleY": 0.5},
        ]
    }
    assert bx.drawn_rects(data) == [{"left": 5.0, "top": 6.0, "width": 15.0, "height": 10.0}]
    assert bx.drawn_rects(None) == []


def test_read_drawing_hands_over_between_canvas_and_fields():
    geo = bx.canvas_geometry(1280, 960)
    current = (100, 100, 300, 300)
    echo = {"objects": [{"type": "rect", **bx.box_to_rect(current, geo)}]}
    # the canvas echoes the fields' box: nothing changes, the echo is remembered
    upd = bx.read_drawing(echo, geo, None, current)
    assert upd.box is None and upd.error == "" and upd.signature is not None
    # a new rectangle drawn after it: the fields follow it
    new = {"objects": [*echo["objects"], {"type": "rect", "left": 10, "top": 10, "width": 20,
                                           "height": 30}]}
    upd2 = bx.read_drawing(new, geo, upd.signature, current)
    assert upd2.box == (20, 20, 60, 80)
    # the same drawing seen again (e.g. after the fields were typed over): fields win
    assert bx.read_drawing(new, geo, upd2.signature, (0, 0, 5, 5)).box is None
    # an empty canvas changes nothing
    assert bx.read_drawing({"objects": []}, geo, None, current).box is None


# --------------------------------------------------------------------------- several views


def test_view_table_puts_image_scores_beside_the_patient_score():
    from multibone.app import views
    from multibone.imaging.aggregate import aggregate, sigmoid

    probs = [0.2, 0.9, 0.6]
    logits = [float(np.log(p / (1 - p))) for p in probs]
    for rule, driver in (("mean_logit", 1), ("max", 1), ("all_positive", 0)):
        patient = float(sigmoid(aggregate(logits, rule)))
        table, sentences = views.view_table(
            {"e3": probs}, {"e3": patient}, ["image 1", "image 2", "image 3"], rule
        )
        assert table["view"] == ["image 1", "image 2", "image 3", f"patient ({rule})"]
        assert table["e3"][-1] == f"{patient:.3f}" and table["e3"][:3] == ["0.200", "0.900", "0.600"]
        assert sentences[0].startswith(f"e3: image {driver + 1} drove")
    # a mean below 0.5 is driven by the most negative view
    assert views.driving_view([0.05, 0.45, 0.6], "mean_logit", 0.3) == 0
    assert views.view_table({}, {}, [], None) == ({}, [])


def test_propose_box_is_none_without_a_detector(tmp_path):
    """A bundle without a detection/ folder proposes nothing (the page then says how to box)."""
    from types import SimpleNamespace

    from multibone.case import propose_box

    bundle = SimpleNamespace(path=tmp_path, hash="0" * 64)
    assert propose_box(bundle, np.zeros((40, 50), dtype=np.float32)) is None
