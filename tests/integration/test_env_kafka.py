"""The test environment's Kafka is a real KRaft broker that keeps consumer-group offsets.

These tests talk to the broker `scripts/testenv up kafka` starts. Each run uses its own topic
and group (unique names), so runs never see each other's messages. Every client call is bounded:
admin futures and flush by explicit timeouts, commits and fetches by the client's socket timeout.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MESSAGES = 10_000
PARTITIONS = 3
KEYS = 500
WAIT_SECONDS = 60.0
CALL_TIMEOUT = 15.0
# librdkafka bounds every request (commit, fetch, metadata) by socket.timeout.ms.
CLIENT_TIMEOUTS = {"socket.timeout.ms": 10_000, "socket.connection.setup.timeout.ms": 10_000}


def key_of(i: int) -> bytes:
    """Message i's key: KEYS distinct keys, so each key has many messages to keep in order."""
    return f"obj-{i % KEYS}".encode()


@pytest.fixture(scope="module")
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh 3-partition topic, deleted afterwards."""
    name = f"alertops-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, **CLIENT_TIMEOUTS})
    futures = admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)],
                                  operation_timeout=CALL_TIMEOUT, request_timeout=CALL_TIMEOUT)
    futures[name].result(timeout=CALL_TIMEOUT)
    yield name
    admin.delete_topics([name], operation_timeout=CALL_TIMEOUT, request_timeout=CALL_TIMEOUT)[name].result(
        timeout=CALL_TIMEOUT)


def new_consumer(bootstrap: str, group: str) -> Consumer:
    """A consumer that commits only when told to, starting from the beginning of a new group."""
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        **CLIENT_TIMEOUTS,
    })


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], partition: int | None = None) -> None:
    """Produce every record and fail unless the broker acknowledged all of them."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all", **CLIENT_TIMEOUTS})
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for key, value in records:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **extra)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                producer.poll(1.0)
        producer.poll(0)
    remaining = producer.flush(CALL_TIMEOUT)
    assert remaining == 0, f"{remaining} messages were not delivered within {CALL_TIMEOUT}s"
    assert not errors, f"delivery errors: {errors[:5]}"


def consume_and_commit(consumer: Consumer, expected: int) -> list[Message]:
    """Consume until `expected` messages arrived, committing each batch's offsets synchronously."""
    received: list[Message] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(received) < expected and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        good = [m for m in batch if m.error() is None]
        assert len(good) == len(batch), f"consumer errors: {[m.error() for m in batch if m.error()]}"
        if not good:
            continue
        received.extend(good)
        next_offsets: dict[tuple[str, int], int] = {}
        for m in good:
            where = (m.topic(), m.partition())
            next_offsets[where] = max(next_offsets.get(where, 0), m.offset() + 1)
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
                        asynchronous=False)
    return received


def test_topic_has_three_partitions(kafka_bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, **CLIENT_TIMEOUTS})
    metadata = admin.list_topics(topic=topic, timeout=CALL_TIMEOUT)
    assert metadata.topics[topic].error is None
    assert sorted(metadata.topics[topic].partitions) == [0, 1, 2]


def test_group_consumes_everything_once_with_manual_commits(kafka_bootstrap: str, topic: str) -> None:
    records = [(key_of(i), str(i).encode()) for i in range(MESSAGES)]
    produce(kafka_bootstrap, topic, records)
    group = f"alertops-test-group-{uuid.uuid4().hex[:12]}"

    consumer = new_consumer(kafka_bootstrap, group)
    try:
        consumer.subscribe([topic])
        received = consume_and_commit(consumer, MESSAGES)
        assert len(received) == MESSAGES
        assert sorted(int(m.value()) for m in received) == list(range(MESSAGES))
        # Keyed: each key lives in one partition, and its messages arrive in the order produced.
        per_key: dict[bytes, list[tuple[int, int]]] = {}
        for m in received:
            per_key.setdefault(m.key(), []).append((m.partition(), int(m.value())))
        assert len(per_key) == KEYS
        for key, seen in per_key.items():
            assert len({p for p, _ in seen}) == 1, f"key {key!r} spread over partitions"
            values = [v for _, v in seen]
            assert values == sorted(values), f"key {key!r} out of order"
        assert len({m.partition() for m in received}) == PARTITIONS
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=CALL_TIMEOUT)
        assert sum(tp.offset for tp in committed) == MESSAGES
    finally:
        consumer.close()

    # A restarted consumer of the same group must resume at the committed offsets. To tell
    # "resumed there" from "not assigned yet", one new marker message goes to every partition:
    # the restarted consumer must receive exactly the markers, and nothing of the first 10,000.
    markers = [(b"marker", f"marker-{p}".encode()) for p in range(PARTITIONS)]
    for p, record in enumerate(markers):
        produce(kafka_bootstrap, topic, [record], partition=p)
    restarted = new_consumer(kafka_bootstrap, group)
    try:
        restarted.subscribe([topic])
        again = consume_and_commit(restarted, PARTITIONS)
    finally:
        restarted.close()
    assert sorted(m.value() for m in again) == sorted(v for _, v in markers), (
        f"the restarted consumer received {len(again)} messages, not just the {PARTITIONS} markers")
