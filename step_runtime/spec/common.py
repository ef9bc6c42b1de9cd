"""Pieces every alertops resource shares: the model base, Secret references, manifest loading."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "alertops.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class SpecModel(BaseModel):
    """Base of every spec model: camelCase in manifests, snake_case in Python, unknown fields refused.

    Refusing unknown fields matters: a misspelt `bootstrapServer` must be an error naming the
    field, not a silently ignored option.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    # Groups of fields of which exactly one must be set, and what messages call the model. Stated
    # once, here: the check below, `kind()`, the CRD's CEL rules (pipeline_operator.crds) and the
    # runtime's builder registries all read them.
    ONE_OF: ClassVar[tuple[tuple[str, ...], ...]] = ()
    NAME: ClassVar[str] = ""

    def one_of_name(self) -> str:
        """What the "needs exactly one of" message calls this object."""
        return self.NAME

    @classmethod
    def aliases(cls, names: tuple[str, ...]) -> list[str]:
        """The manifest (camelCase) names of fields."""
        return [cls.model_fields[n].alias or n for n in names]

    @model_validator(mode="after")
    def _exactly_one(self) -> "SpecModel":
        for group in type(self).ONE_OF:
            chosen = [n for n in group if getattr(self, n) is not None]
            if len(chosen) != 1:
                got = ", ".join(type(self).aliases(tuple(chosen))) or "none"
                raise ValueError(f"{one_of_message(self.one_of_name(), type(self).aliases(group))} (got {got})")
        return self

    def kind(self) -> str:
        """The field chosen in the model's (first) one-of group."""
        for name in type(self).ONE_OF[0]:
            if getattr(self, name) is not None:
                return name
        raise AssertionError(f"validated {type(self).__name__} without a choice")

    def chosen(self) -> Any:
        """The value of the chosen field."""
        return getattr(self, self.kind())


def one_of_message(what: str, choices: list[str]) -> str:
    """`<what> needs exactly one of a or b` (or `a, b, c` for more), the words of the model's
    error and of the CRD's CEL rule alike."""
    text = " or ".join(choices) if len(choices) == 2 else ", ".join(choices)
    return f"{what} needs exactly one of {text}".lstrip()


class OneOf(SpecModel):
    """A choice: exactly one of its fields is set (but those in NOT_CHOICES), so that the fields
    themselves state the choices (a processor, a sink, a source...)."""

    NOT_CHOICES: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.ONE_OF = (tuple(n for n in cls.model_fields if n not in cls.NOT_CHOICES),)


class SecretKeyRef(SpecModel):
    """A key of a Kubernetes Secret. Credentials are only ever referenced, never inline.

    In a pod the operator turns it into an env var with `valueFrom.secretKeyRef`; the runtime
    reads that env var (`env_var_name`). Run locally, the same env var is read from the shell.
    """

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                      description="Name of the Secret in the resource's namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key within the Secret.")

    def env_var_name(self) -> str:
        """The env var that carries this secret's value into the runtime process."""
        clean = "".join(c if c.isalnum() else "_" for c in f"{self.name}_{self.key}")
        return f"ALERTOPS_SECRET_{clean.upper()}"


class ResourcesSpec(SpecModel):
    """Container resources, as in a Kubernetes container spec."""

    requests: dict[str, str] = Field(default_factory=dict, description="Resource requests, e.g. cpu: 500m.")
    limits: dict[str, str] = Field(default_factory=dict, description="Resource limits, e.g. memory: 2Gi.")


def find_secret_refs(node: Any, skip: frozenset[str] = frozenset()) -> list[SecretKeyRef]:
    """Every SecretKeyRef inside a spec model, in field order, without duplicates.

    `skip` names top-level fields of `node` to leave out. The operator renders one env var per
    reference (`env_var_name`) and the runtime reads exactly those.
    """
    found: list[SecretKeyRef] = []

    def walk(obj: Any, top: bool) -> None:
        if isinstance(obj, SecretKeyRef):
            if obj not in found:
                found.append(obj)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                if not (top and name in skip):
                    walk(getattr(obj, name), False)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, False)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item, False)

    walk(node, True)
    return found


