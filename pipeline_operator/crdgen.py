"""Pydantic model -> CustomResourceDefinition, as a pure function.

pydantic writes JSON Schema (draft 2020-12); the API server wants a *structural* OpenAPI v3
schema: every node typed, no `$ref`, no `anyOf` of alternatives, `nullable` instead of a
`null` type, `exclusiveMinimum: true` beside `minimum`, no `uniqueItems`, no
`additionalProperties` beside `properties`. This module does that conversion and nothing else;
what each kind's CRD holds (names, columns, CEL rules) lives in `pipeline_operator.crds`.

Unsupported constructs raise `SchemaConversionError` naming the JSON path, so a spec-model
change that the API server could not express fails `alertops crds` loudly, not at apply time.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

# Formats the API server knows; anything else (pydantic's "path", "uri"...) is dropped
# because it would be ignored at best and refused at worst.
_KNOWN_FORMATS = {
    "int32", "int64", "float", "double", "byte", "date", "date-time", "password",
    "uuid", "email", "hostname", "ipv4", "ipv6", "cidr", "duration",
}

# JSON Schema keywords copied as they are (after the conversions below).
_PASS_THROUGH = {
    "description", "type", "enum", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "minProperties", "maxProperties", "multipleOf",
    "default", "format", "required", "items", "properties", "additionalProperties",
}
# JSON Schema keywords that carry no validation the API server needs.
_DROPPED = {"title", "examples", "readOnly", "writeOnly", "deprecated", "$comment"}


class SchemaConversionError(ValueError):
    """A JSON Schema construct that has no structural OpenAPI equivalent."""


@dataclass(frozen=True)
class CelRule:
    """An `x-kubernetes-validations` rule placed at a path of the spec schema.

    `path` is dotted camelCase field names from the schema root (`""` is the root itself);
    `[]` after a name goes into the items of an array, e.g. `sinks[]`.
    """

    path: str
    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class CRDDefinition:
    """Everything that makes one CRD, besides the schemas' models."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    cel_rules: tuple[CelRule, ...] = ()
    schema_overrides: tuple[tuple[str, dict[str, Any]], ...] = ()
    scale: bool = False
    spec_required: bool = True
    extra_spec_properties: dict[str, Any] = field(default_factory=dict)


def _resolve_ref(ref: str, defs: dict[str, Any], where: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix):] not in defs:
        raise SchemaConversionError(f"{where}: cannot resolve $ref {ref!r}")
    resolved: dict[str, Any] = defs[ref[len(prefix):]]
    return resolved


def _merge_siblings(node: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """A `$ref`/`anyOf` wrapper's own keywords (description, default) win over the target's."""
    merged = copy.deepcopy(target)
    for key, value in node.items():
        if key not in ("$ref", "anyOf", "allOf", "oneOf", "title"):
            merged[key] = value
    return merged


def to_structural(node: dict[str, Any], defs: dict[str, Any], where: str = "",
                  stack: tuple[str, ...] = ()) -> dict[str, Any]:
    """Convert one JSON Schema node (pydantic's output) into a structural OpenAPI v3 node."""
    node = dict(node)
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in stack:
            raise SchemaConversionError(f"{where}: recursive model {name} cannot be inlined in a CRD")
        target = _resolve_ref(node["$ref"], defs, where)
        return to_structural(_merge_siblings(node, target), defs, where, stack + (name,))
    if "allOf" in node:
        if len(node["allOf"]) != 1:
            raise SchemaConversionError(f"{where}: allOf with several members is not supported")
        return to_structural(_merge_siblings(node, node["allOf"][0]), defs, where, stack)
    for alt in ("anyOf", "oneOf"):
        if alt in node:
            return _convert_alternatives(node, node[alt], defs, where, stack)

    out: dict[str, Any] = {}
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("type") == "null":
        raise SchemaConversionError(f"{where}: a field that can only be null cannot be expressed")
    if isinstance(node.get("type"), list):
        raise SchemaConversionError(f"{where}: multi-type {node['type']} is not structural")
    for key, value in node.items():
        if key in _DROPPED or key in ("const", "discriminator"):
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "uniqueItems":
            if value:
                out["x-kubernetes-list-type"] = "set"
        elif key == "format":
            if value in _KNOWN_FORMATS:
                out["format"] = value
        elif key == "properties":
            out["properties"] = {
                name: to_structural(sub, defs, f"{where}.{name}" if where else name, stack)
                for name, sub in value.items()
            }
        elif key == "items":
            if not isinstance(value, dict):
                raise SchemaConversionError(f"{where}: tuple-like items are not structural")
            out["items"] = to_structural(value, defs, f"{where}[]", stack)
        elif key == "prefixItems":
            raise SchemaConversionError(f"{where}: tuples (prefixItems) are not structural")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = to_structural(value, defs, f"{where}{{}}", stack)
            # `false` is the structural default (unknown fields are refused by strict
            # field validation or pruned); `true` would need preserve-unknown-fields.
            elif value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif key in _PASS_THROUGH:
            out[key] = copy.deepcopy(value)
        elif key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaConversionError(f"{where}: JSON Schema keyword {key!r} has no CRD equivalent")
    if "type" not in out:
        if "enum" in out and out["enum"]:
            out["type"] = _json_type(out["enum"][0], where)
        elif "properties" in out or "additionalProperties" in out:
            out["type"] = "object"
        elif not out.keys() - {"description", "default"}:
            # `Any`: free-form on purpose.
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            raise SchemaConversionError(f"{where}: node has no type: {sorted(out)}")
    if out.get("type") == "object" and "properties" in out:
        out.pop("additionalProperties", None)
        out.setdefault("properties", {})
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("required") == []:
        del out["required"]
    return out


def _json_type(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise SchemaConversionError(f"{where}: enum value {value!r} of unsupported type")


def _convert_alternatives(node: dict[str, Any], alternatives: list[dict[str, Any]],
                          defs: dict[str, Any], where: str, stack: tuple[str, ...]) -> dict[str, Any]:
    """`X | None` becomes nullable X; `int | str` becomes int-or-string; literals merge."""
    non_null = [a for a in alternatives if a.get("type") != "null"]
    nullable = len(non_null) < len(alternatives)
    wrapper = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "title", "discriminator")}
    if nullable and wrapper.get("default", "missing") is None:
        del wrapper["default"]
    if len(non_null) == 1:
        out = to_structural(_merge_siblings(wrapper, non_null[0]), defs, where, stack)
    else:
        converted = [to_structural(a, defs, where, stack) for a in non_null]
        types = {c.get("type") for c in converted}
        if types == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        elif len(types) == 1 and all("enum" in c for c in converted):
            out = {"type": types.pop(), "enum": [v for c in converted for v in c["enum"]]}
        elif types == {"integer", "number"}:
            out = {"type": "number"}
        else:
            raise SchemaConversionError(
                f"{where}: a union of {sorted(map(str, types))} is not structural; use optional "
                f"sub-objects and a model validator (a CEL rule is added in pipeline_operator.crds)")
        for key in ("description", "default"):
            if key in wrapper:
                out[key] = wrapper[key]
    if nullable:
        out["nullable"] = True
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return to_structural(raw, defs, "")


