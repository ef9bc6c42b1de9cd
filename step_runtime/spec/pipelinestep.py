"""The `PipelineStep` spec: where a step reads, what it computes, where it writes.

The operator renders the Deployment from `image`, `replicas`, `suspend`, `resources` and `env`;
the runtime (`alertops run`) uses the rest. Every "one of" sub-object is a set of optional
fields plus a validator that demands exactly one (the operator mirrors it as a CEL rule).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from step_runtime.spec.common import ResourcesSpec, SecretKeyRef, SpecModel, find_secret_refs

KIND = "PipelineStep"

# A PostgreSQL identifier we are willing to quote and send: letters, digits, underscore, at most
# 63 bytes; optionally schema-qualified. Anything else is refused before it reaches SQL.
PG_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
PG_TABLE = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
KAFKA_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
SHA256_HEX = r"^[0-9a-f]{64}$"
PYTHON_FUNCTION = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"

MessageFormat = Literal["ztf-avro", "avro", "json"]


def _exactly_one(obj: SpecModel, names: list[str], what: str) -> None:
    """Raise a ValueError naming the choices unless exactly one of `names` is set on `obj`."""
    chosen = [n for n in names if getattr(obj, n) is not None]
    if len(chosen) != 1:
        fields = type(obj).model_fields
        aliases = [fields[n].alias or n for n in names]
        got = ", ".join(fields[n].alias or n for n in chosen) or "none"
        raise ValueError(f"{what} needs exactly one of {aliases} (got {got})")


# --------------------------------------------------------------------------------------------
# Source
# --------------------------------------------------------------------------------------------

class KafkaAuth(SpecModel):
    """SASL credentials for a Kafka cluster, both read from Secret keys."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism.")
    security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_SSL", description="Kafka security.protocol used with SASL.")
    username: SecretKeyRef = Field(description="Secret key holding the SASL username.")
    password: SecretKeyRef = Field(description="Secret key holding the SASL password.")


class KafkaSource(SpecModel):
    """A Kafka consumer group; offsets are committed only after every sink accepted a batch."""

    bootstrap_servers: str = Field(min_length=1, description="Kafka bootstrap.servers (host:port[,host:port]).")
    topics: list[str] = Field(min_length=1, max_length=100, description="Topics to consume.")
    group_id: str = Field(min_length=1, max_length=249, description="Consumer group id; replicas share it.")
    format: MessageFormat = Field("ztf-avro", description=(
        "Message encoding: ztf-avro (an Avro object-container file per message, own writer schema), "
        "avro (schemaless Avro with schemaPath) or json."))
    schema_path: str | None = Field(None, description="Avro schema file (.avsc) for format avro.")
    batch_size: int = Field(500, ge=1, le=100_000, description="Maximum messages per batch.")
    decode_workers: int = Field(0, ge=0, le=64, description=(
        "Worker processes decoding each batch in parallel (0: decode in the step process). "
        "Avro decoding is the hot spot; set it to the CPUs the pod may use, minus one."))
    batch_timeout_ms: int = Field(1000, ge=1, le=600_000,
                                  description="Maximum time to wait while filling a batch, in milliseconds.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts.")
    auth: KafkaAuth | None = Field(None, description="SASL authentication; absent means PLAINTEXT.")
    config: dict[str, str] = Field(default_factory=dict, description=(
        "Extra librdkafka consumer settings (e.g. fetch.max.bytes); enable.auto.commit cannot be overridden."))

    @model_validator(mode="after")
    def _check(self) -> "KafkaSource":
        for t in self.topics:
            _check_topic(t, "topics")
        if self.format == "avro" and not self.schema_path:
            raise ValueError("format avro needs schemaPath (the .avsc file of the writer schema)")
        return self


class FileSource(SpecModel):
    """A folder of messages for local replay; the run ends when every file is processed."""

    path: str = Field(min_length=1, description=(
        "A folder (or one file). ztf-avro/avro: one message per *.avro file; json: one message per line of *.jsonl/*.json."))
    format: MessageFormat = Field("ztf-avro", description="Message encoding, as for a Kafka source.")
    schema_path: str | None = Field(None, description="Avro schema file (.avsc) for format avro.")
    batch_size: int = Field(500, ge=1, le=100_000, description="Maximum messages per batch.")
    decode_workers: int = Field(0, ge=0, le=64, description=(
        "Worker processes decoding each batch in parallel (0: decode in the step process)."))

    @model_validator(mode="after")
    def _check(self) -> "FileSource":
        if self.format == "avro" and not self.schema_path:
            raise ValueError("format avro needs schemaPath (the .avsc file of the writer schema)")
        return self


