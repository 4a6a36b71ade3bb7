"""Radiomics baseline (seed 001): 2D features of the lesion box by Nyxus, ElasticNet LR.

* :mod:`~multibone.radiomics.features`: first-order, box-shape and texture
  (GLCM, GLRLM, GLSZM) features of each lesion box (Nyxus);
* :mod:`~multibone.radiomics.model`: per-patient mean, ElasticNet logistic
  regression tuned by inner patient-grouped CV, cross-fitted on the run's folds;
* :mod:`~multibone.radiomics.run`: the pipeline step writing ``RUN/radiomics``;
* :mod:`~multibone.radiomics.config`: the ``radiomics:`` section of a run config.
"""

from multibone.radiomics.config import RadiomicsConfig
from multibone.radiomics.features import MissingDependencyError, image_features, roi_features
from multibone.radiomics.model import crossfit, patient_features
from multibone.radiomics.run import run_radiomics

__all__ = [
    "MissingDependencyError",
    "RadiomicsConfig",
    "crossfit",
    "image_features",
    "patient_features",
    "roi_features",
    "run_radiomics",
]
