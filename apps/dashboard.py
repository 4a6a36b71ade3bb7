"""Thin launcher kept for ``streamlit run apps/dashboard.py`` from the repository.

The app itself ships inside the package (``multibone/app/dashboard.py``); ``multibone
dashboard`` starts it without the repository. This file runs that script as Streamlit's
``__main__``, so ``streamlit run apps/dashboard.py -- --bundle B`` works too.
"""

import runpy

from multibone.app import app_path

runpy.run_path(str(app_path()), run_name="__main__")