def _node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    if not path:
        return node
    for part in path.split("."):
        into_items = part.endswith("[]")
        name = part[:-2] if into_items else part
        props = node.get("properties", {})
        if name not in props:
            raise SchemaConversionError(f"CEL rule path {path!r}: no field {name!r} (have {sorted(props)})")
        node = props[name]
        if into_items:
            if "items" not in node:
                raise SchemaConversionError(f"CEL rule path {path!r}: {name!r} is not an array")
            node = node["items"]
    return node


def add_cel_rules(schema: dict[str, Any], rules: tuple[CelRule, ...] | list[CelRule]) -> dict[str, Any]:
    """A copy of `schema` with each rule appended to `x-kubernetes-validations` at its path."""
    out = copy.deepcopy(schema)
    for r in rules:
        entry: dict[str, Any] = {"rule": r.rule, "message": r.message}
        if r.field_path:
            entry["fieldPath"] = r.field_path
        if r.reason:
            entry["reason"] = r.reason
        _node_at(out, r.path).setdefault("x-kubernetes-validations", []).append(entry)
    return out


def add_schema_overrides(schema: dict[str, Any],
                         overrides: tuple[tuple[str, dict[str, Any]], ...]) -> dict[str, Any]:
    """A copy of `schema` with extra keywords merged in at paths (same path syntax as CelRule)."""
    out = copy.deepcopy(schema)
    for path, extra in overrides:
        _node_at(out, path).update(copy.deepcopy(extra))
    return out


def build_crd(d: CRDDefinition) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for `d`."""
    spec_schema = add_schema_overrides(model_schema(d.spec_model), d.schema_overrides)
    spec_schema = add_cel_rules(spec_schema, d.cel_rules)
    spec_schema["description"] = d.description
    status_schema = model_schema(d.status_model)
    status_schema["description"] = f"Observed state of the {d.kind}, written by the operator."
    openapi = {
        "type": "object",
        "description": d.description,
        "properties": {
            "apiVersion": {"type": "string", "description": "alertops.io/v1alpha1"},
            "kind": {"type": "string", "description": d.kind},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if d.spec_required:
        openapi["required"] = ["spec"]
    subresources: dict[str, Any] = {"status": {}}
    if d.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    version: dict[str, Any] = {
        "name": d.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi},
        "subresources": subresources,
    }
    if d.printer_columns:
        version["additionalPrinterColumns"] = [
            {k: v for k, v in {
                "name": c.name, "type": c.type, "jsonPath": c.json_path,
                "description": c.description or None, "priority": c.priority or None,
            }.items() if v is not None}
            for c in d.printer_columns
        ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{d.plural}.{d.group}",
            "labels": {"app.kubernetes.io/part-of": "alertops"},
        },
        "spec": {
            "group": d.group,
            "scope": "Namespaced",
            "names": {
                "kind": d.kind,
                "listKind": f"{d.kind}List",
                "plural": d.plural,
                "singular": d.singular,
                "shortNames": list(d.short_names),
                "categories": list(d.categories),
            },
            "versions": [version],
        },
    }
