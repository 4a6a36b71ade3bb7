"""The embedded synthetic cohort: a clinical table following seed 004's Table 1
and radiograph-like images with a lesion in a known box, written as DICOM and PNG.

* :func:`synthetic_patients` - the clinical table alone (fast; no images);
* :func:`make_synthetic_cohort` - the whole cohort folder (``multibone synth``);
* :func:`render_view` / :func:`draw_lesion` - one image, for tests and figures.

Everything here is simulated and says so (``SYNTHETIC_README.txt``).
"""

from multibone.synthetic.clinical import (
    CENTER_SHARES,
    TABLE1_COUNTS,
    class_targets,
    synthetic_patients,
)
from multibone.synthetic.scene import (
    LesionAppearance,
    RenderedView,
    draw_lesion,
    evidence_ceiling_auc,
    render_view,
)
from multibone.synthetic.writer import MANIFEST_COLUMNS, make_synthetic_cohort

__all__ = [
    "CENTER_SHARES",
    "MANIFEST_COLUMNS",
    "TABLE1_COUNTS",
    "LesionAppearance",
    "RenderedView",
    "class_targets",
    "draw_lesion",
    "evidence_ceiling_auc",
    "make_synthetic_cohort",
    "render_view",
    "synthetic_patients",
]
