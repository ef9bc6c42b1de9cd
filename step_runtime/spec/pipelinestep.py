"""The `PipelineStep` spec: where a step reads, what it computes, where it writes.

The operator renders the Deployment from `image`, `replicas`, `suspend`, `resources` and `env`;
the runtime (`alertops run`) uses the rest. Every "one of" sub-object is a set of optional
fields plus a validator that demands exactly one (the operator mirrors it as a CEL rule).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from step_runtime.spec.common import OneOf, ResourcesSpec, SecretKeyRef, SpecModel, find_secret_refs
from step_runtime.spec.files import (
    BYTES_QUANTITY,
    FILE_URI,
    HTTP_URL,
    SHA256_HEX,
    FetchSpec,
    S3Access,
    check_uri_access,
    uri_shape,
)

KIND = "PipelineStep"

# A PostgreSQL identifier we are willing to quote and send: letters, digits, underscore, at most
# 63 bytes; optionally schema-qualified. Anything else is refused before it reaches SQL.
PG_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
PG_TABLE = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
KAFKA_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
PYTHON_FUNCTION = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"

MessageFormat = Literal["ztf-avro", "lsst-avro", "avro", "json"]
ALERT_FORMATS = ("ztf-avro", "lsst-avro")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


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


class SchemaRegistry(SpecModel):
    """A Confluent-compatible schema registry (Confluent, Apicurio's ccompat API, Redpanda...)."""

    url: str = Field(pattern=HTTP_URL, max_length=2048, description=(
        "Base URL of the Confluent REST API: GET <url>/schemas/ids/<id> answers a schema "
        "(e.g. http://schema-registry:8081, or Apicurio's http://registry:8080/apis/ccompat/v7)."))
    username: SecretKeyRef | None = Field(None, description="Secret key holding the basic-auth user name.")
    password: SecretKeyRef | None = Field(None, description="Secret key holding the basic-auth password.")
    timeout_ms: int = Field(5000, ge=100, le=120_000, description="Timeout of one registry request, in milliseconds.")


class MessageSource(SpecModel):
    """How messages are encoded: what every source has."""

    format: MessageFormat = Field("ztf-avro", description=(
        "Message encoding: ztf-avro or lsst-avro (alert packets of that survey: an Avro object-container "
        "file per message, or the Confluent wire format with schemaRegistry or schemaDir), "
        "avro (schemaless Avro with schemaPath) or json."))
    schema_path: str | None = Field(None, description="Avro schema file (.avsc) for format avro.")
    schema_registry: SchemaRegistry | None = Field(None, description=(
        "ztf-avro/lsst-avro in the Confluent wire format: resolve each message's schema id with this registry."))
    schema_dir: str | None = Field(None, min_length=1, description=(
        "ztf-avro/lsst-avro in the Confluent wire format, for clusters without a registry: a folder laid out "
        "as the lsst-alert-packet package's schema/ (<major>/<minor>/lsst.v<major>_<minor>.alert.avsc and the "
        "schemas it references); schema id = major*100+minor."))
    batch_size: int = Field(500, ge=1, le=100_000, description="Maximum messages per batch.")
    decode_workers: int = Field(0, ge=0, le=64, description=(
        "Worker processes that decode, validate and prepare (features) each batch in parallel "
        "(0: all in the step process). Set it to the CPUs the pod may use, minus one."))

    def _check_encoding(self) -> None:
        if self.format == "avro" and not self.schema_path:
            raise ValueError("format avro needs schemaPath (the .avsc file of the writer schema)")
        if self.schema_registry is not None and self.schema_dir is not None:
            raise ValueError("schemaRegistry and schemaDir: give one of them, not both")
        if (self.schema_registry is not None or self.schema_dir is not None) and self.format not in ALERT_FORMATS:
            raise ValueError(f"schemaRegistry and schemaDir resolve alert packets' schema ids: they need format "
                             f"ztf-avro or lsst-avro (got {self.format})")


class KafkaSource(MessageSource):
    """A Kafka consumer group; offsets are committed only after every sink accepted a batch."""

    bootstrap_servers: str = Field(min_length=1, description="Kafka bootstrap.servers (host:port[,host:port]).")
    topics: list[str] = Field(min_length=1, max_length=100, description="Topics to consume.")
    group_id: str = Field(min_length=1, max_length=249, description="Consumer group id; replicas share it.")
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
        self._check_encoding()
        if self.format == "lsst-avro" and self.schema_registry is None and self.schema_dir is None:
            raise ValueError("format lsst-avro on Kafka needs schemaRegistry or schemaDir (Rubin's stream is in "
                             "the Confluent wire format: each message names its schema by id)")
        return self


class FileSource(MessageSource):
    """A folder of messages for local replay; the run ends when every file is processed."""

    path: str = Field(min_length=1, description=(
        "A folder (or one file). ztf-avro/lsst-avro/avro: one message per *.avro file (an Avro container may "
        "hold many alerts); json: one message per line of *.jsonl/*.json."))

    @model_validator(mode="after")
    def _check(self) -> "FileSource":
        self._check_encoding()
        return self


class SourceSpec(OneOf):
    """Where messages come from: exactly one of kafka or files."""

    NAME = "source"
    kafka: KafkaSource | None = Field(None, description="Consume a Kafka topic.")
    files: FileSource | None = Field(None, description="Replay files from a folder (local runs, demos).")


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

    NAME = "model"
    ONE_OF = (("path", "uri"),)

    path: str | None = Field(None, min_length=1, description=(
        "joblib file of the estimator, in the image or a mounted volume (spec.volumeMounts). "
        "Exactly one of path or uri."))
    uri: str | None = Field(None, pattern=FILE_URI, max_length=2048, description=(
        "Where the joblib file is fetched from: s3://bucket/key (see s3), https://... or pvc://claim/path "
        "(the PersistentVolumeClaim is mounted read-only). Fetched once per pod, before the step starts, "
        "and refused unless its sha256 is `sha256`. Exactly one of path or uri."))
    s3: S3Access | None = Field(None, description="Endpoint, region and credentials of an s3:// uri.")
    sha256: str = Field(pattern=SHA256_HEX, description="Pinned sha256 of the file (64 lowercase hex digits).")
    classifier_name: str = Field(min_length=1, max_length=200, description="Name written with every probability.")
    classifier_version: str = Field(min_length=1, max_length=200, description="Version written with every probability.")
    features: list[str] = Field(default_factory=list, description=(
        "Input feature names in the estimator's order; empty means the estimator's feature_names_in_."))
    features_from: Literal["alert", "message"] = Field("alert", description=(
        "alert: compute features from the alert with the features processor's code; "
        "message: the message already holds the named features (output of a features step)."))

    _uri = field_validator("uri", mode="before")(staticmethod(uri_shape))

    @model_validator(mode="after")
    def _check(self) -> "ModelProcessor":
        check_uri_access(self.uri, self.s3)
        return self


class CrossmatchProcessor(SpecModel):
    """Attach the nearest catalog object within a radius (catalog loaded once, tree cached)."""

    NAME = "crossmatch"
    ONE_OF = (("catalog", "uri"),)
    PATH_FIELD: ClassVar[str] = "catalog"  # the field naming a local file (`path` elsewhere)

    catalog: str | None = Field(None, min_length=1, description=(
        "Catalog file (Parquet, CSV, or CSV.bz2/.gz) in the image or a mounted volume. Exactly one of "
        "catalog or uri."))
    uri: str | None = Field(None, pattern=FILE_URI, max_length=2048, description=(
        "Where the catalog is fetched from: s3://bucket/key (see s3), https://... or pvc://claim/path. "
        "Exactly one of catalog or uri."))
    s3: S3Access | None = Field(None, description="Endpoint, region and credentials of an s3:// uri.")
    sha256: str | None = Field(None, pattern=SHA256_HEX, description=(
        "Pinned sha256 of the catalog file: when set, a file that does not match is refused."))
    ra_column: str = Field("ra", min_length=1, description="Catalog right-ascension column, degrees.")
    dec_column: str = Field("dec", min_length=1, description="Catalog declination column, degrees.")
    id_column: str = Field(min_length=1, description="Catalog column identifying the matched object.")
    columns: list[str] = Field(default_factory=list, description="Further catalog columns copied onto a match.")
    radius_arcsec: float = Field(gt=0, le=3600, description="Match radius in arcseconds.")
    prefix: str = Field("xm_", max_length=32, pattern=r"^[A-Za-z0-9_]*$",
                        description="Prefix of the output columns taken from the catalog.")

    _uri = field_validator("uri", mode="before")(staticmethod(uri_shape))

    @model_validator(mode="after")
    def _check(self) -> "CrossmatchProcessor":
        check_uri_access(self.uri, self.s3)
        return self


class PythonProcessor(SpecModel):
    """A user's `module:function(batch, config) -> list[dict]` applied to each batch."""

    function: str = Field(pattern=PYTHON_FUNCTION, description="module:function to call per batch.")
    path: str | None = Field(None, description="Folder prepended to sys.path before importing the module.")
    config: dict[str, str] = Field(default_factory=dict, description="Free settings passed to the function.")


class ProcessorSpec(OneOf):
    """What a step computes: exactly one of model, crossmatch, features or python."""

    NAME = "processor"
    model: ModelProcessor | None = Field(None, description="Classify with a pinned scikit-learn model.")
    crossmatch: CrossmatchProcessor | None = Field(None, description="Crossmatch against a catalog.")
    features: FeaturesProcessor | None = Field(None, description="Compute light-curve features.")
    python: PythonProcessor | None = Field(None, description="Call a user function per batch.")


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
    schema_id: int | None = Field(None, ge=0, le=2_147_483_647, description=(
        "Format avro: frame each message in the Confluent wire format with this schema id (the id of "
        "schemaPath's schema in the consumers' registry); absent: bare schemaless Avro."))
    key_field: str = Field("oid", min_length=1, description="Output field used as the message key.")
    auth: KafkaAuth | None = Field(None, description="SASL authentication; absent means PLAINTEXT.")

    @model_validator(mode="after")
    def _check(self) -> "KafkaSink":
        if self.format == "avro" and not self.schema_path:
            raise ValueError("format avro needs schemaPath")
        if self.schema_id is not None and self.format != "avro":
            raise ValueError("schemaId frames Avro messages: it needs format avro")
        return self


class FileSink(SpecModel):
    """Write results to a Parquet or JSONL file (local runs and demos)."""

    path: str = Field(min_length=1, description="Output file; relative paths follow --output-dir when given.")
    format: Literal["parquet", "jsonl"] = Field("parquet", description="File format.")


class SinkSpec(OneOf):
    """One destination: exactly one of postgres, mongodb, kafka or file."""

    NAME = "sink"
    NOT_CHOICES = frozenset({"name"})
    name: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                             description="Name used in logs and metrics (default: its kind and index).")
    postgres: PostgresSink | None = Field(None, description="PostgreSQL upsert.")
    mongodb: MongoSink | None = Field(None, description="MongoDB upsert.")
    kafka: KafkaSink | None = Field(None, description="Kafka producer.")
    file: FileSink | None = Field(None, description="Parquet/JSONL file.")


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


