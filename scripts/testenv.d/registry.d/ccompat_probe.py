"""Readiness probe of the test schema registry: a real request to its Confluent-compatible API.

    python3 ccompat_probe.py BASE_URL [USER PASSWORD]

Exits 0 when `GET BASE_URL/subjects` answers 200 with a JSON list (with HTTP basic auth when a
user is given), 1 otherwise. Standard library only, so it runs before any virtualenv exists.
"""
from __future__ import annotations

import base64
import json
import sys
import urllib.request

TIMEOUT_SECONDS = 5.0


def subjects(base_url: str, user: str | None, password: str | None) -> list[str]:
    """The registry's subject list; raises on any HTTP or decoding error."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/subjects")  # noqa: S310 - the test registry's URL
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - as above
        body = json.loads(response.read())
    if not isinstance(body, list):
        raise ValueError(f"GET /subjects answered {body!r}, not a JSON list")
    return body


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print("usage: ccompat_probe.py BASE_URL [USER PASSWORD]", file=sys.stderr)
        return 2
    user, password = (argv[2], argv[3]) if len(argv) == 4 else (None, None)
    try:
        subjects(argv[1], user, password)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"; say which
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
