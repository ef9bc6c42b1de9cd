"""`--selector`: which PipelineSteps and TrainingSetBuilds one operator instance handles.

Kubernetes' equality-based label selector syntax, as in `kubectl get -l`: comma-separated
terms, all of which must hold: `key=value` (or `key==value`), `key!=value` (also true when the
label is absent, as in Kubernetes), `key` (present) and `!key` (absent). Set-based terms
(`key in (a,b)`) are not supported. The result is a kopf label filter.

Why: two operator instances (a canary and the stable one, or one per team) can share a
cluster when each handles only the resources its selector matches.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import kopf

# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")

LabelFilter = dict[str, Any]


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message names the term and what was expected."""


def _not_equal(value: str) -> Callable[..., bool]:
    def differs(actual: str | None, **_: Any) -> bool:
        return actual != value
    return differs


def _check_key(key: str, term: str) -> str:
    if not _KEY.match(key) or len(key.split("/")[0]) > 253:
        raise SelectorError(f"selector term {term!r}: {key!r} is not a valid label key "
                            "(expected [prefix/]name, name of at most 63 characters [A-Za-z0-9-_.])")
    return key


def _check_value(value: str, term: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"selector term {term!r}: {value!r} is not a valid label value "
                            "(expected at most 63 characters [A-Za-z0-9-_.], starting and ending alphanumeric)")
    return value


def parse_selector(text: str | None) -> LabelFilter | None:
    """A kopf label filter from an equality-based label selector; None for an empty selector."""
    if text is None or not text.strip():
        return None
    result: LabelFilter = {}
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            raise SelectorError(f"selector {text!r} has an empty term (expected key=value, key!=value, key or !key)")
        if any(word in f" {term} " for word in (" in ", " notin ")) or "(" in term:
            raise SelectorError(f"selector term {term!r}: set-based terms are not supported "
                                "(expected key=value, key!=value, key or !key)")
        if "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            matcher: Any = _not_equal(_check_value(value, term))
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            key, value = key.strip(), value.strip()
            matcher = _check_value(value, term)
        elif term.startswith("!"):
            key, matcher = term[1:].strip(), kopf.ABSENT
        else:
            key, matcher = term, kopf.PRESENT
        _check_key(key, term)
        if key in result:
            raise SelectorError(f"selector {text!r} names label {key!r} twice (expected each key once)")
        result[key] = matcher
    return result
