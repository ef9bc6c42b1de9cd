"""`alertops operator` flags and the kopf settings of its startup handler."""
from __future__ import annotations

import argparse
import logging

import kopf
import pytest

from pipeline_operator import command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_scope_flags(monkeypatch):
    monkeypatch.delenv("ALERTOPS_WATCH_NAMESPACE", raising=False)
    assert command.namespaces_from(parse()) == (True, [])
    assert command.namespaces_from(parse("-A")) == (True, [])
    assert command.namespaces_from(parse("-n", "alerts", "-n", "staging")) == (False, ["alerts", "staging"])
    monkeypatch.setenv("ALERTOPS_WATCH_NAMESPACE", "alerts, e2e-*")
    assert command.namespaces_from(parse()) == (False, ["alerts", "e2e-*"])
    assert command.namespaces_from(parse("-A")) == (True, [])


def test_namespace_and_all_namespaces_exclude_each_other():
    with pytest.raises(SystemExit):
        parse("-n", "a", "-A")


def test_ports_default_and_override():
    args = parse()
    assert (args.liveness_port, args.metrics_port, args.log_format) == (8081, 8082, "json")
    assert parse("--liveness-port", "0").liveness_port == 0


def test_startup_settings_keep_kopfs_bookkeeping_in_a_status_field_the_crds_declare():
    from pipeline_operator import handlers
    from pipeline_operator.crdgen import build_crd
    from pipeline_operator.crds import DEFINITIONS

    settings = kopf.OperatorSettings()
    memo = kopf.Memo()
    handlers.configure(settings=settings, memo=memo)
    assert settings.persistence.finalizer == "alertops.io/finalizer"
    # In the status, so that one request writes it with the status; declared in both CRDs,
    # or the API server would prune it and kopf would handle every resource again and again.
    assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
    assert settings.persistence.progress_storage.field == ("status", "kopf", "progress")
    assert isinstance(settings.persistence.diffbase_storage, kopf.StatusDiffBaseStorage)
    assert settings.persistence.diffbase_storage.field == ("status", "kopf", "last-handled-configuration")
    assert {d.kind for d in DEFINITIONS} == {"PipelineStep", "TrainingSetBuild"}
    for definition in DEFINITIONS:
        status = build_crd(definition)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        kopf_schema = status["properties"]["kopf"]
        assert kopf_schema["type"] == "object" and kopf_schema["x-kubernetes-preserve-unknown-fields"] is True
    assert settings.watching.server_timeout and settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.posting.loggers is False and settings.posting.level == logging.INFO
    assert memo["render_settings"].default_image


def test_no_timers_or_daemons_so_no_finalizer():
    """kopf puts a finalizer on resources with timers/daemons; the operator must not have any."""
    from pipeline_operator import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry, None)
    assert list(registry._changing.get_all_handlers())  # the handlers are there...
    activities = {h.fn for h in registry._activities.get_all_handlers()}
    assert kopf.login_via_client in activities  # ...and a login (kopf adds one only to its default registry)
    spawning = registry._spawning.get_all_handlers()  # kopf has no public accessor for this
    assert list(spawning) == []


def test_the_selector_reaches_registration_as_an_argument():
    """`--selector` filters the handlers and indexes of our two kinds, and only those."""
    from pipeline_operator import handlers
    from pipeline_operator.selector import parse_selector

    selector = parse_selector("alertops.io/operator=canary")
    registry = kopf.OperatorRegistry()
    handlers.register(registry, selector)
    ours = {"pipelinesteps", "trainingsetbuilds"}
    registered = [*registry._changing.get_all_handlers(), *registry._indexing.get_all_handlers()]
    mine = [h for h in registered if h.selector is not None and h.selector.any_name in ours]
    assert len(mine) == 8  # resume, create, update and an index, for each kind
    assert all(h.labels == selector for h in mine)
    children = [h for h in registered if h.selector is not None and h.selector.any_name not in ours]
    assert children and all(h.labels.get("app.kubernetes.io/managed-by") == "alertops-operator" for h in children)
    assert "ALERTOPS_OPERATOR_SELECTOR" not in open(handlers.__file__).read()


def test_wake_up_handlers_do_not_log_a_line_per_watch_event():
    from pipeline_operator import handlers

    handlers.configure(settings=kopf.OperatorSettings(), memo=kopf.Memo())
    logger = logging.getLogger("kopf.objects")

    def passes(message: str) -> bool:
        return logger.filter(logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None))

    assert not passes("Handler 'child_changed' succeeded.") and not passes("Handler 'resource_listed' succeeded.")
    assert passes("Handler 'step_apply' succeeded.") and passes("Handler 'child_changed' failed with an exception.")
