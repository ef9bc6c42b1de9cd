"""Models and catalogs from the real object store (SeaweedFS in the test environment).

`alertops fetch` (the pod's init container) and `alertops run` run as processes, with the
Secret values in the env vars the operator would render, against the real S3 API: a model put
there and a step that fetches and uses it; a wrong hash refused before anything loads it; an
unreachable store retried (and then reached); a rotated access key picked up on restart; a
presigned HTTP URL; a missing object; an object over the size limit; a catalog by s3:// and by
pvc://.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.step_support import ALERTS, MODEL, free_port, wait_until

MODEL_SHA = hashlib.sha256(MODEL.read_bytes()).hexdigest()
ROOT = Path(__file__).resolve().parents[2]
VSX = ROOT / "examples" / "data" / "catalogs" / "vsx_variables.csv"
SECRET = "model-store"


def _client(store: dict[str, str], service: str = "s3", key_id: str | None = None, secret: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, endpoint_url=store["endpoint"], region_name="us-east-1",
        aws_access_key_id=key_id or store["access_key_id"], aws_secret_access_key=secret or store["secret_access_key"],
        config=Config(connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 2},
                      s3={"addressing_style": "path"}))


@pytest.fixture(scope="module")
def bucket(s3_store: dict[str, str]) -> str:
    name = f"alertops-models-{uuid.uuid4().hex[:8]}"
    client = _client(s3_store)
    client.create_bucket(Bucket=name)
    client.upload_file(str(MODEL), name, "demo/0.1.0/demo_classifier.joblib")
    client.upload_file(str(VSX), name, "catalogs/vsx_variables.csv")
    yield name
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def _secret_env(key_id: str, secret: str) -> dict[str, str]:
    return {"ALERTOPS_SECRET_MODEL_STORE_ACCESS_KEY_ID": key_id, "ALERTOPS_SECRET_MODEL_STORE_SECRET_ACCESS_KEY": secret}


def _manifest(tmp: Path, *, uri: str, endpoint: str, sha256: str = MODEL_SHA, credentials: bool = True,
              fetch: dict[str, Any] | None = None) -> Path:
    s3: dict[str, Any] = {"endpoint": endpoint}
    if credentials:
        s3.update(accessKeyId={"name": SECRET, "key": "access-key-id"},
                  secretAccessKey={"name": SECRET, "key": "secret-access-key"})
    model: dict[str, Any] = {"uri": uri, "sha256": sha256, "classifierName": "alertops_demo_variable_stars",
                             "classifierVersion": "0.1.0"}
    if uri.startswith("s3://"):
        model["s3"] = s3
    spec: dict[str, Any] = {
        "source": {"files": {"path": str(ALERTS), "format": "ztf-avro", "batchSize": 4}},
        "processor": {"model": model},
        "sinks": [{"file": {"path": str(tmp / "out" / "probabilities.jsonl"), "format": "jsonl"}}],
        "deadLetter": {"file": {"path": str(tmp / "out" / "dead.jsonl")}},
    }
    if fetch:
        spec["fetch"] = fetch
    path = tmp / "step.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
                                    "metadata": {"name": "s3-classifier"}, "spec": spec}))
    return path


def _alertops(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ALERTOPS_SECRET_")}
    full.update(env)
    full.setdefault("ALERTOPS_HTTP_PORT", "0")
    return subprocess.run([sys.executable, "-m", "step_runtime", *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=ROOT)


def _fetch_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"ALERTOPS_FETCH_DIR": str(tmp / "fetched"), "ALERTOPS_TERMINATION_MESSAGE_PATH": str(tmp / "termination"),
            **extra}


def _fetched_files(tmp: Path) -> list[str]:
    folder = tmp / "fetched"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_model_put_in_the_store_is_fetched_and_classifies(s3_store, bucket, tmp_path):
    uri = f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib"
    manifest = _manifest(tmp_path, uri=uri, endpoint=s3_store["endpoint"])
    creds = _secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])
    # The pod's init container: fetch with the credentials.
    fetched = _alertops(["fetch", str(manifest)], {**_fetch_env(tmp_path), **creds})
    assert fetched.returncode == 0, fetched.stderr
    (name,) = _fetched_files(tmp_path)
    assert hashlib.sha256((tmp_path / "fetched" / name).read_bytes()).hexdigest() == MODEL_SHA
    log = [json.loads(line) for line in fetched.stderr.splitlines() if line.startswith("{")]
    assert any(e["msg"] == "fetched" and e["uri"] == uri and e["sha256"] == MODEL_SHA for e in log)
    # The step container: no object-store credentials at all, the model is already there.
    run = _alertops(["run", str(manifest)], _fetch_env(tmp_path))
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "probabilities.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and {r["classifier_version"] for r in rows} == {"0.1.0"}
    assert "messages in: 11  outputs: 9  dead-lettered: 2" in run.stdout


def test_a_local_run_fetches_by_itself(s3_store, bucket, tmp_path):
    manifest = _manifest(tmp_path, uri=f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib",
                         endpoint=s3_store["endpoint"])
    run = _alertops(["run", str(manifest)], {**_fetch_env(tmp_path),
                                             **_secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])})
    assert run.returncode == 0, run.stderr
    assert len(_fetched_files(tmp_path)) == 1 and "outputs: 9" in run.stdout


def test_a_wrong_hash_is_refused_before_anything_loads_it(s3_store, bucket, tmp_path):
    uri = f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib"
    wrong = "0" * 64
    manifest = _manifest(tmp_path, uri=uri, endpoint=s3_store["endpoint"], sha256=wrong)
    env = {**_fetch_env(tmp_path), **_secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])}
    res = _alertops(["fetch", str(manifest)], env)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert uri in line and MODEL_SHA in line and wrong in line and "Traceback" not in res.stderr
    assert (tmp_path / "termination").read_text().strip() in line
    assert _fetched_files(tmp_path) == []  # neither the file nor a temporary part is left
    run = _alertops(["run", str(manifest)], env)
    assert run.returncode == 2 and uri in run.stderr and MODEL_SHA in run.stderr and wrong in run.stderr
    assert not (tmp_path / "out" / "probabilities.jsonl").exists()


class _Forwarder:
    """A TCP forwarder to the store, listening only once `start` is called: a store that is
    unreachable first and comes back."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target, self.port = target, port
        self.server: socket.socket | None = None

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_an_unreachable_store_is_retried_then_given_up_with_a_reason(s3_store, bucket, tmp_path):
    port = free_port()  # nothing listens there
    uri = f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib"
    manifest = _manifest(tmp_path, uri=uri, endpoint=f"http://127.0.0.1:{port}",
                         fetch={"attempts": 3, "timeoutSeconds": 60})
    res = _alertops(["fetch", str(manifest)], {**_fetch_env(tmp_path), **_secret_env("k", "s")})
    assert res.returncode == 1
    retries = [json.loads(line) for line in res.stderr.splitlines() if '"fetch failed; retrying"' in line]
    assert [r["attempt"] for r in retries] == [1, 2] and [r["retry_in_s"] for r in retries] == [1.0, 2.0]
    last = res.stderr.strip().splitlines()[-1]
    assert f"cannot fetch {uri}: 3 attempt(s)" in last and f"127.0.0.1:{port}" in last
    assert (tmp_path / "termination").read_text().startswith("spec.processor.model.uri: cannot fetch")