class SourceSpec(SpecModel):
    """Where messages come from: exactly one of kafka or files."""

    kafka: KafkaSource | None = Field(None, description="Consume a Kafka topic.")
    files: FileSource | None = Field(None, description="Replay files from a folder (local runs, demos).")

    @model_validator(mode="after")
    def _one(self) -> "SourceSpec":
        _exactly_one(self, ["kafka", "files"], "source")
        return self


def _check_topic(topic: str, field: str) -> None:
    import re

    if not re.match(KAFKA_TOPIC, topic):
        raise ValueError(f"{field}: {topic!r} is not a valid Kafka topic name (letters, digits, . _ -)")


# --------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------

class FeaturesProcessor(SpecModel):
    """Light-curve features per object and band from candidate + prv_candidates (detections only)."""

    min_detections: int = Field(1, ge=1, le=10_000, description=(
        "Detections a band needs before its statistics are computed; fewer gives NaN."))


class ModelProcessor(SpecModel):
    """A scikit-learn classifier loaded with joblib only after its sha256 matches `sha256`."""

    path: str = Field(min_length=1, description="joblib file of the estimator (in the image or a mounted volume).")
    sha256: str = Field(pattern=SHA256_HEX, description="Pinned sha256 of the file (64 lowercase hex digits).")
    classifier_name: str = Field(min_length=1, max_length=200, description="Name written with every probability.")
    classifier_version: str = Field(min_length=1, max_length=200, description="Version written with every probability.")
    features: list[str] = Field(default_factory=list, description=(
        "Input feature names in the estimator's order; empty means the estimator's feature_names_in_."))
    features_from: Literal["alert", "message"] = Field("alert", description=(
        "alert: compute features from the alert with the features processor's code; "
        "message: the message already holds the named features (output of a features step)."))


class CrossmatchProcessor(SpecModel):
    """Attach the nearest catalog object within a radius (catalog loaded once, tree cached)."""

    catalog: str = Field(min_length=1, description="Catalog file (Parquet, CSV, or CSV.bz2/.gz).")
    ra_column: str = Field("ra", min_length=1, description="Catalog right-ascension column, degrees.")
    dec_column: str = Field("dec", min_length=1, description="Catalog declination column, degrees.")
    id_column: str = Field(min_length=1, description="Catalog column identifying the matched object.")
    columns: list[str] = Field(default_factory=list, description="Further catalog columns copied onto a match.")
    radius_arcsec: float = Field(gt=0, le=3600, description="Match radius in arcseconds.")
    prefix: str = Field("xm_", max_length=32, pattern=r"^[A-Za-z0-9_]*$",
                        description="Prefix of the output columns taken from the catalog.")


class PythonProcessor(SpecModel):
    """A user's `module:function(batch, config) -> list[dict]` applied to each batch."""

    function: str = Field(pattern=PYTHON_FUNCTION, description="module:function to call per batch.")
    path: str | None = Field(None, description="Folder prepended to sys.path before importing the module.")
    config: dict[str, str] = Field(default_factory=dict, description="Free settings passed to the function.")


