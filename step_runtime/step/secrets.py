"""Reading the values of SecretKeyRefs from the env vars the operator renders."""
from __future__ import annotations

import os

from step_runtime.spec.common import SecretKeyRef, SpecError


def secret_value(ref: SecretKeyRef, field: str) -> str:
    """The secret's value from env var `ref.env_var_name()`; SpecError naming all three if unset."""
    var = ref.env_var_name()
    value = os.environ.get(var)
    if value is None or value == "":
        raise SpecError(f"{field}: Secret {ref.name!r} key {ref.key!r} is not available: "
                        f"env var {var} is unset (in a pod the operator sets it; locally, export it)")
    return value
