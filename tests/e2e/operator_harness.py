"""Helpers of the operator's end-to-end tests: the real kubectl, the operator as a local
process, and polling with deadlines (never sleeps as synchronisation)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = Path.home() / ".cache" / "alertops" / "e2e-logs"
T = TypeVar("T")


class Kubectl:
    """The real kubectl of the test environment, bound to one kubeconfig."""

    def __init__(self, binary: str, kubeconfig: str) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with `check`, a non-zero exit raises with kubectl's stderr."""
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, "--request-timeout=30s", *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        """`kubectl ... -o json`, parsed."""
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def apply(self, manifest: str, namespace: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of a YAML text."""
        return self.run("apply", "-n", namespace, "-f", "-", *extra, input=manifest)


def pg_oids(dsn: str, table: str) -> set[str]:
    """The distinct oids in a PostgreSQL table (empty while the step has not created it)."""
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (table,))
            if cur.fetchone()[0] is None:
                return set()
            cur.execute(f'SELECT DISTINCT oid FROM "{table}"')
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def wait_for(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)  # polling interval of a deadline-bounded wait, not synchronisation
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """`alertops operator` as a local subprocess with the test kubeconfig."""

    def __init__(self, kubeconfig: str, name: str, *extra: str, env: dict[str, str] | None = None,
                 scope: tuple[str, ...] = ("--all-namespaces",)) -> None:
        self.kubeconfig, self.name, self.extra, self.scope = kubeconfig, name, extra, scope
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"operator-{name}.log"
        self.log_path.write_bytes(b"")  # each run's log starts empty: tests read it

    def start(self, wait: bool = True) -> "OperatorProcess":
        """Start the operator; with `wait`, return once its liveness endpoint answers."""
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "step_runtime", "operator", *self.scope,
             "--liveness-port", str(self.liveness_port), "--metrics-port", str(self.metrics_port), *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        log.close()
        if wait:
            wait_for(self.alive, 60, f"operator liveness on :{self.liveness_port} (log {self.log_path})")
        return self

    def alive(self) -> bool:
        """Whether the liveness endpoint answers 200."""
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; see {self.log_path}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        """The operator's Prometheus metrics text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill would do."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the operator's log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """A status condition of `obj` by type ({} when absent)."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


# Resources of tests that run an operator of their own carry this label; the session operator's
# selector excludes them, so two operators never handle the same resource.
PRIVATE_LABELS = {"e2e.alertops.io/operator": "private"}
PRIVATE_SELECTOR = ("--selector", "e2e.alertops.io/operator=private")
SESSION_SELECTOR = ("--selector", "e2e.alertops.io/operator!=private")


def step_manifest(name: str, replicas: int = 1, radius: float = 1.5, suspend: bool = False,
                  image: str = "ghcr.io/alertops/alertops:0.1.0", labels: dict[str, str] | None = None) -> str:
    """A small valid PipelineStep (Kafka -> features -> PostgreSQL) as YAML."""
    label_lines = "".join(f"\n    {k}: {v}" for k, v in (labels or {}).items()) or " {}"
    return f"""
apiVersion: alertops.io/v1alpha1
kind: PipelineStep
metadata:
  name: {name}
  labels:{label_lines}
spec:
  image: {image}
  replicas: {replicas}
  suspend: {str(suspend).lower()}
  source:
    kafka:
      bootstrapServers: kafka:9092
      topics: [ztf-alerts]
      groupId: {name}
  processor:
    crossmatch:
      catalog: /catalogs/variables.parquet
      idColumn: source_id
      radiusArcsec: {radius}
  sinks:
    - postgres:
        dsn: {{name: pg, key: dsn}}
        table: xmatch
        key: [oid]
"""


OPERATOR_SA = ("alertops-system", "alertops-operator")


def service_account_kubeconfig(kubectl: Kubectl, path: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (deploy/ must be applied).

    Running the operator with it proves the shipped RBAC is enough, and lets the API server
    attribute requests to the operator (its user) in flow-control metrics.
    """
    import yaml

    namespace, name = OPERATOR_SA
    token = kubectl.run("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
    }
    path.write_text(json.dumps(config))
    return path


class ExtraApiServer:
    """A second kube-apiserver of the shared test cluster: the same binary, flags, certificates
    and etcd as the test environment's, on a port of its own.

    Kubernetes runs several API servers over one etcd (that is how it is made highly
    available), so this one can be killed and restarted while every other client of the cluster
    (controllers, kwok, other tests) keeps using the test environment's server undisturbed.
    """

    def __init__(self, kubeconfig: str) -> None:
        pid_file = Path(kubeconfig).parent / "kube-apiserver.pid"
        try:
            pid = pid_file.read_text().strip()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError as exc:
            raise LookupError(f"the test environment's kube-apiserver is not on this machine ({pid_file}: {exc})") from exc
        self.port = free_port()
        self.argv = [a if not a.startswith("--secure-port=") else f"--secure-port={self.port}" for a in argv]
        if self.argv == argv:
            raise LookupError(f"the test environment's kube-apiserver has no --secure-port flag: {argv}")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / "extra-kube-apiserver.log"
        self.log_path.write_bytes(b"")  # each test's log starts empty
        self.kubeconfig = LOG_DIR / "extra-kube-apiserver.kubeconfig"
        text = Path(kubeconfig).read_text()
        url = re.search(r"server: (https://127\.0\.0\.1:\d+)", text)
        if url is None:
            raise LookupError(f"{kubeconfig} names no https://127.0.0.1 server")
        self.kubeconfig.write_text(text.replace(url.group(1), f"https://127.0.0.1:{self.port}"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, kubectl_binary: str, timeout: float = 120) -> "ExtraApiServer":
        """Start the server and return once it answers /readyz."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        probe = Kubectl(kubectl_binary, str(self.kubeconfig))
        wait_for(lambda: self._exited() or probe.run("get", "--raw", "/readyz", check=False, timeout=20).returncode == 0,
                 timeout, f"the extra kube-apiserver on :{self.port} to be ready (log {self.log_path})")
        return self

    def _exited(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the extra kube-apiserver exited ({self.proc.returncode}); see {self.log_path}")
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: open connections are reset."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
