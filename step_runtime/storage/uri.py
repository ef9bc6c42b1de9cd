"""Where a model or catalog lives, as pure functions: URIs, local names, byte quantities.

A file named by `uri` is either read in place (`pvc://claim/path`: the operator mounts the claim
read-only under the PVC root) or fetched once into the fetch folder (`s3://`, `http(s)://`), under
a name derived from the URI, so that the fetch (the pod's init container) and the runtime agree on
it without talking to each other.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

FETCH_DIR_ENV = "ALERTOPS_FETCH_DIR"
PVC_ROOT_ENV = "ALERTOPS_PVC_ROOT"
# In a pod (the operator sets both env vars to these): an emptyDir, and the pvc:// mounts.
POD_FETCH_DIR = "/var/lib/alertops/fetched"
POD_PVC_ROOT = "/var/lib/alertops/pvc"

_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")


@dataclass(frozen=True)
class Location:
    """A parsed file URI: scheme (s3, http, https, pvc), authority (bucket, host, claim) and key."""

    uri: str
    scheme: str
    authority: str
    key: str

    @property
    def fetched(self) -> bool:
        """True when the file is downloaded (s3, http, https), False when read in place (pvc)."""
        return self.scheme != "pvc"


def parse_uri(uri: str) -> Location:
    """Split `s3://bucket/key`, `https://host/path` or `pvc://claim/path` (ValueError otherwise)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("s3", "http", "https", "pvc"):
        raise ValueError(f"{uri!r}: expected s3://bucket/key, https://host/path or pvc://claim/path")
    authority, _, key = rest.partition("/")
    if not authority or not key:
        where = "bucket" if scheme == "s3" else "host" if scheme.startswith("http") else "claim"
        raise ValueError(f"{uri!r}: expected {scheme}://<{where}>/<path>")
    if scheme == "pvc" and ".." in key.split("/"):
        raise ValueError(f"{uri!r}: a pvc:// path may not contain ..")
    return Location(uri=uri, scheme=scheme, authority=authority, key=key)


def fetched_name(uri: str) -> str:
    """The file name a fetched URI gets: a hash of the URI (distinct URIs never share a file) and
    the URI's last path segment (so a person listing the folder sees what is what)."""
    base = parse_uri(uri).key.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100] or "file"
    return f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{base}"


def fetch_dir() -> Path:
    """Where fetched files go: $ALERTOPS_FETCH_DIR, else ~/.cache/alertops/fetched (local runs)."""
    configured = os.environ.get(FETCH_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "alertops" / "fetched"


def pvc_root() -> Path:
    """Where pvc:// claims are mounted: $ALERTOPS_PVC_ROOT, else /var/lib/alertops/pvc."""
    return Path(os.environ.get(PVC_ROOT_ENV) or POD_PVC_ROOT)


def pvc_path(loc: Location, root: Path) -> Path:
    """The file a pvc:// URI names under the mount root of its claim."""
    return root / loc.authority / loc.key


def parse_quantity(text: str) -> int:
    """Bytes of a Kubernetes quantity: `1Gi` -> 1073741824, `500M` -> 500000000, `1048576`."""
    m = _QUANTITY.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a quantity of bytes (e.g. 1Gi, 500Mi, 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def human_bytes(n: int) -> str:
    """`1536` -> `1.5 KiB`: sizes in messages."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