class SpecError(ValueError):
    """A manifest the user must fix; the message names the file, the field and what was expected."""


M = TypeVar("M", bound=BaseModel)


def format_validation_error(err: ValidationError, source: str, prefix: str = "spec") -> str:
    """One line per problem: `<source>: spec.a.b: <what is wrong> (got <value>)`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"])
        loc = loc.replace(".[", "[")
        field = f"{prefix}.{loc}" if loc else prefix
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        if isinstance(got, bool) and e["type"] == "string_type":
            shown += "; YAML reads unquoted yes/no/on/off/true/false as a boolean: quote it to mean text"
        lines.append(f"{source}: {field}: {e['msg']}{shown}")
    return "\n".join(lines)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing mappings whose keys repeat.

    PyYAML keeps the last of two equal keys silently: two `processor:` blocks would run the
    second. Keys YAML 1.1 makes equal are refused too (`1` and `true`, `0` and `no`, `1` and
    `1.0`), since a labelMap of `{1: RRL, true: Y}` would map label 1 to Y. A key that a merge
    (`<<: *anchor`) brings in may still be overridden, as YAML intends.
    """


def _duplicate_key_message(first: yaml.Node, again: yaml.Node) -> str:
    where = f"line {again.start_mark.line + 1}"
    if first.value == again.value:
        return (f"{where}: duplicate key {again.value!r} (first at line {first.start_mark.line + 1}); "
                "YAML would silently keep only the last one: remove or merge one of them")
    return (f"{where}: key {again.value!r} is the same key as {first.value!r} on line "
            f"{first.start_mark.line + 1}: YAML 1.1 reads true/yes/on as 1 and false/no/off as 0, and 1.0 equals 1; "
            f"quote keys meant as text ('{first.value}', '{again.value}')")


def _construct_strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    own = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)  # merged pairs first, then the mapping's own (which may override them)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping below reports it
        if first is not None and id(first) in own and id(key_node) in own:
            raise ManifestKeyError(_duplicate_key_message(first, key_node))
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


class ManifestKeyError(yaml.YAMLError):
    """A mapping repeats a key (or holds two keys YAML 1.1 makes equal)."""


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_strict_mapping)


def load_yaml_documents(text: str) -> list[Any]:
    """Every non-empty YAML document of `text`, refusing repeated keys (ManifestKeyError)."""
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]


def read_manifest(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a YAML manifest of `kind` and return it whole, checking apiVersion and kind.

    A file may hold several documents (a Secret beside the resource, say): the first one of
    the wanted kind is taken. A mapping that repeats a key is refused.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: no such manifest file") from None
    except IsADirectoryError:
        raise SpecError(f"{p}: is a directory, expected a manifest file (YAML)") from None
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the manifest: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not a YAML manifest: binary data, not UTF-8 text "
                        f"(byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if "\x00" in text:
        raise SpecError(f"{p}: not a YAML manifest: binary data (a NUL byte at offset {text.index(chr(0))})")
    try:
        docs = load_yaml_documents(text)
    except ManifestKeyError as exc:
        raise SpecError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == kind:
            if doc.get("apiVersion") != GROUP_VERSION:
                raise SpecError(f"{p}: apiVersion is {doc.get('apiVersion')!r}, expected {GROUP_VERSION!r}")
            if not isinstance(doc.get("spec"), dict):
                raise SpecError(f"{p}: {kind} has no spec mapping")
            return doc
    kinds = [d.get("kind") for d in docs if isinstance(d, dict)]
    raise SpecError(f"{p}: no {kind} document found (kinds in file: {kinds})")


def parse_spec(model: type[M], spec: dict[str, Any], source: str) -> M:
    """Validate a spec mapping against `model`, turning pydantic's errors into a SpecError."""
    try:
        return model.model_validate(spec)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None