class DeadLetterSpec(OneOf):
    """Where undecodable or invalid messages go: exactly one of kafka, postgres or file."""

    NAME = "deadLetter"
    kafka: DeadLetterKafka | None = Field(None, description="A dead-letter topic.")
    postgres: DeadLetterPostgres | None = Field(None, description="A dead-letter table.")
    file: DeadLetterFile | None = Field(None, description="A dead-letter JSONL file.")


# --------------------------------------------------------------------------------------------
# Pod settings and the whole spec
# --------------------------------------------------------------------------------------------

class EnvVar(OneOf):
    """An environment variable of the runtime container: a value or a Secret key."""

    NAME = "env"
    NOT_CHOICES = frozenset({"name"})
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Variable name.")
    value: str | None = Field(None, description="Literal value.")
    secret_key_ref: SecretKeyRef | None = Field(None, description="Take the value from a Secret key.")

    def one_of_name(self) -> str:
        return f"env {self.name}"


class AlertFilter(SpecModel):
    """Alerts an alert processor (features, model on alerts, crossmatch) leaves out, counted in
    alertops_step_alerts_filtered_total{reason}: good alerts this step does not want."""

    solar_system: Literal["skip", "keep"] = Field("skip", description=(
        "skip: leave out alerts on solar-system objects (LSST: no diaObject, an ssObjectId), which variable-star "
        "and transient classifiers have nothing to say about; keep: process them."))
    min_reliability: float | None = Field(None, ge=0, le=1, description=(
        "Leave out alerts whose real/bogus score (LSST reliability, ZTF drb) is below this, or missing."))


