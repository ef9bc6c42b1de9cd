"""The volumes of a step's pod and its fetch init container, as pure functions.

- `spec.volumes` / `spec.volumeMounts`: the user's PersistentVolumeClaims, ConfigMaps, Secrets
  and emptyDirs, rendered as written (only the kinds the restricted Pod Security Standard
  allows exist in the spec).
- `pvc://claim/path` files: the claim is mounted read-only under /var/lib/alertops/pvc/<claim>.
- `s3://` and `http(s)://` files: an init container `fetch` (same image, `alertops fetch`)
  downloads them into the emptyDir `fetched` (sizeLimit `spec.fetch.sizeLimit`) before the
  step container starts; only it gets the object-store credentials, and the step container
  mounts the folder read-only.
"""
from __future__ import annotations

import hashlib
from typing import Any

from pipeline_operator.children import (
    CONFIG_DIR,
    STEP_CONFIG_FILE,
    TERMINATION_LOG,
    base_env,
    container_security_context,
    secret_env,
)
from pipeline_operator.rollout import FETCH_CONTAINER
from step_runtime.spec.pipelinestep import RESERVED_VOLUME_PREFIX, PipelineStepSpec, Volume
from step_runtime.storage.uri import FETCH_DIR_ENV, POD_FETCH_DIR, POD_PVC_ROOT, PVC_ROOT_ENV, parse_uri

FETCHED_VOLUME = "fetched"


def fetched_uris(spec: PipelineStepSpec) -> list[str]:
    """The URIs the fetch init container downloads (s3://, http(s)://)."""
    return [s.uri for _, s in spec.file_sources() if s.uri and parse_uri(s.uri).fetched]


def pvc_claims(spec: PipelineStepSpec) -> list[str]:
    """The claims pvc:// URIs read from, in order, without repeats."""
    claims: list[str] = []
    for _, s in spec.file_sources():
        if s.uri and not parse_uri(s.uri).fetched and parse_uri(s.uri).authority not in claims:
            claims.append(parse_uri(s.uri).authority)
    return claims


def pvc_volume_name(claim: str) -> str:
    """A volume name (a DNS label, at most 63) for a pvc:// claim, unique per claim."""
    name = f"{RESERVED_VOLUME_PREFIX}{claim}".replace(".", "-")
    if len(name) <= 63 and name == f"{RESERVED_VOLUME_PREFIX}{claim}":
        return name
    return f"{name[:54].rstrip('-')}-{hashlib.sha256(claim.encode()).hexdigest()[:8]}"


def _user_volume(v: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name}
    if v.persistent_volume_claim is not None:
        out["persistentVolumeClaim"] = {"claimName": v.persistent_volume_claim.claim_name,
                                        "readOnly": v.persistent_volume_claim.read_only}
    elif v.config_map is not None:
        out["configMap"] = {"name": v.config_map.name, "optional": v.config_map.optional}
    elif v.secret is not None:
        out["secret"] = {"secretName": v.secret.secret_name, "optional": v.secret.optional}
    elif v.empty_dir is not None:
        out["emptyDir"] = {k: val for k, val in (("sizeLimit", v.empty_dir.size_limit),
                                                  ("medium", v.empty_dir.medium or None)) if val}
    return out


def file_volumes(spec: PipelineStepSpec) -> list[dict[str, Any]]:
    """The pod's volumes besides the manifest and /tmp: the user's, pvc:// claims, fetched files."""
    volumes = [_user_volume(v) for v in spec.volumes]
    volumes += [{"name": pvc_volume_name(c), "persistentVolumeClaim": {"claimName": c, "readOnly": True}}
                for c in pvc_claims(spec)]
    if fetched_uris(spec):
        volumes.append({"name": FETCHED_VOLUME, "emptyDir": {"sizeLimit": spec.fetch.size_limit}})
    return volumes


def _pvc_mounts(spec: PipelineStepSpec) -> list[dict[str, Any]]:
    return [{"name": pvc_volume_name(c), "mountPath": f"{POD_PVC_ROOT}/{c}", "readOnly": True}
            for c in pvc_claims(spec)]


def step_mounts(spec: PipelineStepSpec) -> list[dict[str, Any]]:
    """Mounts of the step container besides the manifest and /tmp."""
    mounts = []
    for m in spec.volume_mounts:
        mount: dict[str, Any] = {"name": m.name, "mountPath": m.mount_path, "readOnly": m.read_only}
        if m.sub_path:
            mount["subPath"] = m.sub_path
        mounts.append(mount)
    mounts += _pvc_mounts(spec)
    if fetched_uris(spec):
        mounts.append({"name": FETCHED_VOLUME, "mountPath": POD_FETCH_DIR, "readOnly": True})
    return mounts


def file_env(spec: PipelineStepSpec) -> list[dict[str, Any]]:
    """Where the runtime finds fetched files and pvc:// claims (only when the spec has them)."""
    env = []
    if fetched_uris(spec):
        env.append({"name": FETCH_DIR_ENV, "value": POD_FETCH_DIR})
    if pvc_claims(spec):
        env.append({"name": PVC_ROOT_ENV, "value": POD_PVC_ROOT})
    return env


def step_secret_refs(spec: PipelineStepSpec) -> list[Any]:
    """The Secret keys the step container reads: every one but the object-store credentials,
    which only the fetch init container gets (unless the spec uses the same key elsewhere too)."""
    without_s3 = spec.model_copy(deep=True)
    for _, settings in without_s3.file_sources():
        settings.s3 = None
    return without_s3.secret_refs()


def fetch_init_containers(spec: PipelineStepSpec, image: str, pull_policy: str,
                          resources: dict[str, Any]) -> list[dict[str, Any]]:
    """The init container downloading s3:// and http(s):// files; none when there is nothing to fetch.

    It gets the step container's resources, so the pod asks the scheduler for no more than
    before, and it writes its one-line error to the termination log, where the operator reads
    it (`FetchFailed`, `ChecksumMismatch`).
    """
    if not fetched_uris(spec):
        return []
    env = base_env() + file_env(spec) + [{"name": "ALERTOPS_TERMINATION_MESSAGE_PATH", "value": TERMINATION_LOG}]
    env += secret_env(spec.fetch_secret_refs())
    return [{
        "name": FETCH_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["alertops", "fetch", f"{CONFIG_DIR}/{STEP_CONFIG_FILE}"],
        "env": env,
        "resources": resources,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": FETCHED_VOLUME, "mountPath": POD_FETCH_DIR},
            *_pvc_mounts(spec),
        ],
    }]