def test_a_store_that_comes_back_during_the_retries_is_fetched_from(s3_store, bucket, tmp_path):
    host, _, store_port = s3_store["endpoint"].removeprefix("http://").partition(":")
    forwarder = _Forwarder((host, int(store_port)), free_port())
    uri = f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib"
    manifest = _manifest(tmp_path, uri=uri, endpoint=f"http://127.0.0.1:{forwarder.port}",
                         fetch={"attempts": 6, "timeoutSeconds": 120})
    env = {**os.environ, **_fetch_env(tmp_path), **_secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])}
    proc = subprocess.Popen([sys.executable, "-m", "step_runtime", "fetch", str(manifest)], stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first failed attempt, then the store comes back
            lines.append(line)
            if '"fetch failed; retrying"' in line:
                forwarder.start()
                break
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        forwarder.close()
    assert proc.returncode == 0, "".join(lines) + rest
    done = [json.loads(x) for x in rest.splitlines() if '"msg": "fetched"' in x]
    assert done and done[0]["attempts"] >= 2 and done[0]["sha256"] == MODEL_SHA


def test_a_rotated_access_key_is_picked_up_on_restart(s3_store, bucket, tmp_path):
    iam = _client(s3_store, "iam")
    user = f"reader-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read-models", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}))
    old = iam.create_access_key(UserName=user)["AccessKey"]
    try:
        manifest = _manifest(tmp_path, uri=f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib",
                             endpoint=s3_store["endpoint"])

        def fetch_with(key: dict[str, str]) -> subprocess.CompletedProcess[str]:
            shutil.rmtree(tmp_path / "fetched", ignore_errors=True)  # a new pod: a new emptyDir
            return _alertops(["fetch", str(manifest)],
                             {**_fetch_env(tmp_path), **_secret_env(key["AccessKeyId"], key["SecretAccessKey"])})

        assert fetch_with(old).returncode == 0
        # Rotate: a new key, the old one deleted (the Secret gets the new values).
        new = iam.create_access_key(UserName=user)["AccessKey"]
        iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
        stale = wait_until(lambda: (r := fetch_with(old)).returncode == 2 and r, 30, "the old key to be refused")
        line = stale.stderr.strip().splitlines()[-1]
        assert "refused" in line and f"Secret '{SECRET}'" in line and "restart" in line
        # The restarted pod reads the rotated Secret: the new key.
        fresh = fetch_with(new)
        assert fresh.returncode == 0, fresh.stderr
    finally:
        for key in iam.list_access_keys(UserName=user).get("AccessKeyMetadata", []):
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        iam.delete_user_policy(UserName=user, PolicyName="read-models")
        iam.delete_user(UserName=user)


