"""The `TrainingSetBuild` spec: crossmatch a table of objects with labeled catalogs.

One model, three uses: `alertops build` reads manifests through it, the operator validates and
renders a Job from it, and the CRD's schema is generated from it. So every field carries a
description (the CRD docs), enums are `Literal`s and bounds are `Field` constraints.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from step_runtime.spec.common import ResourcesSpec, SecretKeyRef, SpecModel, find_secret_refs
from step_runtime.spec.files import FILE_URI, SHA256_HEX, S3Access, check_uri_access, uri_shape

KIND = "TrainingSetBuild"

TableFormat = Literal["auto", "csv", "tsv", "whitespace", "parquet", "fits", "votable"]
CoordUnits = Literal["deg", "rad", "sexagesimal"]

# Catalog names become output column prefixes, and PostgreSQL identifiers are built from them.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# Output table and schema names: validated here, quoted again with psycopg2.sql when used.
IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


def _label_text(value: Any) -> Any:
    """Integral numbers as their integer text (1 and 1.0 -> "1"), other scalars as str."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return value


class PostgresQuery(SpecModel):
    """Rows read from PostgreSQL with a query (read-only; the DSN comes from a Secret)."""

    dsn: SecretKeyRef = Field(description="Secret key holding the libpq DSN/URI of the database.")
    sql: str = Field(min_length=1, description="SELECT statement returning the table's rows.")
    timeout_seconds: float = Field(default=300.0, gt=0, description="Statement timeout for the query, in seconds.")


class TableSpec(SpecModel):
    """Where a table is and how to read its identifier and position columns."""

    path: str | None = Field(
        default=None,
        description="File path (or file:// URI); relative paths are resolved against the manifest's directory. "
                    "Compression (gzip, bz2) is detected from the file's bytes, not its name.",
    )
    query: PostgresQuery | None = Field(default=None, description="Read the table from PostgreSQL instead of a file.")
    uri: str | None = Field(default=None, pattern=FILE_URI, max_length=2048, description=(
        "Fetch the file first: s3://bucket/key (see s3) or https://...; each build pod fetches it once, before "
        "reading (a file on the build's dataVolumeClaim is a path under /data)."))
    s3: S3Access | None = Field(default=None, description="Endpoint, region and credentials of an s3:// uri.")
    sha256: str | None = Field(default=None, pattern=SHA256_HEX, description=(
        "Pinned sha256 of the file (path or uri): a file that does not match is refused."))
    format: TableFormat = Field(
        default="auto",
        description="File format; auto picks it from the name (.csv .tsv .parquet .fits .vot/.xml .dat/.txt) and content.",
    )
    column_names: list[str] | None = Field(
        default=None,
        description="Names of the columns, for a text file without a header line (a whitespace table's "
                    "`#` header line is then ignored).",
    )
    id_column: str | None = Field(
        default=None, description="Column holding the object identifier; unset means the 0-based row number."
    )
    ra_column: str = Field(default="ra", min_length=1, description="Column holding right ascension.")
    dec_column: str = Field(default="dec", min_length=1, description="Column holding declination.")
    coord_units: CoordUnits | None = Field(
        default=None,
        description="Units of ra/dec: deg, rad, or sexagesimal strings (ra hh:mm:ss.s, dec +dd:mm:ss). Unset means "
                    "deg, except that a table of 100 rows or more whose every |ra| <= 2 pi and |dec| <= pi/2 is "
                    "refused as radians; set deg to read it as degrees anyway.",
    )
    carry: list[str] = Field(default_factory=list, description="Extra columns copied into the output rows.")

    ONE_OF: ClassVar[tuple[tuple[str, ...], ...]] = (("path", "query", "uri"),)

    _uri = field_validator("uri", mode="before")(staticmethod(uri_shape))

    @model_validator(mode="after")
    def _check_location(self) -> "TableSpec":
        if self.query is not None and self.sha256 is not None:
            raise ValueError("sha256 pins a file (path or uri), not a query")
        check_uri_access(self.uri, self.s3)
        if self.uri is not None and self.uri.startswith("pvc://"):
            raise ValueError("a build reads its claim (spec.dataVolumeClaim) at /data: give path: /data/..., "
                             "not a pvc:// uri")
        return self


class SourceSpec(TableSpec):
    """The objects to label (for example ZTF objects with mean positions)."""

    NAME = "source"


class CatalogSpec(TableSpec):
    """A labeled catalog crossmatched against the source."""

    NAME = "catalog"
    ONE_OF = (*TableSpec.ONE_OF, ("label_column", "label"))

    name: str = Field(pattern=NAME_PATTERN,
                      description="Short name of the catalog (lowercase, digits, _); prefixes its output columns.")
    label_column: str | None = Field(default=None, description="Column holding the class label.")
    label: str | None = Field(
        default=None, min_length=1,
        description="Constant label for every row (a file whose name is the class); exclusive with labelColumn.",
    )
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Catalog label -> training-set label (e.g. '1': RRL, rr_lyr: RRL). Numeric labels are "
                    "matched by their integer text (1.0 -> '1').",
    )
    unmapped_labels: Literal["drop", "keep"] = Field(
        default="drop",
        description="With a labelMap, a catalog label that is not in it: drop gives no label (a source whose "
                    "nearest object has it gets no label from this catalog), keep passes the original label.",
    )
    label_from: Literal["nearest", "nearest-labeled"] = Field(
        default="nearest",
        description="nearest: a source takes the label of the nearest catalog object within the radius, and "
                    "none when that object has no label (or an unmapped one). nearest-labeled: rows without a "
                    "label are removed before matching, so a source may take the label of a farther object "
                    "than its real counterpart.",
    )
    radius_arcsec: float = Field(gt=0, le=3600, description="Match radius in arcseconds.")
    priority: int = Field(
        default=0, ge=0,
        description="Trust order for combining labels: a smaller value wins; ties go to the earlier catalog in the list.",
    )

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys_as_text(cls, value: Any) -> Any:
        # YAML reads `1: RRL` with an integer key; labels are compared as text, so take it as "1".
        if isinstance(value, dict):
            return {_label_text(k): _label_text(v) for k, v in value.items()}
        return value


