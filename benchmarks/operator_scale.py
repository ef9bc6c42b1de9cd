"""Operator at scale: N PipelineSteps applied at once on the test cluster (kwok nodes), for
several N one after the other in the same run (default 200 then 1,000), each with a fresh
operator and namespace.

Measures, per run
  submitted_s            seconds to create the N PipelineSteps (16 requests at a time);
  applied_s              seconds from the first creation until every Deployment exists (the
                         operator's own work, concurrent with the creations);
  all_ready_s            ... until every step is Ready with observedGeneration current (the
                         control plane and kwok creating and "running" the pods dominate it);
  peak_rss_mb            the operator process's peak resident memory over the whole run;
  idle_cpu_pct           the operator's CPU time over one idle window, in % of one core;
  idle_round_ms          mean duration of one round of the periodic check in that window (the
                         operator's own alertops_operator_check_round_seconds);
  idle_requests_per_min  API requests the operator makes during the idle window, counted by the
                         API server itself: the operator runs as its ServiceAccount (the RBAC of
                         deploy/, applied first), and a FlowSchema matching that user makes the
                         server count its requests in
                         apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}.
                         (Watch re-connections count; an open watch does not.) The whole API
                         server's rate is printed beside it for context.
and, for each run after the first, the per-step cost (value / N) as a ratio to the first run's.

Usage (test environment up, `eval "$(scripts/testenv env)"`):
  ~/.cache/alertops/venv/bin/python benchmarks/operator_scale.py [--steps 200,1000] [--idle-seconds 60]
Output: one `RESULT operator steps=N applied_s=... all_ready_s=... peak_rss_mb=... idle_cpu_pct=...
idle_round_ms=... idle_requests_per_min=...` line per run, then
`RESULT operator_ratio steps=1000/200 applied_s_per_step_ratio=... ...`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from operator_harness import (
    OPERATOR_SA,
    REPO,
    Kubectl,
    OperatorProcess,
    condition,
    service_account_kubeconfig,
    step_manifest,
)

FLOW_SCHEMA = "alertops-operator-benchmark"
METRIC = re.compile(r'^(?P<name>apiserver_request_total|apiserver_flowcontrol_dispatched_requests_total)'
                    r'\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
FLOW_SCHEMA_MANIFEST = f"""
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: {FLOW_SCHEMA}
spec:
  priorityLevelConfiguration: {{name: workload-high}}
  matchingPrecedence: 100
  distinguisherMethod: {{type: ByUser}}
  rules:
    - subjects:
        - kind: ServiceAccount
          serviceAccount: {{name: {OPERATOR_SA[1]}, namespace: {OPERATOR_SA[0]}}}
      resourceRules:
        - {{verbs: ["*"], apiGroups: ["*"], resources: ["*"], clusterScope: true, namespaces: ["*"]}}
      nonResourceRules:
        - {{verbs: ["*"], nonResourceURLs: ["*"]}}
"""


class RssSampler(threading.Thread):
    """Samples VmRSS of a process every 0.2 s and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()


def request_counts(kubectl: Kubectl) -> tuple[float, float]:
    """(requests of the operator's ServiceAccount, all requests) the API server has served so far."""
    ours = total = 0.0
    for line in kubectl.run("get", "--raw", "/metrics", timeout=60).stdout.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if m["name"] == "apiserver_request_total":
            total += float(m["value"])
        elif labels.get("flow_schema") == FLOW_SCHEMA:
            ours += float(m["value"])
    return ours, total


def node_manifest(name: str) -> str:
    """A kwok-managed fake node (the kwok controller fills in its status: 110 pods each)."""
    return f"""
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations: {{kwok.x-k8s.io/node: fake}}
  labels: {{type: kwok, kubernetes.io/hostname: {name}, alertops.io/benchmark: operator-scale}}
spec:
  taints: []
"""


