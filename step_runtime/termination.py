"""The container's termination message: the one line the operator reads into a resource's status."""
from __future__ import annotations

import os
from pathlib import Path

TERMINATION_ENV = "ALERTOPS_TERMINATION_MESSAGE_PATH"
MAX_BYTES = 4096  # what Kubernetes keeps of a termination message


def write_termination_message(text: str) -> None:
    """Leave `text` where Kubernetes reads the container's termination message, when asked to
    (the operator renders $ALERTOPS_TERMINATION_MESSAGE_PATH into the pods)."""
    target = os.environ.get(TERMINATION_ENV)
    if not target:
        return
    try:
        Path(target).write_text(text[:MAX_BYTES])
    except OSError:
        pass  # a courtesy: the message is on stderr too, and the result does not depend on it
