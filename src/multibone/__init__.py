"""multibone: primary bone tumour vs bone infection from radiographs + clinical data.

Decision support, not a diagnosis. See DESIGN.md in the project's shared docs for
the architecture; the public API is re-exported here as each layer lands.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