class ProcessorSpec(SpecModel):
    """What a step computes: exactly one of model, crossmatch, features or python."""

    model: ModelProcessor | None = Field(None, description="Classify with a pinned scikit-learn model.")
    crossmatch: CrossmatchProcessor | None = Field(None, description="Crossmatch against a catalog.")
    features: FeaturesProcessor | None = Field(None, description="Compute light-curve features.")
    python: PythonProcessor | None = Field(None, description="Call a user function per batch.")

    @model_validator(mode="after")
    def _one(self) -> "ProcessorSpec":
        _exactly_one(self, ["model", "crossmatch", "features", "python"], "processor")
        return self

    def kind(self) -> str:
        """The name of the chosen processor."""
        for name in ("model", "crossmatch", "features", "python"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated ProcessorSpec without a processor")


# --------------------------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------------------------

class PostgresConnection(SpecModel):
    """How to reach PostgreSQL: a whole DSN from a Secret, or host/port/database/user + password Secret."""

    dsn: SecretKeyRef | None = Field(None, description="Secret key holding a libpq connection string.")
    host: str | None = Field(None, min_length=1, description="Server host (when no dsn).")
    port: int = Field(5432, ge=1, le=65535, description="Server port (when no dsn).")
    database: str | None = Field(None, min_length=1, description="Database name (when no dsn).")
    user: str | None = Field(None, min_length=1, description="User name (when no dsn).")
    password: SecretKeyRef | None = Field(None, description="Secret key holding the password (when no dsn).")

    @model_validator(mode="after")
    def _check_connection(self) -> "PostgresConnection":
        if (self.dsn is None) == (self.host is None):
            raise ValueError("postgres needs exactly one of dsn (a Secret key) or host")
        if self.host is not None and (self.database is None or self.user is None):
            raise ValueError("postgres with host needs database and user")
        return self


class PostgresSink(PostgresConnection):
    """Batched upserts (INSERT ... ON CONFLICT DO UPDATE) into a table."""

    table: str = Field(pattern=PG_TABLE, description="Target table, optionally schema-qualified.")
    mode: Literal["rows", "probability"] = Field("rows", description=(
        "rows: output records as rows; probability: ALeRCE's probability table shape "
        "(oid, class_name, classifier_name, classifier_version, probability, ranking)."))
    key: list[str] = Field(default_factory=list, description=(
        "Natural-key columns of the upsert (a unique index must exist on them); "
        "probability mode fixes it to oid, class_name, classifier_name, classifier_version."))
    columns: list[str] = Field(default_factory=list, description="Columns to write; empty means every output field.")
    create_table: bool = Field(False, description="Create the table (and its unique key) when it does not exist.")

    @model_validator(mode="after")
    def _check_sink(self) -> "PostgresSink":
        import re

        for c in [*self.key, *self.columns]:
            if not re.match(PG_IDENTIFIER, c):
                raise ValueError(f"{c!r} is not a valid column name (letters, digits, _; at most 63)")
        if self.mode == "rows" and not self.key:
            raise ValueError("postgres mode rows needs key (the natural-key columns of the upsert)")
        return self


class MongoSink(SpecModel):
    """bulk_write of UpdateOne(filter=natural key, $set=record, upsert=True)."""

    uri: SecretKeyRef = Field(description="Secret key holding the mongodb:// URI.")
    database: str = Field(min_length=1, max_length=63, pattern=r"^[^/\\. \"$]+$", description="Database name.")
    collection: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
                            description="Collection name.")
    key: list[str] = Field(min_length=1, description="Fields forming the natural key (the upsert filter).")
    create_index: bool = Field(True, description=(
        "Create a unique index on the key fields at start (idempotent): upserts then find their document "
        "by index, and no two documents can share a key."))
    write_batch_size: int = Field(50, ge=1, le=100_000, description=(
        "Operations per bulk_write call. The default suits FerretDB 1.x, which hangs on one command that "
        "updates 100 or more existing documents; against MongoDB itself, 1000 or more saves round trips."))


class KafkaSink(SpecModel):
    """Produce results to a topic keyed by object id; delivery is confirmed before the input commit."""

    bootstrap_servers: str = Field(min_length=1, description="Kafka bootstrap.servers.")
    topic: str = Field(pattern=KAFKA_TOPIC, description="Output topic.")
    format: Literal["json", "avro"] = Field("json", description="json, or schemaless Avro with schemaPath.")
    schema_path: str | None = Field(None, description="Avro schema file (.avsc) for format avro.")
    key_field: str = Field("oid", min_length=1, description="Output field used as the message key.")
    auth: KafkaAuth | None = Field(None, description="SASL authentication; absent means PLAINTEXT.")

    @model_validator(mode="after")
    def _check(self) -> "KafkaSink":
        if self.format == "avro" and not self.schema_path:
            raise ValueError("format avro needs schemaPath")
        return self


class FileSink(SpecModel):
    """Write results to a Parquet or JSONL file (local runs and demos)."""

    path: str = Field(min_length=1, description="Output file; relative paths follow --output-dir when given.")
    format: Literal["parquet", "jsonl"] = Field("parquet", description="File format.")


