"""Readiness probe for a MongoDB-wire server: send `ping` as an OP_MSG and expect ok: 1.

Standard library only, so the test environment can check FerretDB before the project's virtual
environment exists. Usage: python3 wire_ping.py HOST PORT [TIMEOUT_SECONDS]; exit 0 when ready.
"""
from __future__ import annotations

import socket
import struct
import sys

OP_MSG = 2013


def bson_ping() -> bytes:
    """The BSON document {ping: 1, $db: "admin"}."""
    body = b"\x10ping\x00" + struct.pack("<i", 1)
    body += b"\x02$db\x00" + struct.pack("<i", len(b"admin\x00")) + b"admin\x00"
    return struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"


def op_msg(request_id: int, document: bytes) -> bytes:
    """An OP_MSG with no flags and one body section (kind 0)."""
    payload = struct.pack("<I", 0) + b"\x00" + document
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes or raise ConnectionError."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def reply_ok(reply: bytes) -> bool:
    """True when the reply's body document has ok: 1 (a double or an int32)."""
    for marker, value in ((b"\x01ok\x00", struct.pack("<d", 1.0)), (b"\x10ok\x00", struct.pack("<i", 1))):
        at = reply.find(marker)
        if at >= 0 and reply[at + len(marker):at + len(marker) + len(value)] == value:
            return True
    return False


def ping(host: str, port: int, timeout: float) -> bool:
    """One ping round trip, every step bounded by timeout seconds."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(op_msg(1, bson_ping()))
        (length,) = struct.unpack("<i", recv_exact(sock, 4))
        reply = recv_exact(sock, length - 4)
    (op_code,) = struct.unpack("<i", reply[8:12])
    return op_code == OP_MSG and reply_ok(reply[12:])


if __name__ == "__main__":
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    try:
        sys.exit(0 if ping(sys.argv[1], int(sys.argv[2]), timeout) else 1)
    except (OSError, ValueError) as exc:
        print(f"wire_ping: {exc}", file=sys.stderr)
        sys.exit(1)
