"""Exception types of multibone.

Every error a user can cause derives from :class:`MultiboneError`; its message
names the file, row, column or field at fault and, where there is one, the fix.
The CLI turns these into one line on stderr and exit code 2 (never a traceback).
"""

from __future__ import annotations


class MultiboneError(Exception):
    """Base class of every error caused by input, configuration or environment."""


class InputError(MultiboneError, ValueError):
    """A value given by the user (argument, field, case) is not acceptable."""


class ConfigError(MultiboneError, ValueError):
    """A YAML config is malformed: unknown key, wrong type or bad value."""


class ImageReadError(MultiboneError, OSError):
    """A radiograph file is missing, unreadable or of an unsupported kind."""


class CohortValidationError(MultiboneError, ValueError):
    """A manifest breaks the data contract. ``problems`` lists every problem.

    Each problem is a one-line string, ``row R, column C: message`` or
    ``patient P: message``.
    """

    def __init__(self, problems: list[str], source: str = "manifest"):
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(self.problems))


class LeakageError(MultiboneError):
    """A patient would sit on both sides of a train/evaluation split."""


class BundleError(MultiboneError):
    """A model bundle is missing, tampered, truncated or of an unknown format."""


class UnsafeModelError(BundleError):
    """A model file names types multibone never saves, or is a pickle: refused unloaded."""


class WeightsError(MultiboneError):
    """Backbone weights cannot be found, fetched or fitted to the model."""