def test_a_presigned_https_style_url_is_fetched_over_plain_http(s3_store, bucket, tmp_path):
    url = _client(s3_store).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "demo/0.1.0/demo_classifier.joblib"}, ExpiresIn=600)
    assert url.startswith("http://")
    manifest = _manifest(tmp_path, uri=url, endpoint=s3_store["endpoint"])
    run = _alertops(["run", str(manifest)], _fetch_env(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "outputs: 9" in run.stdout


def test_a_missing_object_and_an_oversized_one_fail_at_once(s3_store, bucket, tmp_path):
    creds = _secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])
    missing = _manifest(tmp_path, uri=f"s3://{bucket}/demo/9.9.9/nothing.joblib", endpoint=s3_store["endpoint"])
    res = _alertops(["fetch", str(missing)], {**_fetch_env(tmp_path), **creds})
    assert res.returncode == 2 and "does not exist" in res.stderr and "retrying" not in res.stderr
    big = _manifest(tmp_path, uri=f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib", endpoint=s3_store["endpoint"],
                    fetch={"sizeLimit": "10Ki"})
    res = _alertops(["fetch", str(big)], {**_fetch_env(tmp_path), **creds})
    assert res.returncode == 2 and "more than spec.fetch.sizeLimit allows (10.0 KiB)" in res.stderr
    assert _fetched_files(tmp_path) == []


def _crossmatch_manifest(tmp: Path, catalog: dict[str, Any]) -> Path:
    spec = {"source": {"files": {"path": str(ALERTS), "format": "ztf-avro"}},
            "processor": {"crossmatch": {**catalog, "idColumn": "Name", "raColumn": "RAJ2000", "decColumn": "DEJ2000",
                                         "columns": ["Type"], "radiusArcsec": 2.0}},
            "sinks": [{"file": {"path": str(tmp / "out" / "matches.jsonl"), "format": "jsonl"}}],
            "deadLetter": {"file": {"path": str(tmp / "out" / "dead.jsonl")}}}
    path = tmp / "xm.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
                                    "metadata": {"name": "xm"}, "spec": spec}))
    return path


def test_a_catalog_by_s3_uri_and_by_pvc_uri(s3_store, bucket, tmp_path):
    sha = hashlib.sha256(VSX.read_bytes()).hexdigest()
    creds = _secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])
    s3 = {"endpoint": s3_store["endpoint"], "accessKeyId": {"name": SECRET, "key": "access-key-id"},
          "secretAccessKey": {"name": SECRET, "key": "secret-access-key"}}
    by_s3 = _crossmatch_manifest(tmp_path, {"uri": f"s3://{bucket}/catalogs/vsx_variables.csv", "s3": s3,
                                            "sha256": sha})
    run = _alertops(["run", str(by_s3)], {**_fetch_env(tmp_path), **creds})
    assert run.returncode == 0, run.stderr
    s3_rows = (tmp_path / "out" / "matches.jsonl").read_text()
    # The same catalog on a "claim" (the folder the operator mounts it at), pinned wrong: refused.
    claim = tmp_path / "pvc" / "star-catalogs"
    claim.mkdir(parents=True)
    shutil.copy(VSX, claim / "vsx.csv")
    shutil.rmtree(tmp_path / "out")
    by_pvc = _crossmatch_manifest(tmp_path, {"uri": "pvc://star-catalogs/vsx.csv"})
    run = _alertops(["run", str(by_pvc)], {"ALERTOPS_PVC_ROOT": str(tmp_path / "pvc")})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "matches.jsonl").read_text() == s3_rows
    wrong = _crossmatch_manifest(tmp_path, {"uri": "pvc://star-catalogs/vsx.csv", "sha256": "1" * 64})
    run = _alertops(["run", str(wrong)], {"ALERTOPS_PVC_ROOT": str(tmp_path / "pvc")})
    assert run.returncode == 2 and "pvc://star-catalogs/vsx.csv" in run.stderr and sha in run.stderr


