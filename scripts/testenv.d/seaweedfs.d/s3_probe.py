#!/usr/bin/env python3
"""A real S3 round trip against the test object store, with the standard library only.

    s3_probe.py ENDPOINT ACCESS_KEY SECRET_KEY [BUCKET]

Creates BUCKET (default alertops-probe) if needed, PUTs a small object, GETs it back, compares,
and DELETEs it, each request signed with AWS Signature Version 4 (path-style, region us-east-1).
Exit 0 when all four answered as S3 must, 1 otherwise (the first failure on stderr). The
testenv uses it as its readiness check: a gateway that answers but cannot store is not ready.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request

REGION = "us-east-1"


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(method: str, endpoint: str, path: str, access: str, secret: str, body: bytes = b"") -> tuple[int, bytes]:
    """One SigV4-signed request; (status, body)."""
    url = urllib.parse.urlsplit(endpoint)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": url.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, urllib.parse.quote(path), "",
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret}".encode(), day), REGION), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, "
                                f"Signature={signature}")
    req = urllib.request.Request(endpoint.rstrip("/") + path, data=body if method == "PUT" else None,  # noqa: S310 - the test store
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - the test store
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, access, secret = sys.argv[1:4]
    bucket = sys.argv[4] if len(sys.argv) == 5 else "alertops-probe"
    payload = b"alertops probe " + datetime.datetime.now().isoformat().encode()
    steps = [("PUT", f"/{bucket}", b"", (200, 409)), ("PUT", f"/{bucket}/probe.txt", payload, (200,)),
             ("GET", f"/{bucket}/probe.txt", b"", (200,)), ("DELETE", f"/{bucket}/probe.txt", b"", (200, 204))]
    for method, path, body, ok in steps:
        try:
            status, answer = request(method, endpoint, path, access, secret, body)
        except OSError as exc:
            print(f"{method} {path}: {exc}", file=sys.stderr)
            return 1
        if status not in ok:
            print(f"{method} {path}: HTTP {status} {answer[:200]!r}", file=sys.stderr)
            return 1
        if method == "GET" and answer != payload:
            print(f"GET {path}: got {answer[:60]!r}, expected what was PUT", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
