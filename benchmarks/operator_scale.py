"""Operator at scale: 200 PipelineSteps applied at once on the test cluster (kwok nodes).

Measures
  all_ready_s            seconds from `kubectl apply` of all steps until every one is Ready
                         (with observedGeneration current);
  peak_rss_mb            the operator process's peak resident memory over the whole run;
  idle_requests_per_min  API requests the operator makes during one idle minute, counted by the
                         API server itself: the operator runs as its ServiceAccount (the RBAC of
                         deploy/, applied first), and a FlowSchema matching that user makes the
                         server count its requests in
                         apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}.
                         (Watch re-connections count; an open watch does not.) The whole API
                         server's rate is printed beside it for context.

Usage (test environment up, `eval "$(scripts/testenv env)"`):
  ~/.cache/alertops/venv/bin/python benchmarks/operator_scale.py [--steps 200] [--idle-seconds 60]
Last line: RESULT operator steps=200 all_ready_s=<t> peak_rss_mb=<m> idle_requests_per_min=<q>
"""
from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting for Ready after this")
    args = parser.parse_args()
    kubeconfig, binary = os.environ.get("KUBECONFIG"), os.environ.get("ALERTOPS_KUBECTL")
    if not kubeconfig or not binary:
        print("operator_scale: run `eval \"$(scripts/testenv env)\"` first (KUBECONFIG, ALERTOPS_KUBECTL)",
              file=sys.stderr)
        return 2
    kubectl = Kubectl(binary, kubeconfig)
    # The install of deploy/ (CRDs, RBAC, ServiceAccount); the operator then runs locally as
    # that ServiceAccount, so the API server can count its requests.
    kubectl.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "deploy"), timeout=120)
    kubectl.run("wait", "--for=condition=Established", "crd/pipelinesteps.alertops.io", "--timeout=60s", timeout=90)
    kubectl.run("apply", "-f", "-", input=FLOW_SCHEMA_MANIFEST)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    nodes = add_nodes(kubectl, args.steps)
    work = Path(tempfile.mkdtemp(prefix="alertops-bench-"))
    sa_config = service_account_kubeconfig(kubectl, work / "operator-kubeconfig")
    op = OperatorProcess(str(sa_config), "bench", "--log-format", "json", scope=("--namespace", ns)).start()
    sampler = RssSampler(op.proc.pid)
    sampler.start()
    try:
        manifest = "\n---\n".join(step_manifest(f"bench-{i:03d}") for i in range(args.steps))
        start = time.monotonic()
        kubectl.run("apply", "-n", ns, "-f", "-", input=manifest, timeout=300)
        ready = 0
        while ready < args.steps:
            if time.monotonic() - start > args.timeout:
                print(f"operator_scale: only {ready}/{args.steps} Ready after {args.timeout}s; "
                      f"see {op.log_path}", file=sys.stderr)
                return 1
            ready = all_ready(kubectl, ns, args.steps)
            print(f"  {time.monotonic() - start:6.1f}s  ready {ready}/{args.steps}", file=sys.stderr)
            time.sleep(1.0)  # sampling interval of the progress poll
        all_ready_s = time.monotonic() - start
        # Let the last status writes and timers settle before measuring the idle rate.
        time.sleep(10.0)  # settle time before the idle window, part of the measurement protocol
        ours0, total0 = request_counts(kubectl)
        time.sleep(args.idle_seconds)  # the idle window being measured
        ours1, total1 = request_counts(kubectl)
        per_min = 60.0 / args.idle_seconds
        idle_ours = (ours1 - ours0) * per_min
        idle_total = (total1 - total0) * per_min
        peak_mb = sampler.peak_kb / 1024
        if ours1 == 0:
            print(f"operator_scale: no request was counted for FlowSchema {FLOW_SCHEMA}", file=sys.stderr)
            return 1
        print(f"steps={args.steps} all_ready_s={all_ready_s:.1f} peak_rss_mb={peak_mb:.0f} "
              f"idle requests/min: operator {idle_ours:.1f}, whole API server {idle_total:.0f} "
              f"(operator total so far {ours1:.0f})", file=sys.stderr)
        print(f"RESULT operator steps={args.steps} all_ready_s={all_ready_s:.1f} peak_rss_mb={peak_mb:.0f} "
              f"idle_requests_per_min={idle_ours:.1f}")
        return 0
    finally:
        sampler.stop()
        op.stop()
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        kubectl.run("delete", "node", *nodes, "--wait=false", check=False)
        kubectl.run("delete", "flowschema", FLOW_SCHEMA, "--wait=false", check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