def add_nodes(kubectl: Kubectl, pods: int) -> list[str]:
    """Enough extra fake nodes for `pods` pods (the test cluster has one node of 110 pods)."""
    names = [f"bench-node-{i}" for i in range(pods // 100 + 1)]
    kubectl.run("apply", "-f", "-", input="\n---\n".join(node_manifest(n) for n in names))
    return names


def all_ready(kubectl: Kubectl, ns: str, steps: int) -> int:
    items = kubectl.json("get", "pipelinesteps", "-n", ns)["items"]
    return sum(1 for s in items if condition(s, "Ready").get("status") == "True"
               and (s.get("status") or {}).get("observedGeneration") == s["metadata"]["generation"])


def deployments(kubectl: Kubectl, ns: str) -> int:
    """How many Deployments `ns` holds: a list of one item, whose remainingItemCount says the
    rest. Listing them all every half second (`-o name` still makes the API server serialise
    every object) loaded the API server being measured with work of the benchmark's own."""
    page = json.loads(kubectl.run("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments?limit=1",
                                  timeout=120).stdout)
    return len(page.get("items") or []) + int((page.get("metadata") or {}).get("remainingItemCount") or 0)


def submit(kubeconfig: str, ns: str, steps: int) -> float:
    """Create `steps` PipelineSteps, 16 requests at a time (kubectl apply sends one at a time,
    which takes minutes for 1,000 on this machine: longer than the operator's work it
    would be measuring). Returns the monotonic time when the last one was created."""
    from concurrent.futures import ThreadPoolExecutor

    import yaml
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    api = client.CustomObjectsApi(client.ApiClient(configuration))

    def create(i: int) -> None:
        body = yaml.safe_load(step_manifest(f"bench-{i:04d}"))
        api.create_namespaced_custom_object("alertops.io", "v1alpha1", ns, "pipelinesteps", body,
                                            _request_timeout=60)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(steps)))
    return time.monotonic()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_stats(op: OperatorProcess) -> tuple[float, float]:
    """(rounds, seconds) of the periodic check so far, from the operator's own metrics."""
    count = total = 0.0
    for line in op.metrics().splitlines():
        if line.startswith("alertops_operator_check_round_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith("alertops_operator_check_round_seconds_sum"):
            total = float(line.split()[-1])
    return count, total


def wait_gone(kubectl: Kubectl, ns: str, timeout: float) -> None:
    """Wait (with a deadline) until a deleted namespace is gone, so runs do not overlap."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kubectl.run("get", "namespace", ns, "--ignore-not-found", "-o", "name", check=False).stdout.strip() == "":
            return
        time.sleep(2.0)  # polling interval of a deadline-bounded wait
    print(f"operator_scale: namespace {ns} still terminating after {timeout}s", file=sys.stderr)


def run(kubectl: Kubectl, steps: int, idle_seconds: float, timeout: float) -> dict[str, float] | None:
    """One measurement: `steps` PipelineSteps applied at once to a fresh operator."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    nodes = add_nodes(kubectl, steps)
    work = Path(tempfile.mkdtemp(prefix="alertops-bench-"))
    sa_config = service_account_kubeconfig(kubectl, work / "operator-kubeconfig")
    op = OperatorProcess(str(sa_config), f"bench-{steps}", "--log-format", "json", scope=("--namespace", ns)).start()
    assert op.proc is not None
    sampler = RssSampler(op.proc.pid)
    sampler.start()
    try:
        start = time.monotonic()
        submitted_s = submit(kubectl.kubeconfig, ns, steps) - start
        applied_s = ready = 0.0
        while ready < steps:
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                print(f"operator_scale: only {ready:.0f}/{steps} Ready after {timeout}s; see {op.log_path}",
                      file=sys.stderr)
                return None
            if not applied_s:
                if deployments(kubectl, ns) == steps:
                    applied_s = time.monotonic() - start
                print(f"  {elapsed:6.1f}s  applying", file=sys.stderr)
                time.sleep(0.5)  # sampling interval of the progress poll
                continue
            ready = all_ready(kubectl, ns, steps)
            print(f"  {elapsed:6.1f}s  ready {ready:.0f}/{steps}", file=sys.stderr)
            time.sleep(1.0)  # sampling interval of the progress poll
        all_ready_s = time.monotonic() - start
        # Let the last status writes settle before measuring the idle window.
        time.sleep(10.0)  # settle time before the idle window, part of the measurement protocol
        ours0, total0 = request_counts(kubectl)
        cpu0, (rounds0, round_s0) = cpu_seconds(op.proc.pid), round_stats(op)
        time.sleep(idle_seconds)  # the idle window being measured
        cpu1, (rounds1, round_s1) = cpu_seconds(op.proc.pid), round_stats(op)
        ours1, total1 = request_counts(kubectl)
        if ours1 == 0:
            print(f"operator_scale: no request was counted for FlowSchema {FLOW_SCHEMA}", file=sys.stderr)
            return None
        per_min = 60.0 / idle_seconds
        result = {
            "steps": steps, "submitted_s": submitted_s, "applied_s": applied_s, "all_ready_s": all_ready_s,
            "peak_rss_mb": sampler.peak_kb / 1024,
            "idle_cpu_pct": 100.0 * (cpu1 - cpu0) / idle_seconds,
            "idle_round_ms": 1000.0 * (round_s1 - round_s0) / max(rounds1 - rounds0, 1),
            "idle_requests_per_min": (ours1 - ours0) * per_min,
        }
        print(f"steps={steps} whole API server idle requests/min {(total1 - total0) * per_min:.0f}", file=sys.stderr)
        print("RESULT operator " + " ".join(f"{k}={v:.0f}" if k == "steps" else f"{k}={v:.2f}"
                                            for k, v in result.items()), flush=True)
        return result
    finally:
        sampler.stop()
        op.stop()
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        kubectl.run("delete", "node", *nodes, "--wait=false", check=False)
        shutil.rmtree(work, ignore_errors=True)
        wait_gone(kubectl, ns, timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="200,1000",
                        help="comma-separated sizes, run one after the other (default 200,1000)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting for Ready after this")
    args = parser.parse_args()
    kubeconfig, binary = os.environ.get("KUBECONFIG"), os.environ.get("ALERTOPS_KUBECTL")
    if not kubeconfig or not binary:
        print("operator_scale: run `eval \"$(scripts/testenv env)\"` first (KUBECONFIG, ALERTOPS_KUBECTL)",
              file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.steps.split(",")]
    kubectl = Kubectl(binary, kubeconfig)
    # The install of deploy/ (CRDs, RBAC, ServiceAccount); the operator then runs locally as
    # that ServiceAccount, so the API server can count its requests.
    kubectl.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "deploy"), timeout=120)
    kubectl.run("wait", "--for=condition=Established", "crd/pipelinesteps.alertops.io", "--timeout=60s", timeout=90)
    kubectl.run("apply", "-f", "-", input=FLOW_SCHEMA_MANIFEST)
    results = []
    try:
        for steps in sizes:
            result = run(kubectl, steps, args.idle_seconds, args.timeout)
            if result is None:
                return 1
            results.append(result)
    finally:
        kubectl.run("delete", "flowschema", FLOW_SCHEMA, "--wait=false", check=False)
    base = results[0]
    for other in results[1:]:
        # Per-step cost of the bigger run over the first one's (1.0: linear scaling).
        ratios = {f"{k}_per_step_ratio": (other[k] / other["steps"]) / (base[k] / base["steps"])
                  for k in ("submitted_s", "applied_s", "all_ready_s", "peak_rss_mb", "idle_round_ms")
                  if base[k] > 0}
        print(f"RESULT operator_ratio steps={other['steps']:.0f}/{base['steps']:.0f} "
              + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
