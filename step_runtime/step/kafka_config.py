"""librdkafka settings shared by the consumer, the producers and the dead-letter producer."""
from __future__ import annotations

import logging
from typing import Any

from step_runtime.spec.pipelinestep import KafkaAuth
from step_runtime.step.secrets import secret_value


def auth_config(auth: KafkaAuth | None, field: str) -> dict[str, Any]:
    """SASL settings with the username/password read from their Secret env vars."""
    if auth is None:
        return {}
    return {
        "security.protocol": auth.security_protocol,
        "sasl.mechanism": auth.mechanism,
        "sasl.username": secret_value(auth.username, f"{field}.auth.username"),
        "sasl.password": secret_value(auth.password, f"{field}.auth.password"),
    }


def client_logger() -> logging.Logger:
    """librdkafka's own log lines go through this logger, so they are JSON like ours."""
    return logging.getLogger("alertops.kafka")


def producer_config(bootstrap: str, auth: KafkaAuth | None, field: str) -> dict[str, Any]:
    """An idempotent producer waiting for all in-sync replicas: delivery means durable."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
        "logger": client_logger(),
        **auth_config(auth, field),
    }