class RetrySpec(SpecModel):
    """Backoff while a sink is down: the batch is retried, never committed half-written."""

    initial_backoff_ms: int = Field(200, ge=1, le=600_000, description="First wait after a failure.")
    max_backoff_ms: int = Field(10_000, ge=1, le=3_600_000, description="Longest wait between attempts.")


class PvcVolumeSource(SpecModel):
    """A PersistentVolumeClaim of the step's namespace."""

    claim_name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the claim.")
    read_only: bool = Field(False, description="Mount the claim read-only.")


class ConfigMapVolumeSource(SpecModel):
    """The keys of a ConfigMap as files."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the ConfigMap.")
    optional: bool = Field(False, description="Start even when the ConfigMap does not exist.")


class SecretVolumeSource(SpecModel):
    """The keys of a Secret as files (updated in place when the Secret changes)."""

    secret_name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")
    optional: bool = Field(False, description="Start even when the Secret does not exist.")


class EmptyDirVolumeSource(SpecModel):
    """Scratch space that lives as long as the pod."""

    size_limit: str | None = Field(None, pattern=BYTES_QUANTITY, description="Most bytes it may hold, e.g. 2Gi.")
    medium: Literal["", "Memory"] = Field("", description="\"\" (the node's disk) or Memory (tmpfs).")


# Volume names and mount paths the operator uses itself (the manifest, /tmp, fetched files, pvc://).
RESERVED_VOLUMES = ("config", "tmp", "fetched")
RESERVED_VOLUME_PREFIX = "pvc-"
RUNTIME_DIRS = ("/etc/alertops", "/tmp", "/var/lib/alertops")


class Volume(OneOf):
    """A volume of the step's pods: exactly one of persistentVolumeClaim, configMap, secret, emptyDir
    (the kinds the restricted Pod Security Standard allows; field names as in a pod spec)."""

    NAME = "volume"
    NOT_CHOICES = frozenset({"name"})
    name: str = Field(max_length=63, pattern=DNS_LABEL, description="Name that volumeMounts refer to.")
    persistent_volume_claim: PvcVolumeSource | None = Field(None, description="A PersistentVolumeClaim.")
    config_map: ConfigMapVolumeSource | None = Field(None, description="A ConfigMap's keys as files.")
    secret: SecretVolumeSource | None = Field(None, description="A Secret's keys as files.")
    empty_dir: EmptyDirVolumeSource | None = Field(None, description="Scratch space for the pod's life.")

    def one_of_name(self) -> str:
        return f"volume {self.name}"

    @model_validator(mode="after")
    def _not_reserved(self) -> "Volume":
        if self.name in RESERVED_VOLUMES or self.name.startswith(RESERVED_VOLUME_PREFIX):
            raise ValueError(f"volume name {self.name!r} is the operator's own (reserved: "
                             f"{', '.join(RESERVED_VOLUMES)}, {RESERVED_VOLUME_PREFIX}*): choose another")
        return self


class VolumeMount(SpecModel):
    """Where a volume appears in the step container."""

    name: str = Field(max_length=63, pattern=DNS_LABEL, description="Name of a volume in spec.volumes.")
    mount_path: str = Field(max_length=1024, pattern=r"^/([^:]*[^/:])?$", description=(
        "Absolute path in the container (no trailing /)."))
    sub_path: str | None = Field(None, max_length=1024, pattern=r"^[^/][^:]*$", description=(
        "A file or folder of the volume to mount instead of its root (relative, no ..)."))
    read_only: bool = Field(False, description="Mount read-only.")

    @model_validator(mode="after")
    def _check(self) -> "VolumeMount":
        path = self.mount_path
        for d in RUNTIME_DIRS:
            if path == d or path.startswith(d + "/") or d.startswith(path if path == "/" else path + "/"):
                raise ValueError(f"mountPath {path!r} overlaps {d}, which the runtime uses itself")
        if self.sub_path is not None and ".." in self.sub_path.split("/"):
            raise ValueError(f"subPath {self.sub_path!r} may not contain ..")
        return self


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
    alert_filter: AlertFilter = Field(default_factory=AlertFilter, description=(
        "Alerts an alert processor leaves out before processing (solar-system objects, low reliability)."))
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Backoff while a sink is down.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Container resources.")
    env: list[EnvVar] = Field(default_factory=list, max_length=128, description="Extra environment variables.")
    volumes: list[Volume] = Field(default_factory=list, max_length=32, description=(
        "Volumes of the pods (PersistentVolumeClaim, ConfigMap, Secret, emptyDir); mount them with volumeMounts."))
    volume_mounts: list[VolumeMount] = Field(default_factory=list, max_length=32, description=(
        "Where the volumes appear in the step container (a model or catalog path can then point there)."))
    fetch: FetchSpec = Field(default_factory=FetchSpec, description=(
        "Size limit, deadline and attempts of fetching the files given by a uri."))
    shadow_of: str | None = Field(None, max_length=253, pattern=DNS_SUBDOMAIN, description=(
        "Name of the PipelineStep (same namespace) this step shadows: it reads the same topic with its own "
        "consumer group to try a new model beside the old one. The operator refuses a shadow that would write "
        "where that step writes (a Kafka topic, a MongoDB collection, a file, or PostgreSQL rows of the same "
        "classifier version) or that shares its consumer group."))

    @model_validator(mode="after")
    def _check(self) -> "PipelineStepSpec":
        names = [s.name for s in self.sinks if s.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sinks: names must be unique (repeated: {sorted(dup)})")
        _check_volumes(self.volumes, self.volume_mounts)
        return self

    def file_sources(self) -> list[tuple[str, "ModelProcessor | CrossmatchProcessor"]]:
        """The processor settings that name a file by path or uri, with their spec field path."""
        p = self.processor
        found: list[tuple[str, ModelProcessor | CrossmatchProcessor]] = []
        if p.model is not None:
            found.append(("spec.processor.model", p.model))
        if p.crossmatch is not None:
            found.append(("spec.processor.crossmatch", p.crossmatch))
        return found

    def fetch_secret_refs(self) -> list[SecretKeyRef]:
        """The Secret keys only the fetch needs (object-store credentials)."""
        return find_secret_refs([s.s3 for _, s in self.file_sources() if s.s3 is not None])

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every SecretKeyRef the runtime will read, so the operator can render their env vars.

        `env[].secretKeyRef` is left out: those are rendered under the env var's own name.
        """
        return find_secret_refs(self, skip=frozenset({"env"}))


def _check_volumes(volumes: list[Volume], mounts: list[VolumeMount]) -> None:
    names = [v.name for v in volumes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"volumes: names must be unique (repeated: {dup})")
    for i, m in enumerate(mounts):
        if m.name not in names:
            raise ValueError(f"volumeMounts[{i}].name: no volume named {m.name!r} in spec.volumes "
                             f"(volumes: {names or 'none'})")
    paths = [m.mount_path for m in mounts]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"volumeMounts: mountPath must be unique (repeated: {dup})")
