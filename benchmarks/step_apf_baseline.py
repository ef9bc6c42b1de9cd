"""The benchmark's comparison step, built on ALeRCE's APF (`apf-base` 2.5.2), run in its own venv.

    ~/.cache/alertops/apf/venv/bin/python benchmarks/step_apf_baseline.py CONFIG.json

A `GenericStep` subclass whose `execute` does the same work as the alertops step: the same
feature code, the same pinned model, the same PostgreSQL upserts and MongoDB bulk writes (the
alertops classes are imported from the checkout, so only the framework differs). APF's
KafkaConsumer decodes each message with fastavro.reader and commits after execute; each record
is then mapped to the alert model the shared feature code reads (alert_model.canonical, the
reference mapping in plain Python). One JSON line per batch on stdout:
{"poll_start": t, "committed": t, "n": messages}.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apf.consumers import KafkaConsumer  # noqa: E402
from apf.core.step import GenericStep  # noqa: E402

from step_runtime.spec.pipelinestep import ModelProcessor, MongoSink, PostgresSink  # noqa: E402
from step_runtime.step import alert_model  # noqa: E402
from step_runtime.step.features import READS  # noqa: E402
from step_runtime.step.processors import ModelStep  # noqa: E402
from step_runtime.step.sinks.mongodb import MongoSinkWriter  # noqa: E402
from step_runtime.step.sinks.postgres import PostgresSinkWriter  # noqa: E402
from step_runtime.step.validate import VALIDATED_FIELDS, ValidationError, validate_alert  # noqa: E402


class TimedConsumer:
    """Wraps APF's confluent consumer to note when each batch's first poll started."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.poll_start = 0.0

    def consume(self, *args: object, **kwargs: object) -> object:
        self.poll_start = time.monotonic()
        return self.inner.consume(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class ClassifierStep(GenericStep):
    """features -> model -> PostgreSQL + MongoDB, the APF way."""

    def __init__(self, config: dict, cfg: dict) -> None:
        super().__init__(consumer=KafkaConsumer, config=config)
        self.consumer.consumer = self.timed = TimedConsumer(self.consumer.consumer)
        self.model = ModelStep(ModelProcessor(path=cfg["model"], sha256=cfg["sha256"], classifier_name="demo",
                                              classifier_version="0.1.0"), ROOT, alert_model.ZTF)
        self.projections: dict[object, object] = {}  # schema version -> projection
        self.pg = PostgresSinkWriter("pg", PostgresSink(dsn={"name": "pg", "key": "dsn"}, table=cfg["table"],
                                                        mode="probability", create_table=True), "pg", "ztf")
        self.mongo = MongoSinkWriter("mongo", MongoSink(uri={"name": "mongo", "key": "uri"}, database=cfg["mongo_db"],
                                                        collection="probabilities",
                                                        key=["oid", "classifier_name", "classifier_version"]), "mongo")
        self.sinks = cfg["sinks"]
        self.batch_start = 0.0
        self.n = 0

    def execute(self, messages: list[dict]) -> list[dict]:
        self.batch_start = self.timed.poll_start
        self.n = len(messages)
        good = []
        for m in messages:
            version = m.get("schemavsn")
            if version not in self.projections:
                self.projections[version] = alert_model.plan_for_record(alert_model.ZTF, READS | VALIDATED_FIELDS, m)
            alert = alert_model.canonical(m, alert_model.ZTF, self.projections[version])
            try:
                validate_alert(alert, alert_model.ZTF)
                good.append(alert)
            except ValidationError:
                pass
        outputs, _ = self.model.process(good)
        if "pg" in self.sinks:
            self.pg.write(outputs)
        if "mongo" in self.sinks:
            self.mongo.write(outputs)
        return outputs

    def post_produce(self) -> None:
        # APF commits in _pre_produce, before this hook: the batch is committed here.
        print(json.dumps({"poll_start": self.batch_start, "committed": time.monotonic(), "n": self.n}), flush=True)


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    config = {
        "CONSUMER_CONFIG": {
            "CLASS": "apf.consumers.KafkaConsumer",
            "PARAMS": {"bootstrap.servers": cfg["bootstrap"], "group.id": cfg["group"],
                       "auto.offset.reset": "earliest", "enable.partition.eof": True},
            "TOPICS": [cfg["topic"]],
            "consume.messages": cfg["batch_size"],
            "consume.timeout": 1,
        },
    }
    ClassifierStep(config, cfg).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
