"""The summary of a training-set build: one model for both sides of the contract.

`alertops build` writes it twice: whole, as `<output>.summary.json`, and compact, as the pod's
termination message (Kubernetes keeps at most 4096 bytes of it). The operator reads the
termination message back into the TrainingSetBuild's status. Both sides import this module,
which needs nothing of the runtime beyond pydantic, so the operator stays on the spec side of
the runtime.

The termination message is always valid JSON of at most 4096 bytes: when the whole compact
summary does not fit, it is shortened field by field (the per-class counts, the error text, an
output path beyond 1024 characters, catalogs from the last, then the output location) and
`shortened` names what was cut. Summaries written by
alertops 0.1.0 read as well (same snake_case shape; a message it cut mid-JSON is refused with a
reason rather than read as empty).

Keys are snake_case (the summary file is read by people and scripts). Fields the build adds
beyond the ones declared here are kept as they are in the file (`extra="allow"`).
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

TERMINATION_LIMIT = 4096  # bytes of a termination message that Kubernetes keeps
CLASSES_KEPT = 20         # per-class counts kept (largest first) when all of them do not fit
OUTPUT_TEXT_KEPT = 1024   # characters of an output path kept before catalogs are dropped


class SummaryError(ValueError):
    """A termination message that is not a build summary; the message says why, in one line."""


class _SummaryModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CatalogCounts(_SummaryModel):
    """What one catalog contributed. The summary file carries more per catalog (rows read and
    used, ambiguous matches, label counts...): those are kept as extra fields."""

    matches: int | None = Field(default=None, ge=0, description="Sources matched to this catalog.")
    conflicts: int | None = Field(default=None, ge=0,
                                  description="Matches whose label conflicted with another catalog's.")
    matched_unlabeled: int | None = Field(
        default=None, ge=0,
        description="Sources whose nearest object in this catalog has no label or an unmapped one "
                    "(they get no label from this catalog).")


class BuildOutput(_SummaryModel):
    """Where the training set (or a partition's part) was written."""

    path: str | None = None
    format: str | None = None
    postgres: str | None = Field(default=None, description="schema.table, when also upserted into PostgreSQL.")


# The counts the termination message carries per catalog (the status shows them).
_CATALOG_COUNTS = ("matches", "conflicts", "matched_unlabeled")
# The top-level fields of the termination message, in this order.
_MESSAGE_FIELDS = ("phase", "name", "error", "rows_in", "rows_out", "conflicts", "partition", "partitions",
                   "rows", "output", "catalogs", "classes")


class BuildSummary(_SummaryModel):
    """A build's summary: a whole build, one partition of it, or a failure."""

    phase: str | None = Field(default=None, description="Succeeded or Failed.")
    name: str | None = Field(default=None, description="The TrainingSetBuild's name.")
    error: str | None = Field(default=None, description="Why the build failed.")
    rows_in: int | None = Field(default=None, ge=0, validation_alias=AliasChoices("rows_in", "rowsIn"),
                                description="Rows read from the source table.")
    rows_out: int | None = Field(default=None, ge=0, validation_alias=AliasChoices("rows_out", "rowsOut"),
                                 description="Rows written to the output.")
    conflicts: int | None = Field(default=None, ge=0, description="Sources whose catalogs disagreed.")
    partition: int | None = Field(default=None, ge=0, description="The partition a partition pod built.")
    partitions: int | None = Field(default=None, ge=1, description="Sky partitions of the build.")
    rows: int | None = Field(default=None, ge=0, description="Sources in this partition.")
    output: BuildOutput | None = None
    catalogs: dict[str, CatalogCounts] = Field(default_factory=dict)
    classes: dict[str, int] = Field(default_factory=dict, description="Rows per class in the output.")
    shortened: list[str] = Field(default_factory=list,
                                 description="Fields cut to fit the termination message (it only).")

    @field_validator("output", mode="before")
    @classmethod
    def _output_path(cls, value: Any) -> Any:
        # A partition's summary names its part file by path alone.
        return {"path": value} if isinstance(value, str) else value

    @field_validator("catalogs", mode="before")
    @classmethod
    def _catalogs_by_name(cls, value: Any) -> Any:
        # The status lists catalogs ({name, ...} items); the summary maps name -> counts.
        if isinstance(value, list) and all(isinstance(c, dict) and "name" in c for c in value):
            return {str(c["name"]): {k: v for k, v in c.items() if k != "name"} for c in value}
        return value

    @classmethod
    def failed(cls, error: str) -> "BuildSummary":
        """The summary of a build that stopped with `error`."""
        return cls(phase="Failed", error=error)

    def document(self) -> dict[str, Any]:
        """The whole summary as JSON-able data, for `<output>.summary.json`."""
        return self.model_dump(mode="json", exclude_unset=True)

    def termination_message(self, limit: int = TERMINATION_LIMIT) -> str:
        """Compact JSON of at most `limit` bytes (ASCII), shortened field by field when needed."""
        doc: dict[str, Any] = {}
        for key in _MESSAGE_FIELDS:
            value = getattr(self, key)
            if key == "output" and value is not None:
                value = value.model_dump(mode="json", include={"path", "format", "postgres"}, exclude_none=True)
            elif key == "catalogs":
                value = {name: c.model_dump(include=set(_CATALOG_COUNTS), exclude_none=True)
                         for name, c in value.items()} or None
            elif key == "classes":
                value = value or None
            if value is not None:
                doc[key] = value
        return _shorten(doc, limit)

    @classmethod
    def from_termination_message(cls, text: str | None) -> "BuildSummary":
        """Read a termination message; SummaryError says why it is not a build summary."""
        if not text or not text.strip():
            raise SummaryError("the termination message is empty")
        try:
            data = json.loads(text)
        except ValueError as exc:
            hint = " (cut at 4096 bytes?)" if len(text.encode()) >= TERMINATION_LIMIT else ""
            raise SummaryError(f"the termination message is not JSON{hint}: {exc}") from None
        if not isinstance(data, dict):
            raise SummaryError(f"the termination message is JSON {type(data).__name__}, expected an object")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "summary"
            raise SummaryError(f"the termination message's {where}: {first['msg']}") from None


def _dump(doc: dict[str, Any]) -> str:
    # ASCII only, so the length in characters is the length in bytes.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str)


def _fits(doc: dict[str, Any], limit: int) -> bool:
    return len(_dump(doc)) <= limit


def _cut_text(doc: dict[str, Any], get: Any, put: Any, limit: int) -> None:
    """Shorten one string of `doc` (read with `get`, written with `put`) to the longest prefix that fits."""
    text = get()
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix (plus an ellipsis) with which doc fits
        mid = (lo + hi + 1) // 2
        put(text[:mid] + "...")
        if _fits(doc, limit):
            lo = mid
        else:
            hi = mid - 1
    put(text[:lo] + "...")


def _shorten(doc: dict[str, Any], limit: int) -> str:
    """`doc` as JSON within `limit` bytes: whole if it fits, else cut field by field."""
    if _fits(doc, limit):
        return _dump(doc)
    shortened: list[str] = []
    doc["shortened"] = shortened

    def done() -> bool:
        return _fits(doc, limit)

    if "classes" in doc:
        shortened.append("classes")
        largest = sorted(doc["classes"].items(), key=lambda kv: -kv[1])[:CLASSES_KEPT]
        doc["classes"] = dict(largest)
        if not done():
            del doc["classes"]
    if not done() and "error" in doc:
        shortened.append("error")
        _cut_text(doc, lambda: doc["error"], lambda v: doc.__setitem__("error", v), limit)
    output = doc.get("output")
    if not done() and isinstance(output, dict):
        # A path longer than any sane one would crowd out the per-catalog counts.
        for key in ("postgres", "path"):
            if len(output.get(key) or "") > OUTPUT_TEXT_KEPT:
                output[key] = output[key][:OUTPUT_TEXT_KEPT] + "..."
                shortened.append("output")
    if not done() and "catalogs" in doc:
        shortened.append("catalogs")
        names = list(doc["catalogs"])
        while names and not done():
            del doc["catalogs"][names.pop()]
    if not done() and isinstance(output, dict):
        shortened.append("output")
        for key in ("postgres", "path"):
            if key in output and not done():
                _cut_text(doc, lambda k=key: output[k], lambda v, k=key: output.__setitem__(k, v), limit)
    if not done():
        # Only what cannot be long is left (names may be up to 253 characters).
        kept: dict[str, Any] = {k: doc[k] for k in ("phase", "rows_in", "rows_out", "conflicts", "partition",
                                                    "partitions", "rows") if k in doc}
        dropped = [k for k in doc if k not in kept and k != "shortened"]
        doc.clear()
        doc.update(kept, shortened=sorted(set(shortened) | set(dropped)))
    doc["shortened"] = list(dict.fromkeys(doc["shortened"]))
    return _dump(doc)