class SinkSpec(SpecModel):
    """One destination: exactly one of postgres, mongodb, kafka or file."""

    name: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                             description="Name used in logs and metrics (default: its kind and index).")
    postgres: PostgresSink | None = Field(None, description="PostgreSQL upsert.")
    mongodb: MongoSink | None = Field(None, description="MongoDB upsert.")
    kafka: KafkaSink | None = Field(None, description="Kafka producer.")
    file: FileSink | None = Field(None, description="Parquet/JSONL file.")

    @model_validator(mode="after")
    def _one(self) -> "SinkSpec":
        _exactly_one(self, ["postgres", "mongodb", "kafka", "file"], "sink")
        return self

    def kind(self) -> str:
        """The name of the chosen sink kind."""
        for name in ("postgres", "mongodb", "kafka", "file"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated SinkSpec without a sink")


# --------------------------------------------------------------------------------------------
# Dead letter
# --------------------------------------------------------------------------------------------

class DeadLetterKafka(SpecModel):
    """Dead-letter topic: the original bytes, with error and source topic/partition/offset headers."""

    bootstrap_servers: str | None = Field(None, description="bootstrap.servers; default: the source's.")
    topic: str = Field(pattern=KAFKA_TOPIC, description="Dead-letter topic.")
    auth: KafkaAuth | None = Field(None, description="SASL authentication; default: the source's.")


class DeadLetterPostgres(PostgresConnection):
    """Dead-letter table (created when missing): source position, error and the original bytes."""

    table: str = Field(pattern=PG_TABLE, description="Dead-letter table, optionally schema-qualified.")


class DeadLetterFile(SpecModel):
    """Dead-letter JSONL file (local runs): one line per message with error, position and base64 bytes."""

    path: str = Field(min_length=1, description="Output file; relative paths follow --output-dir when given.")


class DeadLetterSpec(SpecModel):
    """Where undecodable or invalid messages go: exactly one of kafka, postgres or file."""

    kafka: DeadLetterKafka | None = Field(None, description="A dead-letter topic.")
    postgres: DeadLetterPostgres | None = Field(None, description="A dead-letter table.")
    file: DeadLetterFile | None = Field(None, description="A dead-letter JSONL file.")

    @model_validator(mode="after")
    def _one(self) -> "DeadLetterSpec":
        _exactly_one(self, ["kafka", "postgres", "file"], "deadLetter")
        return self


# --------------------------------------------------------------------------------------------
# Pod settings and the whole spec
# --------------------------------------------------------------------------------------------

class EnvVar(SpecModel):
    """An environment variable of the runtime container: a value or a Secret key."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Variable name.")
    value: str | None = Field(None, description="Literal value.")
    secret_key_ref: SecretKeyRef | None = Field(None, description="Take the value from a Secret key.")

    @model_validator(mode="after")
    def _one(self) -> "EnvVar":
        _exactly_one(self, ["value", "secret_key_ref"], f"env {self.name}")
        return self


class RetrySpec(SpecModel):
    """Backoff while a sink is down: the batch is retried, never committed half-written."""

    initial_backoff_ms: int = Field(200, ge=1, le=600_000, description="First wait after a failure.")
    max_backoff_ms: int = Field(10_000, ge=1, le=3_600_000, description="Longest wait between attempts.")


class PipelineStepSpec(SpecModel):
    """A pipeline step: source -> decode -> validate -> process -> sinks -> commit."""

    image: str | None = Field(None, min_length=1,
                              description="Container image running `alertops run`; default: the operator's.")
    replicas: int = Field(1, ge=0, le=1000, description="Runtime pods (consumers in the group).")
    suspend: bool = Field(False, description="Scale to zero and keep the configuration.")
    source: SourceSpec = Field(description="Where messages come from.")
    processor: ProcessorSpec = Field(description="What is computed for each batch.")
    sinks: list[SinkSpec] = Field(min_length=1, max_length=16,
                                  description="Where results go; all must accept a batch before commit.")
    dead_letter: DeadLetterSpec | None = Field(None, description=(
        "Where bad messages go; absent means they are logged (with their position) and counted."))
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Backoff while a sink is down.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Container resources.")
    env: list[EnvVar] = Field(default_factory=list, max_length=128, description="Extra environment variables.")

    @model_validator(mode="after")
    def _check(self) -> "PipelineStepSpec":
        names = [s.name for s in self.sinks if s.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sinks: names must be unique (repeated: {sorted(dup)})")
        return self

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every SecretKeyRef the runtime will read, so the operator can render their env vars.

        `env[].secretKeyRef` is left out: those are rendered under the env var's own name.
        """
        return find_secret_refs(self, skip=frozenset({"env"}))
