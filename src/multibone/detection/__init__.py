"""Lesion detection (seeds 000 and 003): torchvision detectors that propose the lesion box.

* :mod:`.registry` - detector specs and :func:`create_detector` (weights: none, local file, coco);
* :mod:`.boxes` - IoU, box checks, transforms that move boxes with the image, WBF / NMS merge;
* :mod:`.config` - :class:`DetectionConfig`, the ``detection:`` section of a run config;
* :mod:`.data` - manifest -> image table (normal controls: ``diagnosis`` ``normal``) -> images;
* :mod:`.train` - warm-restart cycles, EMA of the weights, exact resume;
* :mod:`.inference` - boxes of one image from K models with test-time augmentation;
* :mod:`.crossfit` - cross-fitted boxes on the backbones' patient folds (``boxes.csv``);
* :mod:`.metrics` - localisation rate, missed lesions, false positives, patient rules.
"""

from multibone.detection.boxes import box_iou, merge_boxes
from multibone.detection.config import DetectionConfig
from multibone.detection.crossfit import crossfit_detector, parse_boxes
from multibone.detection.data import NORMAL, load_images, read_image_table
from multibone.detection.inference import detect
from multibone.detection.metrics import localisation, patient_calls, patient_scores
from multibone.detection.registry import DETECTORS, create_detector, get_spec, list_detectors
from multibone.detection.train import fit_detector

__all__ = [
    "DETECTORS",
    "NORMAL",
    "DetectionConfig",
    "box_iou",
    "create_detector",
    "crossfit_detector",
    "detect",
    "fit_detector",
    "get_spec",
    "list_detectors",
    "load_images",
    "localisation",
    "merge_boxes",
    "parse_boxes",
    "patient_calls",
    "patient_scores",
    "read_image_table",
]
