"""The one exception a user can act on during a build."""
from __future__ import annotations


class BuildError(Exception):
    """Bad input the user must fix: the message names the file, column, row and what was expected.

    `alertops build` prints it as one line (no traceback) and exits with status 2.
    """


class BuildFailure(Exception):
    """A failure of the environment (a database down, a disk full): exit status 1, not 2."""
