"""`alertops operator --selector`: the label selector that picks which resources it handles."""
from __future__ import annotations

import argparse

import kopf
import pytest

from pipeline_operator import command
from pipeline_operator.selector import SelectorError, parse_selector


def matches(selector: dict, labels: dict[str, str]) -> bool:
    """Kubernetes' meaning of the selector, evaluated with the filter as kopf evaluates it."""
    for key, want in selector.items():
        if want is kopf.PRESENT:
            ok = key in labels
        elif want is kopf.ABSENT:
            ok = key not in labels
        elif callable(want):
            ok = want(labels.get(key))
        else:
            ok = labels.get(key) == want
        if not ok:
            return False
    return True


def test_empty_selector_means_everything():
    assert parse_selector(None) is None
    assert parse_selector("  ") is None


@pytest.mark.parametrize("selector, labels, expected", [
    ("team=ztf", {"team": "ztf"}, True),
    ("team==ztf", {"team": "ztf"}, True),
    ("team=ztf", {"team": "lsst"}, False),
    ("team=ztf", {}, False),
    ("alertops.io/operator!=canary", {}, True),  # as in Kubernetes: absent counts as different
    ("alertops.io/operator!=canary", {"alertops.io/operator": "stable"}, True),
    ("alertops.io/operator!=canary", {"alertops.io/operator": "canary"}, False),
    ("canary", {"canary": ""}, True),
    ("canary", {}, False),
    ("!canary", {}, True),
    ("!canary", {"canary": "yes"}, False),
    ("team=ztf, !canary", {"team": "ztf"}, True),
    ("team=ztf,!canary", {"team": "ztf", "canary": "1"}, False),
    ("team=", {"team": ""}, True),
])
def test_selector_semantics(selector, labels, expected):
    assert matches(parse_selector(selector), labels) is expected


@pytest.mark.parametrize("selector, fragment", [
    ("team=ztf,,x", "empty term"),
    ("team in (ztf,lsst)", "set-based"),
    ("te am=ztf", "not a valid label key"),
    ("team=zt f", "not a valid label value"),
    ("Bad_Prefix.io/x=1", "not a valid label key"),
    ("team=" + "x" * 64, "not a valid label value"),
    ("team=a,team=b", "twice"),
])
def test_bad_selector_names_term_and_expectation(selector, fragment):
    with pytest.raises(SelectorError, match=fragment) as info:
        parse_selector(selector)
    assert "expected" in str(info.value)


def test_operator_refuses_a_bad_selector_before_starting(capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.main(parser.parse_args(["--selector", "team in (a)"])) == 2
    assert "--selector" in capsys.readouterr().err
