"""Where a model, catalog or table comes from, shared by both specs: a URI (s3://, http(s)://,
pvc://), how an s3:// URI's store is reached, a sha256 pin, and how files are fetched.

Its own module so that `alertops build` does not build every PipelineStep model at start-up.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from step_runtime.spec.common import SecretKeyRef, SpecModel

SHA256_HEX = r"^[0-9a-f]{64}$"
HTTP_URL = r"^https?://[^\s/$.?#][^\s]*$"
# Where a model or catalog is fetched from: an S3 object (bucket names as S3 allows them), an
# HTTP(S) URL, or a file on a PersistentVolumeClaim (claim names are DNS subdomains).
FILE_URI = (r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+|https?://[^\s/$.?#][^\s]*"
            r"|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^\s]+)$")
# A Kubernetes quantity of bytes (1Gi, 500Mi, 2G, 1048576).
BYTES_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"


class S3Access(SpecModel):
    """How to reach the S3-compatible object store of an s3:// URI (AWS S3, SeaweedFS, MinIO, Ceph...)."""

    endpoint: str | None = Field(None, pattern=HTTP_URL, max_length=2048, description=(
        "The store's S3 API, e.g. http://seaweedfs-s3.storage.svc:8333; absent means AWS S3 in `region`."))
    region: str = Field("us-east-1", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$",
                        description="Region the request is signed for.")
    access_key_id: SecretKeyRef | None = Field(None, description="Secret key holding the access key id.")
    secret_access_key: SecretKeyRef | None = Field(None, description="Secret key holding the secret access key.")
    addressing_style: Literal["path", "virtual"] = Field("path", description=(
        "path: <endpoint>/<bucket>/<key> (SeaweedFS, MinIO, Ceph); virtual: <bucket>.<endpoint>/<key> (AWS)."))

    @model_validator(mode="after")
    def _check(self) -> "S3Access":
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("s3 needs both accessKeyId and secretAccessKey, or neither (anonymous reads)")
        return self


def uri_shape(value: object) -> object:
    """A clear message for a URI of another scheme (the pattern alone would print itself)."""
    if isinstance(value, str):
        scheme, sep, _ = value.partition("://")
        if not sep or scheme not in ("s3", "http", "https", "pvc"):
            raise ValueError(f"expected s3://bucket/key, https://host/path or pvc://claim/path (got {value!r})")
    return value


def check_uri_access(uri: str | None, s3: S3Access | None) -> None:
    if s3 is not None and not (uri or "").startswith("s3://"):
        raise ValueError("s3 sets how an s3:// uri is fetched: it needs uri: s3://bucket/key")


class FetchSpec(SpecModel):
    """How files given by a uri (processor.model.uri, processor.crossmatch.uri) are fetched into the pod."""

    size_limit: str = Field("1Gi", pattern=BYTES_QUANTITY, description=(
        "Most bytes the fetched files may take together (a Kubernetes quantity): the size of the emptyDir "
        "they are fetched into; a larger object is refused before it is downloaded."))
    timeout_seconds: int = Field(600, ge=1, le=86_400, description=(
        "Deadline of the fetch of one file, every attempt included."))
    attempts: int = Field(5, ge=1, le=100, description=(
        "Attempts at a file while the store is unreachable, times out or answers 5xx (backoff 1, 2, 4... s, "
        "at most 30 s). A missing object, refused credentials or a wrong sha256 fail at once."))