class CombineSpec(SpecModel):
    """How the labels of several catalogs become one label per object."""

    policy: Literal["priority", "agree", "drop"] = Field(
        default="priority",
        description="priority: the most trusted matching catalog's label wins, conflicts are flagged; "
                    "agree: a label is kept only when all matching catalogs agree (conflicting rows are written "
                    "with no label and conflict=true, for review); drop: rows whose catalogs disagree are left "
                    "out of the output.",
    )
    matching: Literal["best-per-source", "one-to-one"] = Field(
        default="best-per-source",
        description="best-per-source: each object takes its nearest catalog row (a catalog row may label several "
                    "objects); one-to-one: a catalog row labels only the nearest of the objects that chose it.",
    )
    keep_unlabeled: bool = Field(
        default=False, description="Also write objects that no catalog matched (label null)."
    )


class PostgresOutput(SpecModel):
    """Upsert the training set into a PostgreSQL table (created when missing)."""

    dsn: SecretKeyRef = Field(description="Secret key holding the libpq DSN/URI of the database.")
    table: str = Field(pattern=IDENT_PATTERN, description="Table name.")
    schema_name: str = Field(default="public", alias="schema", pattern=IDENT_PATTERN,
                             description="Schema of the table.")
    timeout_seconds: float = Field(default=300.0, gt=0, description="Connection and statement timeout, in seconds.")


class OutputSpec(SpecModel):
    """Where the training set goes. The summary JSON (and the PNG report, on request) go next to `path`."""

    path: str = Field(
        min_length=1,
        description="Output file; relative paths are resolved against --output-dir, else the manifest's directory. "
                    "Partition results go to <path>.parts/, the summary to <path>.summary.json and the "
                    "report (when `report` is true) to <path>.report.png.",
    )
    report: bool = Field(
        default=False,
        description="Also draw <path>.report.png: separations per catalog and class counts (matplotlib; it "
                    "adds about a second to a build).",
    )
    format: Literal["auto", "parquet", "csv"] = Field(
        default="auto", description="File format; auto picks csv for a .csv name, parquet otherwise."
    )
    postgres: PostgresOutput | None = Field(
        default=None, description="Also upsert the rows into this PostgreSQL table (key: the source id)."
    )


class TrainingSetBuildSpec(SpecModel):
    """Crossmatch `source` with `catalogs`, combine their labels, and write a training set."""

    source: SourceSpec = Field(description="The objects to label.")
    catalogs: list[CatalogSpec] = Field(min_length=1, max_length=64,
                                        description="Labeled catalogs, matched independently.")
    combine: CombineSpec = Field(default_factory=CombineSpec, description="How catalog labels are combined.")
    output: OutputSpec = Field(description="Where the training set is written.")
    parallelism: int = Field(
        default=1, ge=1, le=1000,
        description="Number of sky partitions (declination bands with a margin of the largest radius); "
                    "run as an Indexed Job with this many completions, or a local process pool.",
    )
    bad_rows: Literal["fail", "skip-and-count"] = Field(
        default="fail",
        description="Rows with missing, non-numeric or out-of-range coordinates: fail naming file, column and "
                    "row, or skip them and count them in the summary.",
    )
    suspend: bool = Field(default=False, description="While true the operator does not start the Job.")
    # Pod settings: the operator renders the Job from these; `alertops build` ignores them.
    image: str | None = Field(default=None, min_length=1,
                              description="Container image running `alertops build`; default: the operator's.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Container resources of each build pod.")
    data_volume_claim: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253,
        description="PersistentVolumeClaim mounted at /data (the --output-dir) for inputs, partition results and "
                    "output; ReadWriteMany when parallelism > 1. Absent: an emptyDir, which suits only builds "
                    "whose inputs are in the image and whose output goes to PostgreSQL.")
    backoff_limit: int = Field(default=3, ge=0, le=100, description="Retries of a failed build pod before the Job fails.")
    ttl_seconds_after_finished: int | None = Field(
        default=7 * 24 * 3600, ge=0,
        description="Seconds a finished Job (and its pods' logs) is kept; null keeps it until the resource is deleted.")

    @model_validator(mode="after")
    def _unique_catalog_names(self) -> "TrainingSetBuildSpec":
        names = [c.name for c in self.catalogs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"catalog names must be unique, repeated: {dupes}")
        return self

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every SecretKeyRef a build reads (DSNs of query sources and the PostgreSQL output)."""
        return find_secret_refs(self)
