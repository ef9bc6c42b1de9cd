"""periodic.round_work: which resources one round of the level-based check looks at.

kopf's indexes are read-only mappings of key -> list of entries; plain dicts stand in for
them here (round_work only reads them).
"""
from __future__ import annotations

from pipeline_operator import render_pipelinestep
from pipeline_operator.children import CONFIG_HASH_ANNOTATION, RenderSettings
from pipeline_operator.periodic import HANDLED, KOPF, Indexes, round_work
from pipeline_operator.resync import Freshness

SETTINGS = RenderSettings()


def step(name: str, handled: bool = True, version: str = "1") -> dict:
    status = {KOPF: {HANDLED: "{}"}} if handled else {}
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                         "resourceVersion": version},
            "spec": {"source": {"files": {"path": "/in"}}, "processor": {"features": {}},
                     "sinks": [{"file": {"path": "/out.parquet"}}]},
            "status": status}


def deployment_of(resource: dict, version: str = "7") -> dict:
    rendered = render_pipelinestep.render(resource, SETTINGS)
    return {"metadata": {"name": resource["metadata"]["name"], "uid": "d-" + resource["metadata"]["uid"],
                         "resourceVersion": version, "generation": 1,
                         "annotations": {CONFIG_HASH_ANNOTATION: rendered.config_hash}},
            "spec": {"replicas": rendered.desired_replicas}, "status": {}}


def indexes(steps: list[dict], deployments: dict[str, dict] | None = None, buried: set[str] = frozenset()) -> Indexes:
    return Indexes(steps={("ns", s["metadata"]["name"]): [s] for s in steps},
                   builds={}, step_deployments={("ns", n): [d] for n, d in (deployments or {}).items()},
                   build_jobs={}, managed_pods={}, freshness=Freshness(buried=set(buried)))


def names(checks) -> list[str]:
    return [c.resource["metadata"]["name"] for c in checks]


def test_resources_kopf_has_not_handled_yet_are_left_to_their_create_handler():
    ix = indexes([step("new", handled=False), step("old")])
    assert names(round_work(ix, SETTINGS, {})) == ["old"]


def test_a_missing_or_buried_deployment_is_applied_again():
    old = step("old")
    (check,) = round_work(indexes([old]), SETTINGS, {})
    assert not check.observe_only
    buried = deployment_of(old)
    (check,) = round_work(indexes([old], {"old": buried}, buried={buried["metadata"]["uid"]}), SETTINGS, {})
    assert not check.observe_only


def test_a_quiet_resource_is_skipped_until_something_it_reads_changes():
    old = step("old")
    ix = indexes([old], {"old": deployment_of(old)})
    quiet: dict = {}
    (check,) = round_work(ix, SETTINGS, quiet)
    assert check.observe_only
    quiet[("PipelineStep", "ns", "old")] = check.fingerprint
    assert round_work(ix, SETTINGS, quiet) == []
    changed = indexes([old], {"old": deployment_of(old, version="8")})
    assert names(round_work(changed, SETTINGS, quiet)) == ["old"]


def test_deleted_resources_are_forgotten():
    quiet = {("PipelineStep", "ns", "gone"): ("1",)}
    round_work(indexes([step("old")]), SETTINGS, quiet)
    assert ("PipelineStep", "ns", "gone") not in quiet