def test_a_training_set_catalog_from_the_store(s3_store, bucket, tmp_path):
    sha = hashlib.sha256(VSX.read_bytes()).hexdigest()
    build = {"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild", "metadata": {"name": "from-s3"},
             "spec": {"source": {"path": str(VSX), "idColumn": "vsx_oid", "raColumn": "RAJ2000",
                                 "decColumn": "DEJ2000"},
                      "catalogs": [{"name": "vsx", "uri": f"s3://{bucket}/catalogs/vsx_variables.csv", "sha256": sha,
                                    "s3": {"endpoint": s3_store["endpoint"],
                                           "accessKeyId": {"name": SECRET, "key": "access-key-id"},
                                           "secretAccessKey": {"name": SECRET, "key": "secret-access-key"}},
                                    "idColumn": "vsx_oid", "raColumn": "RAJ2000", "decColumn": "DEJ2000",
                                    "labelColumn": "Type", "radiusArcsec": 1.0}],
                      "output": {"path": str(tmp_path / "set.csv"), "format": "csv"}}}
    manifest = tmp_path / "build.yaml"
    manifest.write_text(yaml.safe_dump(build))
    creds = _secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])
    res = _alertops(["build", str(manifest)], {**_fetch_env(tmp_path), **creds})
    assert res.returncode == 0, res.stderr
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "set.csv")) > 400  # the 439 VSX stars, each matching itself
    assert len(_fetched_files(tmp_path)) == 1
    build["spec"]["catalogs"][0]["sha256"] = "2" * 64
    manifest.write_text(yaml.safe_dump(build))
    res = _alertops(["build", str(manifest)], {**_fetch_env(tmp_path), **creds})
    assert res.returncode == 2 and sha in res.stderr and "2" * 64 in res.stderr


def test_the_step_turns_ready_only_after_the_pinned_model_loaded(s3_store, bucket, kafka_bootstrap, tmp_path):
    """Run locally against a Kafka source, the step fetches first: while the store is away it has
    no endpoint to answer a probe, and it answers /readyz 200 only after the model is in place."""
    from tests.integration.step_support import Runtime, create_topic, unique

    topic = unique("features")
    create_topic(kafka_bootstrap, topic, partitions=1)
    host, _, store_port = s3_store["endpoint"].removeprefix("http://").partition(":")
    forwarder = _Forwarder((host, int(store_port)), free_port())
    manifest = _manifest(tmp_path, uri=f"s3://{bucket}/demo/0.1.0/demo_classifier.joblib",
                         endpoint=f"http://127.0.0.1:{forwarder.port}", fetch={"attempts": 8, "timeoutSeconds": 180})
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["source"] = {"kafka": {"bootstrapServers": kafka_bootstrap, "topics": [topic], "groupId": topic,
                                       "format": "json"}}
    doc["spec"]["processor"]["model"]["featuresFrom"] = "message"
    doc["spec"].pop("deadLetter")
    manifest.write_text(yaml.safe_dump(doc))
    log = tmp_path / "run.log"
    run = Runtime(manifest, "unused", "unused", log,
                  env={**_fetch_env(tmp_path), **_secret_env(s3_store["access_key_id"], s3_store["secret_access_key"])})
    try:
        wait_until(lambda: '"fetch failed; retrying"' in log.read_text(), 60, "a failed fetch attempt")
        assert run.get("/readyz")[0] == 0  # no endpoint yet: the step has not started
        forwarder.start()
        wait_until(lambda: run.get("/readyz")[0] == 200, 120, "/readyz 200 once the model loaded")
        text = log.read_text()
        assert text.index('"msg": "fetched"') < text.index('"msg": "step starting"')
    finally:
        run.stop()
        forwarder.close()
