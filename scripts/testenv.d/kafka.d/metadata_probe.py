"""Readiness probe for a Kafka broker: a real Metadata request (v4) must list at least one broker.

Standard library only, so the test environment can check the broker before the project's virtual
environment exists (and without starting a second JVM per poll).
Usage: python3 metadata_probe.py HOST PORT [TIMEOUT_SECONDS]; exit 0 when ready.
"""
from __future__ import annotations

import socket
import struct
import sys

METADATA = 3
VERSION = 4  # the oldest Metadata version Kafka 4 still serves (KIP-896 removed v0-v3)
CORRELATION_ID = 7


def metadata_request() -> bytes:
    """Request header v1 (api key, version, correlation id, client id), body: all topics, no auto-create."""
    client_id = b"alertops-testenv"
    header = struct.pack(">hhih", METADATA, VERSION, CORRELATION_ID, len(client_id)) + client_id
    body = struct.pack(">ib", -1, 0)
    message = header + body
    return struct.pack(">i", len(message)) + message


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes or raise ConnectionError."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def broker_count(response: bytes) -> int:
    """Number of brokers in a Metadata v4 response (after the size prefix); -1 if it is not ours."""
    correlation_id, _throttle_ms, brokers = struct.unpack(">iii", response[:12])
    return brokers if correlation_id == CORRELATION_ID else -1


def probe(host: str, port: int, timeout: float) -> bool:
    """One Metadata round trip, every step bounded by timeout seconds."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(metadata_request())
        (length,) = struct.unpack(">i", recv_exact(sock, 4))
        return broker_count(recv_exact(sock, length)) >= 1


if __name__ == "__main__":
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    try:
        sys.exit(0 if probe(sys.argv[1], int(sys.argv[2]), timeout) else 1)
    except (OSError, ValueError, struct.error) as exc:
        print(f"metadata_probe: {exc}", file=sys.stderr)
        sys.exit(1)
