"""The Streamlit dashboard, shipped inside the package so an installed multibone can start it.

``dashboard.py`` is the Streamlit script (run by ``multibone dashboard``; importing it draws
nothing), ``logic.py`` its Streamlit-free helpers (tests call them directly) and
``model_tab.py`` the "Model" tab. Nothing else in multibone imports this package.
"""

from importlib import resources
from pathlib import Path


def app_path() -> Path:
    """Filesystem path of the Streamlit script ``dashboard.py`` (what ``streamlit run`` needs).

    multibone is installed as plain files (wheel or editable), never zipped, so the
    resource is a real file.
    """
    return Path(str(resources.files(__name__).joinpath("dashboard.py")))
